import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { desktopTargetFlags, durationFlag } from '../../flags.js'
import type { VideoResult } from '../../services/artifacts/video.js'

export default class ArtifactsVideo extends BaseCommand<typeof ArtifactsVideo> {
  static override summary = "Record a lease's desktop to an MP4"
  static override description =
    'Records display :99 on the runner with ffmpeg (x11grab, H.264) for --duration and copies the MP4 back. ' +
    'Linux desktop leases only; a runner without ffmpeg or an X server is exit 5 with the fix.'
  static override examples = ['<%= config.bin %> artifacts video --id blue-crab --duration 20s --output run.mp4']
  static override flags = {
    ...desktopTargetFlags,
    output: Flags.string({ char: 'o', description: 'Where to write the MP4 (default crabbox-<slug>-screen.mp4)' }),
    duration: durationFlag({ description: 'How long to record (1s to 10m)', default: '10s' }),
    fps: Flags.integer({ description: 'Frames per second', default: 15, min: 1, max: 60 }),
  }

  async run(): Promise<VideoResult> {
    const { flags } = await this.parse(ArtifactsVideo)
    const { video } = await import('../../services/artifacts/video.js')
    const result = await video(await this.context(flags), flags)
    if (!this.jsonEnabled()) this.log(`${result.output} ${result.seconds}s ${result.fps}fps ${result.bytes} bytes`)
    return result
  }
}
