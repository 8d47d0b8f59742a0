import type { ServiceContext } from '../context.js'
import { usageError } from '../../errors.js'
import { shellQuote } from '../../transport/ssh/exec.js'
import { DEFAULT_EGRESS_LISTEN, loopbackListen } from '../egress/rules.js'
import { BROWSER_ENV_FILE, cli, DISPLAY, desktopLease, failed, remote, rescueFor, VNC_PORT, type DesktopFlags } from './session.js'

/**
 * `crabbox desktop launch`: waits (bounded) for the runner's VNC, then starts an
 * app detached on the display (setsid + nohup, output in a log under /tmp) and
 * checks it is still running a moment later.
 */

export interface LaunchFlags extends DesktopFlags {
  browser?: boolean
  url?: string
  fullscreen?: boolean
  /** Egress profile: the browser goes through the lease's egress proxy (`crabbox egress`). */
  egress?: string
  /** The egress proxy on the lease (default 127.0.0.1:3128). */
  egressProxy?: string
}

export interface LaunchResult {
  leaseId: string
  pid: number
  command: string
  log: string
}

/** The remote command line: the browser (windowed 1500x900 unless fullscreen) or the words after `--`. */
export function launchCommand(flags: LaunchFlags, argv: string[]): string {
  if (flags.egress !== undefined && !flags.browser) throw usageError('--egress needs --browser')
  if (flags.browser) {
    if (argv.length) throw usageError('give either --browser or a command after --, not both')
    const window = flags.fullscreen ? '--start-fullscreen' : '--window-size=1500,900 --window-position=0,0'
    const url = flags.url ? ` ${shellQuote(flags.url)}` : ''
    const proxy = flags.egress !== undefined ? ` --proxy-server=${shellQuote(`http://${egressProxy(flags.egressProxy)}`)}` : ''
    return `"$BROWSER" --no-first-run --no-default-browser-check --password-store=basic ${window}${proxy}${url}`
  }
  if (flags.url) throw usageError('--url needs --browser')
  if (!argv.length) throw usageError('nothing to launch', 'pass --browser [--url URL], or a command after --, e.g. -- xterm')
  return argv.map(shellQuote).join(' ')
}

/** The egress proxy address on the lease: loopback host:port only. */
export function egressProxy(value: string | undefined): string {
  try {
    const { host, port } = loopbackListen(value ?? DEFAULT_EGRESS_LISTEN)
    return `${host}:${port}`
  } catch (error) {
    throw usageError(`--egress-proxy: ${(error as Error).message.replace(/--listen/g, 'the proxy')}`)
  }
}

export function launchScript(command: string, browser: boolean): string {
  const findBrowser = browser
    ? `[ -r ${BROWSER_ENV_FILE} ] && . ${BROWSER_ENV_FILE}
export BROWSER=\${BROWSER:-\${CHROME_BIN:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}}
[ -n "$BROWSER" ] || { echo "crabbox-launch: no Chromium installed" >&2; exit 3; }
`
    : ''
  return `export DISPLAY=${DISPLAY}
i=0; until bash -c 'exec 3<>/dev/tcp/127.0.0.1/${VNC_PORT}' 2>/dev/null; do i=$((i+1)); [ $i -ge 40 ] && { echo "crabbox-launch: VNC is not listening on 127.0.0.1:${VNC_PORT}" >&2; exit 4; }; sleep 0.25; done
timeout 5 xdpyinfo >/dev/null 2>&1 || { echo "crabbox-launch: no X server answers on ${DISPLAY}" >&2; exit 5; }
${findBrowser}log=$(mktemp /tmp/crabbox-launch-XXXXXX.log)
setsid nohup sh -c ${shellQuote(`exec ${command}`)} >"$log" 2>&1 </dev/null &
pid=$!
sleep 1
if kill -0 "$pid" 2>/dev/null; then echo "$pid $log"; exit 0; fi
wait "$pid"; code=$?
echo "crabbox-launch: the app exited at once (status $code); its output:" >&2; tail -n 5 "$log" >&2; exit 6
`
}

export async function desktopLaunch(context: ServiceContext, flags: LaunchFlags, argv: string[]): Promise<LaunchResult> {
  const command = launchCommand(flags, argv)
  const lease = await desktopLease(context, flags, 'desktop launch', flags.browser ? 'browser' : 'launch')
  try {
    const result = await remote(lease, launchScript(command, flags.browser ?? false), {
      limitMs: 45_000,
      layer: 'launch',
      rescue: rescueFor(lease, 'launch'),
    })
    const text = result.stderr.trim()
    if (result.code === 4) throw failed(lease, 'vnc', `nothing listens on 127.0.0.1:${VNC_PORT} on the runner`)
    if (result.code === 5) throw failed(lease, 'x-server', `no X server answers on ${DISPLAY}`)
    if (result.code === 3)
      throw failed(lease, 'browser', 'no Chromium on the runner', [`${cli(lease, 'ssh')} -- sudo apt-get install -y chromium`])
    if (result.code !== 0) throw failed(lease, flags.browser ? 'browser' : 'launch', text || `the launch failed (exit ${result.code})`)
    const [pid, log] = result.stdout.toString('utf8').trim().split(' ')
    return { leaseId: lease.leaseId, pid: Number(pid), command, log }
  } finally {
    await lease.close()
  }
}
