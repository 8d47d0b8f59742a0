import { writeFile } from 'node:fs/promises'
import type { ServiceContext } from '../context.js'
import { parseDuration } from '../../config/schema.js'
import { usageError } from '../../errors.js'
import { RescueError } from '../../ui/rescue.js'
import { cli, DISPLAY, desktopLease, remote, rescueFor, type DesktopFlags, type DesktopLease } from '../desktop/session.js'

/**
 * `crabbox artifacts video`: records the runner's display (`:99`) with ffmpeg's
 * x11grab for a fixed time, on the runner, and copies the MP4 back over the
 * lease's SSH connection. A missing ffmpeg or X server is exit 5 with the fix.
 */

export const MAX_VIDEO_MS = 10 * 60_000

/** `-t` seconds of the display at `fps`, H.264, even dimensions; the MP4 on stdout. Exit 3: no ffmpeg, 5: no X server, 4: ffmpeg failed. */
export const videoScript = (seconds: number, fps: number) => `export DISPLAY=${DISPLAY}
command -v ffmpeg >/dev/null 2>&1 || { echo "crabbox-video: ffmpeg is not installed on the runner" >&2; exit 3; }
size=$(timeout 5 xdpyinfo 2>/dev/null | awk '/dimensions:/ {print $2; exit}')
[ -n "$size" ] || { echo "crabbox-video: no X server answers on ${DISPLAY}" >&2; exit 5; }
f=$(mktemp /tmp/crabbox-video-XXXXXX.mp4); trap 'rm -f "$f"' EXIT
timeout ${Math.ceil(seconds) + 60} ffmpeg -nostdin -hide_banner -loglevel error -y -f x11grab -framerate ${fps} -video_size "$size" -i ${DISPLAY} \\
  -t ${seconds.toFixed(3)} -vf 'scale=trunc(iw/2)*2:trunc(ih/2)*2' -c:v libx264 -preset ultrafast -pix_fmt yuv420p -movflags +faststart "$f" >&2 || exit 4
cat "$f"
`

export interface VideoOptions {
  duration: string
  fps: number
}

export interface VideoResult {
  leaseId: string
  output: string
  bytes: number
  seconds: number
  fps: number
}

export const defaultVideoPath = (name: string) => `crabbox-${name}-screen.mp4`

export function videoSeconds(options: VideoOptions): number {
  const ms = parseDuration(options.duration)
  if (ms < 1000 || ms > MAX_VIDEO_MS) throw usageError(`--duration: expected 1s to 10m, got ${options.duration}`)
  if (!Number.isInteger(options.fps) || options.fps < 1 || options.fps > 60) throw usageError(`--fps: expected 1 to 60, got ${options.fps}`)
  return ms / 1000
}

/** Records on an open desktop lease and returns the MP4's bytes. */
export async function recordVideo(lease: DesktopLease, options: VideoOptions): Promise<Buffer> {
  const seconds = videoSeconds(options)
  const result = await remote(lease, videoScript(seconds, options.fps), {
    limitMs: (seconds + 90) * 1000,
    layer: 'video',
    rescue: rescueFor(lease, 'x-server'),
  })
  const ssh = (command: string) => `${cli(lease, 'ssh')} -- ${command}`
  if (result.code === 3)
    throw new RescueError(
      [{ layer: 'video', problem: 'ffmpeg is not installed on the runner', rescue: [ssh('sudo apt-get install -y ffmpeg')] }],
      { exit: 'provisioning', code: 'ffmpeg_missing' },
    )
  if (result.code === 5)
    throw new RescueError([{ layer: 'x-server', problem: `no X server answers on ${DISPLAY}`, rescue: rescueFor(lease, 'x-server') }], {
      exit: 'provisioning',
      code: 'display_unavailable',
    })
  // An MP4 starts with a box whose type is `ftyp`.
  if (result.code !== 0 || result.stdout.length < 12 || result.stdout.toString('latin1', 4, 8) !== 'ftyp')
    throw new RescueError([
      { layer: 'video', problem: result.stderr.trim() || 'the runner sent no MP4', rescue: [cli(lease, 'desktop doctor')] },
    ])
  return result.stdout
}

export async function video(context: ServiceContext, flags: DesktopFlags & VideoOptions & { output?: string }): Promise<VideoResult> {
  const seconds = videoSeconds(flags)
  const lease = await desktopLease(context, flags, 'artifacts video', 'video')
  try {
    context.progress.phase(`recording ${lease.name}'s display for ${seconds}s`)
    const mp4 = await recordVideo(lease, flags)
    context.progress.done()
    const output = flags.output ?? defaultVideoPath(lease.name)
    await writeFile(output, mp4)
    return { leaseId: lease.leaseId, output, bytes: mp4.length, seconds, fps: flags.fps }
  } finally {
    await lease.close()
  }
}
