import type { ServiceContext } from '../context.js'
import { CrabboxError } from '../../errors.js'
import {
  BROWSER_ENV_FILE,
  cli,
  DISPLAY,
  desktopLease,
  remote,
  START,
  UNITS,
  VNC_PASSWORD_FILE,
  VNC_PORT,
  type DesktopFlags,
  type DesktopLease,
  MACOS_SCREEN_SHARING_RESTART,
} from './session.js'
import type { LeaseOS } from '../ssh.js'
import { VNC_PASSWORD_PATHS } from './targets.js'

/**
 * `crabbox desktop doctor`: checks each layer of the runner's desktop in one
 * remote script (each probe under `timeout`), and for each broken one says what
 * is wrong and the exact commands that fix it.
 */

export const DOCTOR_LAYERS = ['x-server', 'window-manager', 'vnc', 'browser', 'input', 'screenshot'] as const
export type DoctorLayer = (typeof DOCTOR_LAYERS)[number]

export interface DoctorCheck {
  layer: DoctorLayer
  /** `skip`: not asked for on this lease and not there. */
  status: 'ok' | 'problem' | 'skip'
  detail: string
  rescue: string[]
}

export interface DoctorResult {
  leaseId: string
  checks: DoctorCheck[]
}

/** Prints `<layer>|ok|<detail>` or `<layer>|fail|<what is wrong>` per layer; never hangs (timeout 5 on each probe). */
export const DOCTOR_SCRIPT = `
export DISPLAY=${DISPLAY}
t() { timeout 5 "$@"; }
have() { command -v "$1" >/dev/null 2>&1; }
if ! have xdpyinfo; then echo "x-server|fail|xdpyinfo is not installed, so the X server cannot be checked"
elif dims=$(t xdpyinfo 2>/dev/null | awk '/dimensions:/ {print $2; exit}') && [ -n "$dims" ]; then echo "x-server|ok|${DISPLAY} $dims"
else echo "x-server|fail|no X server answers on ${DISPLAY}"; fi
wm=$(t xprop -root _NET_SUPPORTING_WM_CHECK 2>/dev/null | awk '/window id/ {print $NF}')
# The root's check window outlives a window manager that died: it must still exist.
if [ -n "$wm" ] && prop=$(t xprop -id "$wm" _NET_WM_NAME 2>/dev/null); then name=$(echo "$prop" | sed -n 's/.*= "\\(.*\\)"/\\1/p'); echo "window-manager|ok|\${name:-running}"
else echo "window-manager|fail|no window manager runs on ${DISPLAY}"; fi
banner=$(t bash -c 'exec 3<>/dev/tcp/127.0.0.1/${VNC_PORT} && head -c 12 <&3' 2>/dev/null)
wide=$(have ss && ss -Hltn 2>/dev/null | awk '{print $4}' | grep -E ':${VNC_PORT}$' | grep -vE '^(127\\.0\\.0\\.1|\\[::1\\]):' | head -n1)
if [ -n "$wide" ]; then echo "vnc|fail|VNC listens beyond loopback ($wide)"
elif [ "\${banner#RFB}" = "$banner" ]; then echo "vnc|fail|nothing speaks VNC on 127.0.0.1:${VNC_PORT}"
elif [ ! -r ${VNC_PASSWORD_FILE} ]; then echo "vnc|fail|${VNC_PASSWORD_FILE} is missing or not readable by $(id -un)"
else echo "vnc|ok|127.0.0.1:${VNC_PORT} $banner"; fi
[ -r ${BROWSER_ENV_FILE} ] && . ${BROWSER_ENV_FILE}
browser=\${CHROME_BIN:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [ -n "$browser" ] && have "$browser"; then echo "browser|ok|$browser"; else echo "browser|fail|no Chromium installed"; fi
missing=""; have xdotool || missing="$missing xdotool"; have xclip || have xsel || missing="$missing xclip"
if [ -z "$missing" ]; then echo "input|ok|xdotool, $(have xclip && echo xclip || echo xsel)"; else echo "input|fail|missing:$missing"; fi
if have scrot || have import || have ffmpeg; then echo "screenshot|ok|$(have scrot && echo scrot || (have import && echo import) || echo ffmpeg)"
else echo "screenshot|fail|no screenshot tool (scrot, import or ffmpeg)"; fi
`

/**
 * The same report for a macOS runner: Screen Sharing on 127.0.0.1:${VNC_PORT}, the
 * password file and screencapture. Layers macOS does without (an X server, a
 * window manager) or crabbox has nothing for there (browser, input) say `skip`.
 * Plain sh and the BSD tools macOS ships (`nc -w`, `head -c`).
 */
export const MACOS_DOCTOR_SCRIPT = `
echo "x-server|skip|macOS draws the console session itself (no X server)"
echo "window-manager|skip|macOS draws the console session itself (no window manager)"
banner=$(nc -w 5 127.0.0.1 ${VNC_PORT} </dev/null 2>/dev/null | head -c 12)
if [ "\${banner#RFB}" = "$banner" ]; then echo "vnc|fail|Screen Sharing does not answer on 127.0.0.1:${VNC_PORT}"
elif [ ! -r ${VNC_PASSWORD_PATHS.macos} ]; then echo "vnc|fail|${VNC_PASSWORD_PATHS.macos} is missing or not readable by $(id -un)"
else echo "vnc|ok|127.0.0.1:${VNC_PORT} $banner"; fi
echo "browser|skip|crabbox installs no browser on macOS runners"
echo "input|skip|crabbox has no input tool for macOS runners yet"
if command -v screencapture >/dev/null 2>&1; then echo "screenshot|ok|screencapture"; else echo "screenshot|fail|screencapture is not there"; fi
`

/** The doctor script for the lease's OS. */
export const doctorScript = (lease: Pick<DesktopLease, 'os'>): string => (lease.os.target === 'macos' ? MACOS_DOCTOR_SCRIPT : DOCTOR_SCRIPT)

const PACKAGES: Partial<Record<DoctorLayer, string>> = {
  browser: 'chromium',
  input: 'xdotool xclip',
  screenshot: 'scrot',
}

/** The exact commands that fix a layer: restart its unit on a bootstrapped runner, start it by hand on a static host. */
export function doctorFix(lease: Pick<DesktopLease, 'name' | 'static'> & { os?: LeaseOS }, layer: DoctorLayer, detail: string): string[] {
  const ssh = (command: string) => `${cli(lease, 'ssh')} -- ${command.includes(' ') ? `'${command}'` : command}`
  if (lease.os?.target === 'macos') {
    const file = VNC_PASSWORD_PATHS.macos
    if (layer === 'vnc' && /password/.test(detail)) return [ssh(`sudo chown $(id -un) ${file} && sudo chmod 0600 ${file}`)]
    return layer === 'vnc' && !lease.static ? [ssh(MACOS_SCREEN_SHARING_RESTART)] : []
  }
  const packages = PACKAGES[layer] ?? (/xdpyinfo/.test(detail) ? 'x11-utils' : undefined)
  if (packages && (layer !== 'x-server' || /xdpyinfo/.test(detail))) return [ssh(`sudo apt-get install -y ${packages}`)]
  if (layer === 'vnc' && /beyond loopback/.test(detail))
    return [ssh('sudo pkill x11vnc'), lease.static ? ssh(START.vnc!) : ssh('sudo systemctl restart crabbox-x11vnc')]
  if (layer === 'vnc' && /password/.test(detail))
    return [ssh(`sudo chown $(id -un) ${VNC_PASSWORD_FILE} && sudo chmod 0600 ${VNC_PASSWORD_FILE}`)]
  if (!lease.static && UNITS[layer]) return [ssh(`sudo systemctl restart ${UNITS[layer]}`)]
  return START[layer] ? [ssh(START[layer])] : []
}

export function parseDoctor(
  output: string,
  lease: Pick<DesktopLease, 'name' | 'static' | 'capabilities'> & { os?: LeaseOS },
): DoctorCheck[] {
  const seen = new Map<string, { ok: boolean; skip?: boolean; detail: string }>()
  for (const line of output.split('\n')) {
    const [layer, state, ...rest] = line.split('|')
    if ((DOCTOR_LAYERS as readonly string[]).includes(layer))
      seen.set(layer, { ok: state === 'ok', skip: state === 'skip', detail: rest.join('|') })
  }
  return DOCTOR_LAYERS.map((layer) => {
    const found = seen.get(layer) ?? { ok: false, detail: 'the runner did not report this layer' }
    // A layer the runner's OS does without (macOS has no X server).
    if (found.skip) return { layer, status: 'skip', detail: found.detail, rescue: [] }
    // A browser is a problem only on a lease that asked for one.
    if (!found.ok && layer === 'browser' && !lease.capabilities.browser) return { layer, status: 'skip', detail: found.detail, rescue: [] }
    return {
      layer,
      status: found.ok ? 'ok' : 'problem',
      detail: found.detail,
      rescue: found.ok ? [] : doctorFix(lease, layer, found.detail),
    }
  })
}

export async function desktopDoctor(context: ServiceContext, flags: DesktopFlags): Promise<DoctorResult> {
  const lease = await desktopLease(context, flags, 'desktop doctor')
  try {
    const result = await remote(lease, doctorScript(lease), {
      limitMs: 60_000,
      layer: 'runner',
      rescue: [`${cli(lease, 'ssh')} -- true`, `crabbox status --id ${lease.name}`],
    })
    return { leaseId: lease.leaseId, checks: parseDoctor(result.stdout.toString('utf8'), lease) }
  } finally {
    await lease.close()
  }
}

/** After printing the checks: a doctor that found problems exits 1. */
export function doctorFailure(result: DoctorResult): CrabboxError | undefined {
  const problems = result.checks.filter((c) => c.status === 'problem').map((c) => c.layer)
  if (!problems.length) return undefined
  return new CrabboxError(`desktop doctor found problems: ${problems.join(', ')}`, { exit: 'error', code: 'doctor_failed' })
}
