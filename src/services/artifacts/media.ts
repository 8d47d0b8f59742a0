import { stat } from 'node:fs/promises'
import { CrabboxError, usageError } from '../../errors.js'
import { probeDuration, runTool } from './ffmpeg.js'

/**
 * `crabbox media preview` (and `artifacts gif`): ffmpeg's freeze detection
 * finds where the video stands still; a still head and a still tail are cut
 * (keeping `paddingMs` on each side), and what is left becomes a GIF (a palette
 * made for the clip, then applied) and, when asked, a trimmed MP4. A video with
 * no motion at all is kept whole. Runs on this machine; needs ffmpeg and ffprobe.
 */

export interface PreviewOptions {
  input: string
  /** The GIF (default: the input's name with `.gif`). */
  output?: string
  trimmedVideoOutput?: string
  width: number
  fps: number
  trimStatic: boolean
  paddingMs: number
  freezeDurationMs: number
  /** ffmpeg freezedetect noise: `-50dB` or a ratio such as `0.003`. */
  freezeNoise: string
  minDurationMs: number
}

export const PREVIEW_DEFAULTS = {
  width: 640,
  fps: 4,
  trimStatic: true,
  padding: '750ms',
  freezeDuration: '500ms',
  freezeNoise: '-50dB',
  minDuration: '1.5s',
} as const

/** A still stretch of the video, in seconds from its start. */
export interface Freeze {
  start: number
  end: number
}

export interface MotionWindow {
  start: number
  end: number
  /** False when the whole video is kept (no still head or tail, or no motion at all). */
  trimmed: boolean
  /** Why nothing was cut, when nothing was. */
  reason?: 'no-still-edges' | 'no-motion' | 'trim-disabled'
}

export interface PreviewResult {
  input: string
  output: string
  bytes: number
  trimmedVideoOutput?: string
  trimmedVideoBytes?: number
  /** The input's length, seconds. */
  duration: number
  window: MotionWindow
  freezes: Freeze[]
  width: number
  fps: number
}

/** How close (seconds) a still stretch must come to the start or the end to count as the head or the tail. */
const EDGE = 0.25

const FREEZE_LINE = /lavfi\.freezedetect\.freeze_(start|end):\s*(-?[\d.]+)/g

/** The still stretches ffmpeg's freezedetect printed; one still at the end has no `freeze_end` and runs to `duration`. */
export function parseFreezes(log: string, duration: number): Freeze[] {
  const freezes: Freeze[] = []
  let open: number | undefined
  for (const [, kind, value] of log.matchAll(FREEZE_LINE)) {
    const at = Number.parseFloat(value)
    if (kind === 'start') open = at
    else if (open !== undefined) {
      freezes.push({ start: open, end: at })
      open = undefined
    }
  }
  if (open !== undefined) freezes.push({ start: open, end: duration })
  return freezes
}

/**
 * The part of the video worth showing: after a still head, before a still
 * tail, widened by `paddingMs` each side and to at least `minDurationMs`, all
 * within the video.
 */
export function motionWindow(freezes: Freeze[], duration: number, options: { paddingMs: number; minDurationMs: number }): MotionWindow {
  const whole = (reason: MotionWindow['reason']): MotionWindow => ({ start: 0, end: duration, trimmed: false, reason })
  const head = freezes.find((f) => f.start <= EDGE)
  if (head && head.end >= duration - EDGE) return whole('no-motion')
  const tail = freezes.find((f) => f !== head && f.end >= duration - EDGE)
  let start = head ? head.end : 0
  let end = tail ? tail.start : duration
  if (end <= start) return whole('no-motion')
  if (!head && !tail) return whole('no-still-edges')
  const pad = options.paddingMs / 1000
  start = Math.max(0, start - pad)
  end = Math.min(duration, end + pad)
  const min = Math.min(options.minDurationMs / 1000, duration)
  if (end - start < min) {
    const grow = (min - (end - start)) / 2
    start = Math.max(0, start - grow)
    end = Math.min(duration, start + min)
    start = Math.max(0, end - min)
  }
  const round = (seconds: number) => Math.round(seconds * 1000) / 1000
  return { start: round(start), end: round(end), trimmed: start > 0 || end < duration }
}

/** `-50dB` or a plain ratio; anything else is a usage error. */
export function checkNoise(noise: string): string {
  const value = noise.trim()
  if (!/^-?\d+(\.\d+)?(dB)?$/i.test(value))
    throw usageError(`--freeze-noise: expected a level such as -50dB or a ratio such as 0.003, got ${JSON.stringify(noise)}`)
  return value.replace(/db$/i, 'dB')
}

/** The ffmpeg arguments for the GIF: one pass that builds the clip's palette and applies it. */
export function gifArgs(input: string, output: string, window: Pick<MotionWindow, 'start' | 'end'>, width: number, fps: number): string[] {
  const filter = `fps=${fps},scale=${width}:-1:flags=lanczos,split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=5`
  return ['-loglevel', 'error', '-y', ...clip(input, window), '-filter_complex', filter, '-loop', '0', output]
}

/** The ffmpeg arguments for the trimmed MP4 (H.264, even dimensions, no audio). */
export function trimmedVideoArgs(input: string, output: string, window: Pick<MotionWindow, 'start' | 'end'>): string[] {
  return [
    '-loglevel',
    'error',
    '-y',
    ...clip(input, window),
    '-an',
    '-vf',
    'scale=trunc(iw/2)*2:trunc(ih/2)*2',
    '-c:v',
    'libx264',
    '-preset',
    'veryfast',
    '-pix_fmt',
    'yuv420p',
    '-movflags',
    '+faststart',
    output,
  ]
}

const clip = (input: string, window: Pick<MotionWindow, 'start' | 'end'>) => [
  '-ss',
  window.start.toFixed(3),
  '-i',
  input,
  '-t',
  (window.end - window.start).toFixed(3),
]

export async function detectFreezes(input: string, duration: number, noise: string, freezeDurationMs: number): Promise<Freeze[]> {
  const filter = `freezedetect=n=${noise}:d=${(freezeDurationMs / 1000).toFixed(3)}`
  const { stderr } = await runTool('ffmpeg', ['-loglevel', 'info', '-i', input, '-map', '0:v:0', '-vf', filter, '-f', 'null', '-'])
  return parseFreezes(stderr, duration)
}

export const defaultGifPath = (input: string) => `${input.replace(/\.[^./\\]+$/, '')}.gif`

export async function mediaPreview(options: PreviewOptions): Promise<PreviewResult> {
  if (!Number.isInteger(options.width) || options.width < 16) throw usageError(`--width: expected at least 16 pixels, got ${options.width}`)
  if (!(options.fps > 0 && options.fps <= 60)) throw usageError(`--fps: expected 1 to 60 frames a second, got ${options.fps}`)
  const noise = checkNoise(options.freezeNoise)
  try {
    await stat(options.input)
  } catch {
    throw new CrabboxError(`no video at ${options.input}`, {
      exit: 'notFound',
      code: 'not_found',
      hint: 'Pass the recording with --input.',
    })
  }
  const output = options.output ?? defaultGifPath(options.input)
  if (output === options.input) throw usageError('--output would overwrite the input video')
  const duration = await probeDuration(options.input)
  const freezes = options.trimStatic ? await detectFreezes(options.input, duration, noise, options.freezeDurationMs) : []
  const window = options.trimStatic
    ? motionWindow(freezes, duration, { paddingMs: options.paddingMs, minDurationMs: options.minDurationMs })
    : { start: 0, end: duration, trimmed: false, reason: 'trim-disabled' as const }
  await runTool('ffmpeg', gifArgs(options.input, output, window, options.width, options.fps))
  const result: PreviewResult = {
    input: options.input,
    output,
    bytes: (await stat(output)).size,
    duration,
    window,
    freezes,
    width: options.width,
    fps: options.fps,
  }
  if (options.trimmedVideoOutput) {
    await runTool('ffmpeg', trimmedVideoArgs(options.input, options.trimmedVideoOutput, window))
    result.trimmedVideoOutput = options.trimmedVideoOutput
    result.trimmedVideoBytes = (await stat(options.trimmedVideoOutput)).size
  }
  return result
}
