import type { Readable } from 'node:stream'
import { computeFingerprint } from '../fingerprint.js'
import { SEED_PACK_CHECKOUT, SEED_PACK_PREPARE, SEED_PACK_SCRIPT, gitBlock } from '../git-seed.js'
import { formatBytes, plural } from '../../../ui/format.js'
import type { ManifestEntry } from '../manifest.js'
import { encodeRecord } from '../records.js'
import { runRemote } from '../remote-exec.js'
import {
  META_FILES,
  PART_SCRIPT,
  RUN_UPLOADED_SCRIPT,
  UPLOAD_SCRIPT,
  applyScript,
  commitScript,
  readApplyLine,
  shCommand,
} from '../remote-scripts.js'
import { buildSeed, seedPaths, type SeedFiles } from '../seed-build.js'
import { hashClean, packGroups, packStream, planSeedPack, seedPackPaths, type SeedPack } from '../seed-pack.js'
import type { SyncRun } from './context.js'
import type { LocalSide } from './manifest.js'
import type { SendDecision } from './plan.js'

type Transfer = typeof import('../transfer.js')
type Pack = { stream: Readable; done: Promise<void> }
/** The tar streams, and cold with the seed pack, the pack on its own channel. */
type Packs = { tar?: Pack; sides: Pack[]; seedPacks: Pack[]; meta: string }

/** Above this the apply script travels in its own exec instead of argv (Linux caps one argument at 128 KiB). */
export const INLINE_SCRIPT_LIMIT = 96 * 1024

/** Only a sync that may send something needs the tar writer (tar-stream is slow to load): started early, awaited by sendStep. */
export function loadTransfer(): Promise<Transfer> {
  const transfer = import('../transfer.js')
  transfer.catch(() => {})
  return transfer
}

export interface Sent {
  /** What the runner now holds: computed while sending when the sync was cold. */
  fingerprint: string
  /** The runner's record after this sync (built when first asked). */
  records: () => Buffer
  /** Cold: each entry's hash, taken as it was read for the tar. */
  hashes?: string[]
  /** `need-bundle` / `need-base` lines: the runner's git still lacks history. */
  needs: Set<string>
  /** A sync planned without the probe found the runner holding something else: nothing was changed. */
  stale?: boolean
  /** Then the probe's answer, printed by the same exec after `stale` (see Expected.probe). */
  staleProbe?: Buffer
}

interface Scripts {
  /** The exec that prunes and extracts (and commits, unless split). */
  command: string
  /** The apply script, when too large for argv: uploaded first. */
  upload?: string
  /** Split transfers: the commit half, run once every part landed. */
  commit?: string
  parts: { start: number; entries: ManifestEntry[] }[]
  split: boolean
  /** Cold with the seed pack: the manifest index of each tar entry (the clean files travel in the pack). */
  indexOf?: number[]
}

/** A cold sync whose runner builds HEAD: the clean files go as git objects (seed-pack.ts). */
async function seedPackFor(run: SyncRun, local: LocalSide, decision: SendDecision): Promise<SeedPack | undefined> {
  if (!decision.cold || !decision.work?.build || !local.manifest.git?.head) return undefined
  return planSeedPack(run.options.repoRoot, local.manifest, local.meta).catch(() => undefined)
}

/**
 * One exec that prunes, extracts the changed files from one tar stream,
 * commits the runner's record, seeds git and writes the fingerprint; a large
 * transfer goes over several channels at once.
 */
export async function sendStep(run: SyncRun, local: LocalSide, decision: SendDecision, loading: Promise<Transfer>): Promise<Sent> {
  const { plan } = decision
  const transfer = await loading
  const gzip = transfer.shouldCompress(plan.sendBytes + (decision.fullManifest ? local.manifest.files * 80 : 0), run.env)
  const seedPack = await seedPackFor(run, local, decision)
  const scripts = applyScripts(run, local, decision, gzip, transfer, seedPack)
  if (scripts.upload !== undefined) {
    const upload = scripts.upload
    await run.timer.phase('prune', () =>
      runRemote(run.session, shCommand(UPLOAD_SCRIPT, 'crabbox-upload', [run.options.workdir, local.meta]), {
        stdin: upload,
        signal: run.signal,
        what: 'uploading the sync script',
      }),
    )
  }
  // A short status: on a terminal the transfer bar beside it gives the files and bytes.
  run.progress.phase('sync: sending')
  run.progress.detail(`sync: sending ${plural(plan.send.length, 'file')} (${formatBytes(plan.sendBytes)})`)
  if (plan.remove.length > 0) run.progress.detail(`sync: removing ${plural(plan.remove.length, 'file')}`)
  const sent: Sent = {
    fingerprint: decision.fingerprint,
    records: decision.records,
    hashes: decision.cold ? new Array(local.manifest.entries.length) : undefined,
    needs: new Set(),
  }
  // The shallow seed (HEAD built on the runner from the synced files) is made while the files travel;
  // cold, the clean files travel as HEAD's objects instead, hashed here for the record meanwhile.
  // Each entry read into a tar, or hashed for the pack, counts towards the transfer bar.
  const moved = { bytes: 0, totalBytes: plan.sendBytes, files: 0, totalFiles: plan.send.length }
  const onCleanHash = (at: number, hash: string) => {
    sent.hashes![at] = hash
    moved.bytes += local.manifest.entries[at].size
    moved.files++
    run.progress.transfer(moved)
  }
  const seed = seedPack
    ? hashClean(run.options.repoRoot, local.manifest.entries, seedPack, onCleanHash).then(() => ({
        files: seedPack.files,
        fromFiles: seedPack.clean.size,
        packed: 0,
      }))
    : decision.work?.build
      ? buildSeed(run.options.repoRoot, local.manifest, local.meta).catch(() => undefined)
      : undefined
  // A failed read is reported by the trailer that awaits it (the tar then fails), not as an unhandled rejection.
  seed?.catch(() => {})
  const packs = packStreams(run, local, decision, scripts, sent, {
    gzip,
    tarStream: transfer.tarStream,
    seed,
    seedPaths: seedPack ? seedPackPaths(local.meta) : seed ? seedPaths(local.meta) : [],
    moved,
  })
  if (seedPack) {
    const entries = local.manifest.entries
    const bytes = [...seedPack.clean].reduce((n, at) => n + entries[at].size, 0)
    const groups = packGroups(seedPack, entries, transfer.transferParts(bytes, seedPack.clean.size, run.env))
    packs.seedPacks = groups.map((objects) => packStream(run.options.repoRoot, seedPack, objects))
  }
  await applyOnRunner(run, scripts, packs, sent, gzip)
  if (plan.remove.length === 0) run.timer.skip('prune', 'nothing to remove')
  if (!decision.needTar) run.timer.skip('transfer', 'nothing changed')
  return sent
}

function applyScripts(
  run: SyncRun,
  local: LocalSide,
  decision: SendDecision,
  gzip: boolean,
  transfer: Transfer,
  seedPack?: SeedPack,
): Scripts {
  const { plan, cold, work } = decision
  const git = local.manifest.git
  const scriptOptions = {
    workdir: run.options.workdir,
    meta: local.meta,
    fingerprint: run.useFingerprint ? (cold ? 'tar' : decision.fingerprint) : undefined,
    pending: plan.pending,
    remove: plan.remove,
    tar: decision.needTar ? { gzip } : undefined,
    fullManifest: decision.fullManifest,
    records: plan.delta,
    git: work && git ? gitBlock(git, work, Boolean(seedPack)) : undefined,
    checkout: seedPack ? SEED_PACK_CHECKOUT : undefined,
    beforeTransfer: seedPack ? SEED_PACK_PREPARE : undefined,
    expect: decision.expect,
  }
  const indexOf = seedPack ? plan.send.map((_, i) => i).filter((i) => !seedPack.clean.has(i)) : undefined
  const entries = indexOf ? indexOf.map((i) => plan.send[i]) : plan.send
  const bytes = entries.reduce((n, entry) => n + entry.size, 0)
  // A large transfer goes over several channels at once (the SSH window limits each channel, not the
  // connection); the record and fingerprint are then committed by one more exec once every part landed.
  // With the seed pack the commit always waits for the pack's channel too.
  let parts = decision.needTar ? transfer.splitByBytes(entries, transfer.transferParts(bytes, entries.length, run.env)) : []
  const commit = parts.length > 1 || seedPack ? commitScript(scriptOptions) : undefined
  if (commit === undefined || commit.length > INLINE_SCRIPT_LIMIT) parts = [{ start: 0, entries }]
  if (parts.length === 0) parts = [{ start: 0, entries: [] }]
  const split = parts.length > 1 || (seedPack !== undefined && commit !== undefined && commit.length <= INLINE_SCRIPT_LIMIT)
  const script = applyScript({ ...scriptOptions, deferCommit: split })
  const inline = script.length <= INLINE_SCRIPT_LIMIT
  return {
    command: inline
      ? shCommand(script, 'crabbox-apply')
      : shCommand(RUN_UPLOADED_SCRIPT, 'crabbox-apply', [run.options.workdir, local.meta]),
    upload: inline ? undefined : script,
    commit,
    parts,
    split,
    indexOf,
  }
}

/** The tar streams (one per part); the first ends with the runner's new record and, cold, the fingerprint. */
function packStreams(
  run: SyncRun,
  local: LocalSide,
  decision: SendDecision,
  scripts: Scripts,
  sent: Sent,
  options: {
    gzip: boolean
    tarStream: Transfer['tarStream']
    seed?: Promise<SeedFiles | undefined>
    seedPaths: string[]
    moved: { bytes: number; totalBytes: number; files: number; totalFiles: number }
  },
): Packs {
  const { manifest, meta } = local
  const { cold, fullManifest } = decision
  const gzip = options.gzip
  const trailer = async () => {
    // A seed that could not be built locally is left out: the runner then asks for the bundle.
    const seeded = (await options.seed)?.files ?? []
    if (cold) {
      const hashes = sent.hashes!
      sent.fingerprint = computeFingerprint(manifest, { hashes, hashedFiles: manifest.files, hashedBytes: manifest.bytes }, run.config)
      const records = Buffer.from(manifest.entries.map((entry, i) => encodeRecord(hashes[i], entry.mode, entry.path)).join(''))
      sent.records = () => records
    }
    const files = [...seeded, ...(fullManifest ? [{ path: `${meta}/${META_FILES.next}`, data: sent.records() }] : [])]
    if (cold && run.useFingerprint)
      files.push({ path: `${meta}/${META_FILES.fingerprintNext}`, data: Buffer.from(`${sent.fingerprint}\n`) })
    return files
  }
  // Each entry read into a tar counts towards the transfer bar (the SSH window holds back the reads).
  const moved = options.moved
  const onBytes = (bytes: number) => {
    moved.bytes += bytes
    run.progress.transfer(moved)
  }
  const onHash = (start: number) => (index: number, hash: string) => {
    if (sent.hashes) sent.hashes[scripts.indexOf ? scripts.indexOf[start + index] : start + index] = hash
    moved.files++
    run.progress.transfer(moved)
  }
  const sides = scripts.parts
    .slice(1)
    .map((part) =>
      options.tarStream(
        { root: manifest.root, entries: part.entries, extra: () => [], extraPaths: [], onHash: onHash(part.start), onBytes },
        { gzip },
      ),
    )
  if (!decision.needTar) return { sides, seedPacks: [], meta }
  const tar = options.tarStream(
    {
      root: manifest.root,
      entries: scripts.parts[0].entries,
      // The record holds every part's hashes: written once all parts were read.
      extra: scripts.split ? () => Promise.all(sides.map((side) => side.done)).then(trailer) : trailer,
      extraPaths: [`${meta}/${META_FILES.next}`, ...options.seedPaths],
      onHash: onHash(0),
      onBytes,
    },
    { gzip },
  )
  return { tar, sides, seedPacks: [], meta }
}

/** Runs the apply exec (the extra parts on their own channels once the prune is over), then the deferred commit. */
async function applyOnRunner(run: SyncRun, scripts: Scripts, packs: Packs, sent: Sent, gzip: boolean): Promise<void> {
  const { session, signal } = run
  const marks = phaseMarks(run, sent)
  const streams = [packs.tar, ...packs.sides, ...packs.seedPacks]
  let packError: unknown
  for (const stream of streams) stream?.done.catch((error: unknown) => (packError ??= error))
  // The first failure closes every other channel of this sync.
  const channels = new AbortController()
  const execSignal = scripts.split ? AbortSignal.any([signal, channels.signal]) : signal
  let failure: unknown
  const fail = (error: unknown) => {
    failure ??= error
    channels.abort(error)
  }
  let sideRuns: Promise<unknown>[] | undefined
  // The extra parts start once the runner reports the prune is over, so a path changing type extracts cleanly.
  const onApplyLine = (line: string) => {
    marks.onLine(line)
    if (scripts.split && line === 'mark transfer' && sideRuns === undefined) {
      sideRuns = packs.sides.map((side) =>
        runRemote(session, shCommand(PART_SCRIPT, 'crabbox-part', [run.options.workdir, gzip ? 'z' : '-']), {
          stdin: side.stream,
          signal: execSignal,
          what: 'sending files',
        }).catch(fail),
      )
      for (const [i, pack] of packs.seedPacks.entries())
        sideRuns.push(
          runRemote(session, shCommand(SEED_PACK_SCRIPT, 'crabbox-seed-pack', [run.options.workdir, packs.meta, String(i)]), {
            stdin: pack.stream,
            signal: execSignal,
            what: "sending HEAD's files as git objects",
          }).catch(fail),
        )
    }
  }
  try {
    const stdout = await runRemote(session, scripts.command, {
      stdin: packs.tar?.stream,
      signal: execSignal,
      onLine: onApplyLine,
      what: 'applying the sync',
    }).catch(fail)
    if (sent.stale && stdout) {
      const at = stdout.indexOf('stale\n')
      if (at !== -1) sent.staleProbe = stdout.subarray(at + 6)
    }
    await Promise.all(sideRuns ?? [])
    if (failure) throw failure
    if (scripts.commit && scripts.split)
      await runRemote(session, shCommand(scripts.commit, 'crabbox-commit'), { signal, onLine: marks.onLine, what: 'committing the sync' })
  } catch (error) {
    // A local read failure truncates the stream, so the runner's tar fails too: report the cause.
    throw packError ?? error
  } finally {
    for (const stream of streams) stream?.stream.destroy()
  }
  marks.finish()
}

/** Times the runner's phases from its `mark` lines; passes on its warnings and git needs. */
export function phaseMarks(run: SyncRun, sent: Sent): { onLine(line: string): void; finish(): void } {
  let current: string | undefined
  let since = performance.now()
  return {
    onLine(line) {
      // After `stale` come the probe's lines (and the runner's record): not the apply's.
      if (sent.stale) return
      const read = readApplyLine(line)
      if (!read) return
      if ('mark' in read) {
        const now = performance.now()
        if (current) run.timer.add(current, now - since)
        current = read.mark
        since = now
      } else if ('warn' in read) run.warn(read.warn)
      else if ('stale' in read) sent.stale = true
      else sent.needs.add(read.need)
    },
    finish() {
      if (current) run.timer.add(current, performance.now() - since)
    },
  }
}
