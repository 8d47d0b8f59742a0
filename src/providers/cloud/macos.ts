import type { Config } from '../../config/schema.js'
import { explicitType } from '../../cloud/classes.js'
import { MAC_INSTANCE_TYPE, MACOS_DEFAULTS, renderMacUserData } from '../../cloud/macos-bootstrap.js'
import { CrabboxError } from '../../errors.js'

/**
 * macOS leases in direct mode (AWS only): `mac2.metal` on the user's dedicated host
 * (`aws.macHostId`), on-demand, the macOS user data (work root and `crabbox-ready`), and
 * SSH as `ec2-user` on port 22. The host is the user's: crabbox places instances on it and
 * terminates them, never allocates or releases it.
 */

export const isMacLease = (provider: string, target: string) => provider === 'aws' && target === 'macos'

/** What a macOS lease cannot have in this version, refused (exit 2) before any EC2 call. */
export function macRefusal(config: Config): CrabboxError | undefined {
  const refuse = (message: string, hint: string) => new CrabboxError(message, { exit: 'usage', code: 'unsupported_target', hint })
  if (!config.aws.macHostId)
    return refuse(
      'macOS instances run on a dedicated host: set aws.macHostId (CRABBOX_AWS_MAC_HOST_ID)',
      'allocate a mac2 dedicated host in the region (aws ec2 allocate-hosts --instance-type mac2.metal …) and set its h-… ID',
    )
  const missing = [config.browser && '--browser', config.code && '--code', config.tailscale.enabled && '--tailscale'].filter(Boolean)
  if (missing.length) return refuse(`crabbox sets up no ${missing.join(', ')} on macOS runners`, 'drop them, or use --target linux')
  return undefined
}

/** The user data, candidate types and the lease's SSH user, port and work root for a macOS runner. */
export function macLaunch(config: Config): { userData: string; types: string[] } {
  return {
    userData: renderMacUserData({ sshUser: MACOS_DEFAULTS.sshUser, workRoot: MACOS_DEFAULTS.workRoot, desktop: config.desktop }),
    types: [explicitType(config.class, config.serverType) ?? MAC_INSTANCE_TYPE],
  }
}

/** How a macOS runner is reached: `ec2-user` on port 22, work root under its home folder. */
export const MAC_SSH = { user: MACOS_DEFAULTS.sshUser, port: Number(MACOS_DEFAULTS.sshPort), workRoot: MACOS_DEFAULTS.workRoot }
