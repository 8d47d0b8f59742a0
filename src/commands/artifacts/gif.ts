import MediaPreview from '../media/preview.js'

/** `artifacts gif` is `media preview` under the name the artifacts commands use. */
export default class ArtifactsGif extends MediaPreview {
  static override summary = 'Make a GIF (and a trimmed MP4) of the part of a video where something moves (same as media preview)'
  static override examples = [
    '<%= config.bin %> artifacts gif --input screen.mp4 --output screen.gif',
    '<%= config.bin %> artifacts gif --input screen.mp4 --trimmed-video-output clip.mp4 --json',
  ]
}
