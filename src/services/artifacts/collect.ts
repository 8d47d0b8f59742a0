import { createHash } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ServiceContext } from '../context.js'
import { CrabboxError, ExitCode } from '../../errors.js'
import { RescueError, type Rescue } from '../../ui/rescue.js'
import { doctorScript, parseDoctor } from '../desktop/doctor.js'
import { captureScreenshot } from '../desktop/screenshot.js'
import { cli, desktopLease, remote, type DesktopFlags, type DesktopLease } from '../desktop/session.js'
import { desktopRefusal } from '../desktop/targets.js'
import { mediaPreview, PREVIEW_DEFAULTS } from './media.js'
import { parseDuration } from '../../config/schema.js'
import { recordVideo, videoSeconds } from './video.js'

/**
 * `crabbox artifacts collect`: one local folder with what was asked for from a
 * desktop lease (screenshot, video, GIF preview, desktop doctor, WebVNC status)
 * and a run (its log and record), plus `metadata.json` naming each file with
 * its size and SHA-256, the lease and the run. A piece that fails does not stop
 * the others: it becomes a `problem:`/`rescue:` warning, and the command ends
 * with the first failure's exit code after the folder and manifest are written.
 */

export interface CollectFlags extends DesktopFlags {
  output?: string
  run?: string
  all: boolean
  screenshot: boolean
  video: boolean
  gif: boolean
  doctor: boolean
  webvncStatus: boolean
  metadata: boolean
  duration: string
  fps: number
  gifWidth: number
}

export interface CollectedFile {
  name: string
  size: number
  sha256: string
}

export interface CollectWarning extends Rescue {
  /** The piece that failed: screenshot, video, gif, doctor, webvnc-status, run. */
  item: string
  exitCode: number
}

export interface CollectResult {
  output: string
  lease?: { id: string; slug: string; provider?: string }
  run?: { id: string; state: string; exitCode?: number | null }
  files: CollectedFile[]
  warnings: CollectWarning[]
  /** Pieces asked for that do not apply here, with the reason. */
  skipped: string[]
  collectedAt: string
}

export const METADATA_FILE = 'metadata.json'
export const defaultCollectDir = (name: string) => `crabbox-${name}-artifacts`

/** `--all` asks for every piece; a GIF needs the video it is made from. */
export function collectPlan(flags: CollectFlags) {
  const all = flags.all
  const gif = all || flags.gif
  return {
    screenshot: all || flags.screenshot,
    video: all || flags.video || gif,
    gif,
    doctor: all || flags.doctor,
    webvncStatus: all || flags.webvncStatus,
    metadata: all || flags.metadata,
  }
}

class Bundle {
  readonly files: CollectedFile[] = []
  readonly warnings: CollectWarning[] = []
  readonly skipped: string[] = []
  constructor(readonly dir: string) {}

  async add(name: string, data: Buffer | string): Promise<string> {
    const path = join(this.dir, name)
    await writeFile(path, data)
    this.files.push(fileEntry(name, typeof data === 'string' ? Buffer.from(data) : data))
    return path
  }

  async addExisting(name: string): Promise<void> {
    this.files.push(fileEntry(name, await readFile(join(this.dir, name))))
  }

  /** Runs one piece; a failure becomes a warning. */
  async piece(item: string, work: () => Promise<unknown>): Promise<void> {
    try {
      await work()
    } catch (error) {
      this.warnings.push(...warningsOf(item, error))
    }
  }
}

const fileEntry = (name: string, data: Buffer): CollectedFile => ({
  name,
  size: data.length,
  sha256: createHash('sha256').update(data).digest('hex'),
})

function warningsOf(item: string, error: unknown): CollectWarning[] {
  const exitCode = error instanceof CrabboxError ? error.exitCode : ExitCode.error
  if (error instanceof RescueError) return error.steps.map((step) => ({ item, exitCode, ...step }))
  const hint = error instanceof CrabboxError && error.hint ? ` (${error.hint.replace(/\.$/, '')})` : ''
  return [{ item, exitCode, layer: item, problem: `${(error as Error).message}${hint}`, rescue: [] }]
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`

async function desktopPieces(
  context: ServiceContext,
  lease: DesktopLease,
  plan: ReturnType<typeof collectPlan>,
  bundle: Bundle,
  flags: CollectFlags,
) {
  if (plan.doctor)
    await bundle.piece('doctor', async () => {
      const out = await remote(lease, doctorScript(lease), { limitMs: 60_000, layer: 'runner', rescue: [`${cli(lease, 'ssh')} -- true`] })
      await bundle.add('doctor.json', json({ leaseId: lease.leaseId, checks: parseDoctor(out.stdout.toString('utf8'), lease) }))
    })
  if (plan.screenshot) await bundle.piece('screenshot', async () => bundle.add('screenshot.png', await captureScreenshot(lease)))
  let videoPath: string | undefined
  if (plan.video)
    await bundle.piece('video', async () => {
      const refused = desktopRefusal(lease.os.target, 'video', { windowsMode: lease.os.windowsMode, staticHost: lease.static })
      if (refused) throw new CrabboxError(refused, { exit: 'usage', code: 'unsupported_target' })
      context.progress.phase(`recording ${lease.name}'s display for ${videoSeconds(flags)}s`)
      videoPath = await bundle.add('screen.mp4', await recordVideo(lease, flags))
      context.progress.done()
    })
  if (plan.gif && videoPath) {
    const input = videoPath
    await bundle.piece('gif', async () => {
      await mediaPreview({
        input,
        output: join(bundle.dir, 'screen.gif'),
        trimmedVideoOutput: join(bundle.dir, 'screen-trimmed.mp4'),
        width: flags.gifWidth,
        fps: PREVIEW_DEFAULTS.fps,
        trimStatic: PREVIEW_DEFAULTS.trimStatic,
        paddingMs: parseDuration(PREVIEW_DEFAULTS.padding),
        freezeDurationMs: parseDuration(PREVIEW_DEFAULTS.freezeDuration),
        freezeNoise: PREVIEW_DEFAULTS.freezeNoise,
        minDurationMs: parseDuration(PREVIEW_DEFAULTS.minDuration),
      })
      await bundle.addExisting('screen.gif')
      await bundle.addExisting('screen-trimmed.mp4')
    })
  } else if (plan.gif) bundle.skipped.push('gif: no video to make it from')
}

async function webvncPiece(context: ServiceContext, leaseId: string, bundle: Bundle) {
  await bundle.piece('webvnc-status', async () => {
    const { webvncStatus } = await import('../webvnc/index.js')
    try {
      await bundle.add('webvnc-status.json', json(await webvncStatus(context, leaseId)))
    } catch (error) {
      if (error instanceof CrabboxError && error.code === 'broker_required') bundle.skipped.push('webvnc-status: no broker is configured')
      else throw error
    }
  })
}

async function runPiece(context: ServiceContext, runId: string, bundle: Bundle): Promise<CollectResult['run']> {
  let run: CollectResult['run'] = { id: runId, state: 'unknown' }
  await bundle.piece('run', async () => {
    const { runLog } = await import('../history.js')
    const got = await runLog(context, runId, true)
    if (!('run' in got)) return
    run = { id: got.run.id, state: got.run.state, exitCode: got.run.exitCode }
    await bundle.add('run.log', got.log)
    await bundle.add('run.json', json(got.run))
  })
  return run
}

export async function collect(context: ServiceContext, flags: CollectFlags): Promise<CollectResult> {
  const plan = collectPlan(flags)
  if (plan.video) videoSeconds(flags) // bad --duration or --fps: a usage error before anything runs
  const desktop = plan.screenshot || plan.video || plan.doctor
  // The lease must allow the first piece asked for; a later piece its OS cannot have is a warning.
  const need = plan.screenshot ? 'screenshot' : plan.video ? 'video' : 'desktop'
  const lease = desktop ? await desktopLease(context, flags, 'artifacts collect', need) : undefined
  const result: CollectResult = { output: '', files: [], warnings: [], skipped: [], collectedAt: new Date().toISOString() }
  try {
    result.output = flags.output ?? defaultCollectDir(lease?.name ?? flags.run ?? 'run')
    await mkdir(result.output, { recursive: true })
    const bundle = new Bundle(result.output)
    if (lease) {
      result.lease = { id: lease.leaseId, slug: lease.name, provider: lease.provider }
      await desktopPieces(context, lease, plan, bundle, flags)
    }
    const leaseId = lease?.leaseId ?? flags.id
    if (plan.webvncStatus && leaseId) await webvncPiece(context, leaseId, bundle)
    else if (plan.webvncStatus) bundle.skipped.push('webvnc-status: no lease given (--id)')
    if (flags.run) result.run = await runPiece(context, flags.run, bundle)
    Object.assign(result, { files: bundle.files, warnings: bundle.warnings, skipped: bundle.skipped })
    if (plan.metadata) await writeFile(join(result.output, METADATA_FILE), json(metadata(result)))
  } finally {
    await lease?.close()
  }
  return result
}

/** The manifest: each file with its size and hash, the lease, the run, and what went wrong. */
export const metadata = (result: CollectResult) => ({
  collectedAt: result.collectedAt,
  lease: result.lease ?? null,
  run: result.run ?? null,
  files: result.files,
  warnings: result.warnings,
  skipped: result.skipped,
})

/** After the folder is written: the warnings as one failure, with the first one's exit code. */
export function collectFailure(result: CollectResult): RescueError | undefined {
  if (!result.warnings.length) return undefined
  return new RescueError(
    result.warnings.map(({ layer, problem, rescue }) => ({ layer, problem, rescue })),
    { exit: result.warnings[0].exitCode, code: 'collect_incomplete' },
  )
}
