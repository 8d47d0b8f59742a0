import type { ServiceContext } from '../context.js'
import { parseDuration } from '../../config/schema.js'
import { CrabboxError } from '../../errors.js'
import type { LeaseCapabilities } from '../../providers/types.js'
import type { SshSession, SshTarget } from '../../transport/ssh/types.js'
import { RescueError, type Rescue } from '../../ui/rescue.js'
import { resolveSshTarget, type LeaseOS } from '../ssh.js'
import { desktopRefusal, VNC_PASSWORD_PATHS, type DesktopCapability } from './targets.js'

/**
 * The lease a desktop command works on, and one remote step with a time limit.
 * Remote paths are the ones the desktop bootstrap (src/cloud/cloud-init.ts) and
 * the documented static-host setup (docs/desktop.md) share.
 */

export const DISPLAY = ':99'
export const VNC_PORT = 5900
export const VNC_PASSWORD_FILE = VNC_PASSWORD_PATHS.linux
export const BROWSER_ENV_FILE = '/var/lib/crabbox/browser.env'

export interface DesktopFlags {
  id?: string
  reclaim?: boolean
}

export interface DesktopLease {
  leaseId: string
  /** Slug (or ID) for the commands printed in rescue lines. */
  name: string
  provider?: string
  target: SshTarget
  capabilities: LeaseCapabilities
  /** A static host (`ssh` provider or the broker's static pool): crabbox set nothing up there. */
  static: boolean
  /** The runner's OS: which password path, screenshot and doctor scripts apply. */
  os: LeaseOS
  session: SshSession
  close(): Promise<void>
}

/**
 * Resolves the lease and refuses one without a desktop, with the message the
 * broker uses for WebVNC, or whose OS cannot have `capability` (exit 2, before
 * any SSH connection).
 */
export async function desktopLease(
  context: ServiceContext,
  flags: DesktopFlags,
  command: string,
  capability: DesktopCapability = 'desktop',
): Promise<DesktopLease> {
  const resolved = await resolveSshTarget(context, flags)
  const capabilities = resolved.capabilities ?? { desktop: false, browser: false, code: false }
  const name = resolved.slug || resolved.leaseId
  const os = resolved.os ?? { target: 'linux' }
  const isStatic = resolved.provider === 'ssh' || resolved.provider === 'static'
  const refused = desktopRefusal(os.target, capability, { windowsMode: os.windowsMode, staticHost: isStatic })
  if (refused)
    throw new CrabboxError(`crabbox ${command} on ${name} (${os.target}${os.windowsMode === 'wsl2' ? ', WSL2' : ''}): ${refused}`, {
      exit: 'usage',
      code: 'unsupported_target',
    })
  if (!capabilities.desktop)
    throw new CrabboxError(`lease ${name} was not created with desktop=true`, {
      exit: 'usage',
      code: 'desktop_unavailable',
      hint:
        resolved.provider === 'ssh'
          ? 'set up the desktop on the host (docs/desktop.md), then declare it: static.desktop: true (or CRABBOX_STATIC_DESKTOP=1)'
          : `start a lease with a desktop: crabbox warmup --desktop, then crabbox ${command} --id <new lease>`,
    })
  const { openSession } = await import('../../transport/ssh/index.js')
  const session = await openSession(resolved.target, {
    progress: context.progress,
    agentIdleTimeoutMs: parseDuration(context.config.agent.idleTimeout),
  })
  return {
    leaseId: resolved.leaseId,
    name,
    provider: resolved.provider,
    target: resolved.target,
    capabilities,
    static: isStatic,
    os,
    session,
    close: () => session.close(),
  }
}

export interface RemoteOutput {
  code: number | null
  stdout: Buffer
  stderr: string
}

/**
 * Runs a script on the runner within `limitMs`; past it the script is stopped
 * and a RescueError names `layer` with the given rescue commands.
 */
export async function remote(
  lease: DesktopLease,
  script: string,
  options: { limitMs: number; layer: string; rescue: string[]; stdin?: string },
): Promise<RemoteOutput> {
  const stdout: Buffer[] = []
  const stderr: Buffer[] = []
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort('SIGKILL')
      reject(
        new RescueError([
          {
            layer: options.layer,
            problem: `no answer from the runner within ${Math.round(options.limitMs / 1000)}s`,
            rescue: options.rescue,
          },
        ]),
      )
    }, options.limitMs)
  })
  try {
    const result = await Promise.race([
      lease.session.exec(script, {
        stdin: options.stdin,
        signal: controller.signal,
        onStdout: (chunk) => stdout.push(chunk),
        onStderr: (chunk) => stderr.push(chunk),
      }),
      timedOut,
    ])
    return { code: result.code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString('utf8') }
  } finally {
    clearTimeout(timer)
  }
}

/** `crabbox <command> --id <lease>`, for rescue lines. */
export const cli = (lease: Pick<DesktopLease, 'name'>, command: string) => `crabbox ${command} --id ${lease.name}`

/** The bootstrap's systemd unit per layer (cloud runners). */
export const UNITS: Partial<Record<string, string>> = {
  'x-server': 'crabbox-xvfb',
  'window-manager': 'crabbox-desktop',
  vnc: 'crabbox-x11vnc',
}
/** How to start a layer by hand on a static host (docs/desktop.md). */
export const START: Partial<Record<string, string>> = {
  'x-server': `setsid nohup Xvfb ${DISPLAY} -screen 0 1920x1080x24 -nolisten tcp >/tmp/crabbox-xvfb.log 2>&1 </dev/null &`,
  'window-manager': `DISPLAY=${DISPLAY} setsid nohup openbox >/tmp/crabbox-openbox.log 2>&1 </dev/null &`,
  vnc: `setsid nohup x11vnc -display ${DISPLAY} -localhost -rfbport ${VNC_PORT} -passwdfile ${VNC_PASSWORD_FILE} -forever -shared >/tmp/crabbox-x11vnc.log 2>&1 </dev/null &`,
}
/** macOS runners: Screen Sharing is a launchd service of the system. */
export const MACOS_SCREEN_SHARING_RESTART = 'sudo launchctl kickstart -k system/com.apple.screensharing'

/** The commands that get a broken desktop going again, for a layer: doctor, the layer's restart, and the native VNC fallback. */
export function rescueFor(lease: Pick<DesktopLease, 'name' | 'static'> & { os?: LeaseOS }, layer: string): string[] {
  const ssh = (command: string) => `${cli(lease, 'ssh')} -- ${command.includes(' ') ? `'${command}'` : command}`
  // A Mac has no X layers to restart; a static Mac's Screen Sharing is its owner's.
  const restart =
    lease.os?.target === 'macos'
      ? layer === 'vnc' && !lease.static
        ? [ssh(MACOS_SCREEN_SHARING_RESTART)]
        : []
      : lease.static
        ? START[layer]
          ? [ssh(START[layer])]
          : []
        : UNITS[layer]
          ? [ssh(`sudo systemctl restart ${UNITS[layer]}`)]
          : []
  return [
    cli(lease, 'desktop doctor'),
    ...restart,
    ...(layer === 'vnc' ? [] : [`${cli(lease, 'vnc')}${lease.static ? ' --host-managed' : ''}`]),
  ]
}

export const failed = (lease: DesktopLease, layer: string, problem: string, extra: string[] = []): RescueError =>
  new RescueError([{ layer, problem, rescue: [...extra, ...rescueFor(lease, layer)] }])

export type { Rescue }
