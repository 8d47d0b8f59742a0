import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import type { CrabboxError } from '../../errors.js'
import { desktopTargetFlags, durationFlag } from '../../flags.js'
import type { CollectResult } from '../../services/artifacts/collect.js'

export default class ArtifactsCollect extends BaseCommand<typeof ArtifactsCollect> {
  static override summary = "Bundle a lease's evidence into one folder: screenshot, video, GIF, doctor, WebVNC status, run log"
  static override description =
    'Writes each piece asked for into --output, with metadata.json naming every file (size, SHA-256), the lease and the run. ' +
    'A piece that fails does not stop the others: it is printed as problem:/rescue: lines and listed in metadata.json, ' +
    "and the command exits with the first failure's code after the folder is written. --gif needs ffmpeg here and on the runner."
  static override examples = [
    '<%= config.bin %> artifacts collect --id blue-crab',
    '<%= config.bin %> artifacts collect --id blue-crab --video --gif --duration 15s --output evidence',
    '<%= config.bin %> artifacts collect --id blue-crab --run run_0123456789ab --all --json',
  ]
  static override flags = {
    ...desktopTargetFlags,
    output: Flags.string({ char: 'o', description: 'Folder to write (default crabbox-<slug>-artifacts)' }),
    run: Flags.string({ description: "Also the run's log and record (run_…; needs the broker)", helpValue: 'RUN' }),
    all: Flags.boolean({ description: 'Every piece: screenshot, video, GIF, doctor, WebVNC status, metadata', default: false }),
    screenshot: Flags.boolean({ description: 'A PNG of the desktop', default: true, allowNo: true }),
    video: Flags.boolean({ description: 'An MP4 of the desktop for --duration', default: false, allowNo: true }),
    gif: Flags.boolean({
      description: 'A GIF (and trimmed MP4) of the video, still head and tail cut (records the video)',
      default: false,
      allowNo: true,
    }),
    doctor: Flags.boolean({ description: 'The desktop doctor checks (doctor.json)', default: true, allowNo: true }),
    'webvnc-status': Flags.boolean({ description: "The WebVNC bridge's status (needs the broker)", default: true, allowNo: true }),
    metadata: Flags.boolean({ description: 'Write metadata.json', default: true, allowNo: true }),
    duration: durationFlag({ description: 'How long to record the video (1s to 10m)', default: '10s' }),
    fps: Flags.integer({ description: 'Video frames per second', default: 15, min: 1, max: 60 }),
    'gif-width': Flags.integer({ description: 'GIF width in pixels', default: 640, min: 16 }),
  }

  private result?: CollectResult

  /** Under --json an incomplete collection still gives the folder, its files and the warnings, beside the error. */
  protected override failureJson(failure: CrabboxError): unknown {
    return { ...this.result, ...(super.failureJson(failure) as object) }
  }

  async run(): Promise<CollectResult> {
    const { flags } = await this.parse(ArtifactsCollect)
    const { collect, collectFailure } = await import('../../services/artifacts/collect.js')
    const result = await collect(await this.context(flags), {
      ...flags,
      webvncStatus: flags['webvnc-status'],
      gifWidth: flags['gif-width'],
    })
    this.result = result
    if (!this.jsonEnabled()) {
      for (const file of result.files) this.log(`${result.output}/${file.name} ${file.size} bytes`)
      for (const skipped of result.skipped) this.log(`skipped ${skipped}`)
    }
    const failure = collectFailure(result)
    if (failure) throw failure
    return result
  }
}
