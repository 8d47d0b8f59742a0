import { Flags } from '@oclif/core'
import { parseDuration } from './config/schema.js'
import { durationFlag } from './flags.js'
import { PREVIEW_DEFAULTS, type PreviewOptions, type PreviewResult } from './services/artifacts/media.js'

/** The flags of `media preview` and `artifacts gif` (the same command under two names). */
export const previewFlags = {
  input: Flags.string({
    char: 'i',
    description: 'The video to preview (an MP4 from artifacts video, or any video ffmpeg reads)',
    required: true,
  }),
  output: Flags.string({ char: 'o', description: 'Where to write the GIF (default: the input with .gif)' }),
  'trimmed-video-output': Flags.string({ description: 'Also write the trimmed clip as an MP4 here' }),
  width: Flags.integer({ description: 'GIF width in pixels (height keeps the aspect)', default: PREVIEW_DEFAULTS.width, min: 16 }),
  fps: Flags.integer({ description: 'GIF frames per second', default: PREVIEW_DEFAULTS.fps, min: 1, max: 60 }),
  'trim-static': Flags.boolean({
    description: 'Cut a still head and tail (--no-trim-static keeps the whole video)',
    default: PREVIEW_DEFAULTS.trimStatic,
    allowNo: true,
  }),
  'trim-padding': durationFlag({ description: 'Still time kept before and after the motion', default: PREVIEW_DEFAULTS.padding }),
  'freeze-duration': durationFlag({ description: 'Shortest still stretch that counts as still', default: PREVIEW_DEFAULTS.freezeDuration }),
  'freeze-noise': Flags.string({
    description: 'How much change still counts as still: -50dB, or a ratio such as 0.003',
    default: PREVIEW_DEFAULTS.freezeNoise,
  }),
  'min-duration': durationFlag({ description: 'Shortest clip kept (widened around the motion)', default: PREVIEW_DEFAULTS.minDuration }),
}

export interface PreviewFlagValues {
  input: string
  output?: string
  'trimmed-video-output'?: string
  width: number
  fps: number
  'trim-static': boolean
  'trim-padding': string
  'freeze-duration': string
  'freeze-noise': string
  'min-duration': string
}

export const previewOptions = (flags: PreviewFlagValues): PreviewOptions => ({
  input: flags.input,
  output: flags.output,
  trimmedVideoOutput: flags['trimmed-video-output'],
  width: flags.width,
  fps: flags.fps,
  trimStatic: flags['trim-static'],
  paddingMs: parseDuration(flags['trim-padding']),
  freezeDurationMs: parseDuration(flags['freeze-duration']),
  freezeNoise: flags['freeze-noise'],
  minDurationMs: parseDuration(flags['min-duration']),
})

const s = (seconds: number) => `${seconds.toFixed(3)}s`

/** The lines `media preview` prints: what was written, and what part of the video was kept. */
export function previewLines(result: PreviewResult): string[] {
  const kept = result.window.trimmed
    ? `kept ${s(result.window.start)}–${s(result.window.end)} of ${s(result.duration)}`
    : `kept the whole ${s(result.duration)} (${result.window.reason === 'no-motion' ? 'no motion found' : result.window.reason === 'trim-disabled' ? 'trimming off' : 'no still head or tail'})`
  return [
    `${result.output} ${result.width}px ${result.fps}fps ${result.bytes} bytes, ${kept}`,
    ...(result.trimmedVideoOutput ? [`${result.trimmedVideoOutput} ${result.trimmedVideoBytes} bytes`] : []),
  ]
}
