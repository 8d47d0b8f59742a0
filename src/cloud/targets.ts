/**
 * Which providers can give a lease each target OS in this version, so a
 * refusal names the ones that can. Pure: read by the CLI's direct providers and
 * the broker's cloud providers alike.
 *
 * Windows (native and WSL2): AWS and Azure (direct or brokered) make the
 * machine and the CLI bootstraps it over SSH; an existing Windows host
 * takes the ssh provider (docs/providers/targets.md).
 */

export type TargetOS = 'linux' | 'macos' | 'windows'

export const TARGET_PROVIDERS: Readonly<Record<TargetOS, readonly string[]>> = {
  linux: ['hetzner', 'aws', 'ssh', 'local (on a Linux machine)'],
  macos: ['ssh (an existing Mac)', 'local (on a Mac)', 'aws (mac2.metal on your dedicated host)'],
  windows: ['aws', 'azure', 'ssh (an existing Windows host)'],
}

/** The end of a target refusal: who can, or that nobody can yet. */
export function whoCanRun(target: string): string {
  const names = TARGET_PROVIDERS[target as TargetOS] ?? []
  return names.length
    ? `providers that can run ${target}: ${names.join(', ')}`
    : `no provider of this crabbox version makes ${target} runners yet`
}

/** RSA 4096 for Windows runners on AWS and Azure (AWS imports no ed25519 key for Windows), else ed25519. */
export const leaseKeyType = (provider: string, target: string): 'ed25519' | 'rsa' =>
  target === 'windows' && (provider === 'aws' || provider === 'azure') ? 'rsa' : 'ed25519'

/** Cloud providers whose direct mode makes and bootstraps Windows runners. */
export const DIRECT_WINDOWS_CLOUDS: ReadonlySet<string> = new Set(['aws', 'azure'])

/** Cloud providers whose broker side makes Windows machines (the CLI bootstraps them over SSH). */
export const BROKER_WINDOWS_CLOUDS: ReadonlySet<string> = new Set(['aws', 'azure'])

/** Cloud providers whose broker side makes macOS machines (AWS: on the dedicated host the lease names in `awsMacHostID`). */
export const BROKER_MACOS_CLOUDS: ReadonlySet<string> = new Set(['aws'])
