import { writeFile } from 'node:fs/promises'
import type { ServiceContext } from '../context.js'
import { DISPLAY, desktopLease, failed, remote, rescueFor, type DesktopFlags, type DesktopLease } from './session.js'
import { MACOS_SCREENSHOT_SCRIPT } from './targets.js'

/**
 * `crabbox screenshot`: a PNG of the runner's display, taken there (Linux: scrot,
 * else import, else ffmpeg; macOS: screencapture) and copied back.
 */

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

export const SCREENSHOT_SCRIPT = `export DISPLAY=${DISPLAY}
timeout 5 xdpyinfo >/dev/null 2>&1 || { echo "crabbox-screenshot: no X server answers on ${DISPLAY}" >&2; exit 5; }
f=$(mktemp /tmp/crabbox-screenshot-XXXXXX.png); trap 'rm -f "$f"' EXIT
if command -v scrot >/dev/null 2>&1; then timeout 20 scrot -o "$f" >&2
elif command -v import >/dev/null 2>&1; then timeout 20 import -window root "png:$f" >&2
elif command -v ffmpeg >/dev/null 2>&1; then timeout 20 ffmpeg -loglevel error -y -f x11grab -i ${DISPLAY} -frames:v 1 "$f" >&2
else echo "crabbox-screenshot: no screenshot tool (scrot, import or ffmpeg)" >&2; exit 3; fi || exit 4
cat "$f"
`

export interface ScreenshotResult {
  leaseId: string
  output: string
  bytes: number
  width: number
  height: number
}

export const defaultScreenshotPath = (name: string) => `crabbox-${name}-screenshot.png`

/** Takes a screenshot on an open desktop lease: the PNG's bytes. */
export async function captureScreenshot(lease: DesktopLease): Promise<Buffer> {
  const script = lease.os.target === 'macos' ? MACOS_SCREENSHOT_SCRIPT : SCREENSHOT_SCRIPT
  const result = await remote(lease, script, { limitMs: 45_000, layer: 'screenshot', rescue: rescueFor(lease, 'screenshot') })
  if (result.code === 5) throw failed(lease, 'x-server', `no X server answers on ${DISPLAY}`)
  if (result.code === 3)
    throw failed(lease, 'screenshot', 'no screenshot tool on the runner', [
      `crabbox ssh --id ${lease.name} -- sudo apt-get install -y scrot`,
    ])
  const png = result.stdout
  if (result.code !== 0 || png.length < 24 || !png.subarray(0, 8).equals(PNG_SIGNATURE))
    throw failed(lease, 'screenshot', result.stderr.trim() || 'the runner sent no PNG')
  return png
}

export async function screenshot(context: ServiceContext, flags: DesktopFlags & { output?: string }): Promise<ScreenshotResult> {
  const lease = await desktopLease(context, flags, 'screenshot', 'screenshot')
  try {
    const png = await captureScreenshot(lease)
    const output = flags.output ?? defaultScreenshotPath(lease.name)
    await writeFile(output, png)
    return { leaseId: lease.leaseId, output, bytes: png.length, width: png.readUInt32BE(16), height: png.readUInt32BE(20) }
  } finally {
    await lease.close()
  }
}
