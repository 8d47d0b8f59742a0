import { BaseCommand } from '../../base-command.js'
import { previewFlags, previewLines, previewOptions } from '../../media-flags.js'
import type { PreviewResult } from '../../services/artifacts/media.js'

export default class MediaPreview extends BaseCommand<typeof MediaPreview> {
  static override summary = 'Make a GIF (and a trimmed MP4) of the part of a video where something moves'
  static override description =
    "Runs on this machine with ffmpeg and ffprobe. ffmpeg's freeze detection finds a still head and tail; they are cut, keeping " +
    '--trim-padding on each side, and the rest becomes a GIF (a palette made for the clip) and, with --trimmed-video-output, an MP4. ' +
    'A video with no motion is kept whole. A missing ffmpeg is exit 5, naming what to install.'
  static override examples = [
    '<%= config.bin %> media preview --input screen.mp4 --output screen.gif',
    '<%= config.bin %> media preview --input screen.mp4 --trimmed-video-output clip.mp4 --width 480 --json',
  ]
  static override flags = previewFlags

  async run(): Promise<PreviewResult> {
    const { flags } = await this.parse(MediaPreview)
    const { mediaPreview } = await import('../../services/artifacts/media.js')
    const result = await mediaPreview(previewOptions(flags))
    if (!this.jsonEnabled()) for (const line of previewLines(result)) this.log(line)
    return result
  }
}
