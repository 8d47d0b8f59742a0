import type { Config } from '../../config/schema.js'
import { parseDuration } from '../../config/schema.js'
import { CrabboxError } from '../../errors.js'
import type { ExecOptions, SshSession } from '../../transport/ssh/types.js'
import type { Progress } from '../../ui/progress.js'
import { computeFingerprint, hashManifest, saveHashes } from './fingerprint.js'
import { gitBlock, gitWork, parseRemoteGit, sendBundle, type RemoteGit } from './git-seed.js'
import { SentManifests } from './hash-cache.js'
import { formatBytes } from '../../ui/format.js'
import { buildManifest, checkSize, readGitContext, type GitContext, type Manifest } from './manifest.js'
import { massDeletionGuard, planEverything, planSync, type SyncPlan } from './prune.js'
import { encodeRecord, parseRecords, type RemoteRecord } from './records.js'
import { META_FILES, PART_SCRIPT, PROBE_SCRIPT, RUN_UPLOADED_SCRIPT, SCRIPT_EXIT, UPLOAD_SCRIPT, applyScript, commitScript, shCommand } from './remote-scripts.js'
import { probeArgs, type Probed } from './guard.js'
import { beginGitView, checkUnchanged, saveSnapshot, type GitView, type Unchanged, type UnchangedCheck } from './snapshot.js'
import { Timer, type SyncPhase } from './timer.js'

export { checkUnchanged, type UnchangedCheck } from './snapshot.js'
export { runIfUnchanged, type GuardedCommand, type Probed, type WarmRun } from './guard.js'
export type { SyncPhase } from './timer.js'

export { buildManifest, findRepoRoot, checkPath, type Manifest, type ManifestEntry } from './manifest.js'
export { DEFAULT_EXCLUDES } from './excludes.js'
export { summarizeManifest, syncPlan, type SyncPlanSummary } from './summary.js'

export interface SyncOptions {
  repoRoot: string
  /** Remote absolute path of the workdir. */
  workdir: string
  config: Config['sync']
  session: SshSession
  progress: Progress
  /** Ignore the local hash cache and the runner's record: rehash and resend everything. */
  checksum?: boolean
  forceLarge?: boolean
  /** For CRABBOX_ALLOW_MASS_DELETIONS, CRABBOX_SYNC_ALLOW_LARGE, CRABBOX_SYNC_COMPRESS. */
  env?: NodeJS.ProcessEnv
  signal?: AbortSignal
  /** The local unchanged check, when the caller started it early (checkUnchanged) to overlap other work. */
  check?: UnchangedCheck
  /** The runner already answered the probe (the warm-run guard found its fingerprint differs). */
  probed?: Probed
}

export interface SyncResult {
  skipped: boolean
  filesSent: number
  bytesSent: number
  filesDeleted: number
  phases: SyncPhase[]
  totalMs: number
  /** Non-fatal problems (git seed, size warnings), already shown as progress warnings. */
  warnings: string[]
}

/** Above this the apply script travels in its own exec instead of argv (Linux caps one argument at 128 KiB). */
const INLINE_SCRIPT_LIMIT = 96 * 1024

interface Probe {
  fingerprint?: string
  git?: RemoteGit
  sizes: { base: number; delta: number }
  known: boolean
  records: Buffer
}

function parseProbe(stdout: Buffer): Probe {
  const probe: Probe = { sizes: { base: 0, delta: 0 }, known: false, records: Buffer.alloc(0) }
  let offset = 0
  while (offset < stdout.length) {
    const nl = stdout.indexOf(10, offset)
    const line = stdout.subarray(offset, nl === -1 ? stdout.length : nl).toString('utf8')
    offset = nl === -1 ? stdout.length : nl + 1
    const [word, ...rest] = line.split(' ')
    if (word === 'fp') probe.fingerprint = rest[0] === '-' ? undefined : rest[0]
    else if (word === 'git') probe.git = parseRemoteGit(line)
    else if (word === 'sizes') probe.sizes = { base: Number(rest[0]) || 0, delta: Number(rest[1]) || 0 }
    else if (word === 'manifest') {
      probe.known = rest[0] === 'known'
      probe.records = stdout.subarray(offset)
      break
    }
  }
  return probe
}

async function exec(session: SshSession, command: string, options: { stdin?: ExecOptions['stdin']; signal?: AbortSignal; onLine?: (line: string) => void; what: string }) {
  const stdout: Buffer[] = []
  let stderr = ''
  let partial = ''
  const result = await session.exec(command, {
    stdin: options.stdin,
    signal: options.signal,
    onStdout: (chunk) => {
      stdout.push(chunk)
      if (!options.onLine) return
      partial += chunk.toString('utf8')
      let nl: number
      while ((nl = partial.indexOf('\n')) !== -1) {
        options.onLine(partial.slice(0, nl))
        partial = partial.slice(nl + 1)
      }
    },
    onStderr: (chunk) => (stderr = (stderr + chunk.toString('utf8')).slice(-4000)),
  })
  if (options.signal?.aborted) throw syncTimeout(options.signal)
  if (result.code !== 0) {
    const detail = stderr.trim() || (result.code === null ? `killed by ${result.signal}` : `exit ${result.code}`)
    const exit = result.code === SCRIPT_EXIT.workdir ? 'the workdir could not be created' : result.code === SCRIPT_EXIT.tar ? 'extracting files failed' : `${options.what} failed`
    throw new CrabboxError(`sync: ${exit} on the runner: ${detail}`, { exit: 'sync', code: 'sync_failed', hint: 'Run again; an interrupted sync repairs itself. If it keeps failing, check disk space and permissions on the runner.' })
  }
  return Buffer.concat(stdout)
}

const syncTimeout = (signal: AbortSignal) =>
  new CrabboxError('sync timed out', { exit: 'sync', code: 'sync_timeout', hint: 'Raise sync.timeout, or shrink the sync (see `crabbox sync-plan`).', cause: signal.reason })

/**
 * Puts the local checkout on the runner: manifest, fingerprint skip (one round
 * trip), then one exec that prunes, extracts the changed files from one tar
 * stream, commits the runner's record, seeds git and writes the fingerprint.
 */
export async function syncWorkdir(options: SyncOptions): Promise<SyncResult> {
  const { config, session, progress } = options
  const env = options.env ?? process.env
  const timer = new Timer()
  const warnings: string[] = []
  const warn = (message: string) => {
    warnings.push(message)
    progress.warn(message)
  }
  const timeout = AbortSignal.timeout(parseDuration(config.timeout))
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout

  progress.phase('sync: building manifest')
  const useFingerprint = config.fingerprint && !options.checksum
  const sent = SentManifests.for(options.repoRoot)
  const check = options.check ?? checkUnchanged(options.repoRoot, config, options)
  const [snapshot, knownFingerprints] = await Promise.all([check.snapshot, sent.known()])
  const probeArgsFor = (git: GitContext | undefined) => probeArgs(options.workdir, git, config, knownFingerprints)
  let probing: Promise<Probe> | undefined
  let probedWith = ''
  const startProbe = (git: GitContext | undefined) => {
    const args = probeArgsFor(git)
    const started = performance.now()
    probedWith = args.join('\0')
    probing = exec(session, shCommand(PROBE_SCRIPT, 'crabbox-probe', args), { signal, what: 'checking the workdir' }).then((stdout) => {
      timer.add('fingerprint_remote', performance.now() - started)
      return parseProbe(stdout)
    })
    probing.catch(() => {})
  }

  // The checkout provably unchanged since its last fingerprint: no manifest pass at all.
  let unchanged: Unchanged | undefined
  if (options.probed) {
    unchanged = await check.unchanged
    timer.add('manifest', options.probed.checkMs)
    timer.add('fingerprint_remote', options.probed.ms)
    probing = Promise.resolve(parseProbe(options.probed.stdout))
    probedWith = probeArgsFor(unchanged?.git).join('\0')
  } else if (snapshot) {
    // The runner round trip overlaps the check, with the HEAD the check is about to confirm.
    startProbe(snapshot.git)
    unchanged = await timer.phase('manifest', () => check.unchanged)
    if (unchanged) {
      const probe = await probing!
      if (probe.fingerprint === unchanged.fingerprint) {
        timer.skip('fingerprint', 'checkout unchanged since its last fingerprint')
        for (const name of ['prune', 'transfer', 'git_seed', 'hydrate', 'finalize']) timer.skip(name, 'fingerprint matches')
        progress.done('No changes detected, skipping sync')
        return { skipped: true, filesSent: 0, bytesSent: 0, filesDeleted: 0, warnings, ...timer.result() }
      }
    }
  }

  // Only a sync that may send something needs the tar writer (tar-stream is slow to load): load it meanwhile.
  const transfer = import('./transfer.js')
  transfer.catch(() => {})

  // Git's files are looked at before git is asked anything, so a change racing this pass shows next time.
  let view: Pick<GitView, 'at' | 'files'> | undefined
  const repoGit =
    unchanged?.git ??
    (await timer.phase('manifest', () => {
      view = useFingerprint ? beginGitView(options.repoRoot, config) : undefined
      return readGitContext(options.repoRoot, config)
    }))
  const meta = repoGit ? '.git/crabbox' : '.crabbox'
  // The runner round trip overlaps the local manifest and hashing.
  if (!probing || probedWith !== probeArgsFor(repoGit).join('\0')) startProbe(repoGit)
  probing!.catch(() => {})

  const manifest = await timer.phase('manifest', () => buildManifest(options.repoRoot, config, { git: repoGit, view }))
  for (const message of checkSize(manifest, config, { forceLarge: options.forceLarge, env }).warnings) warn(message)
  if (manifest.rejected.length > 0) {
    warn(`not syncing ${manifest.rejected.length} unsafe path(s), e.g. ${manifest.rejected[0].path}: ${manifest.rejected[0].reason}`)
  }
  progress.info(`sync candidate: ${manifest.files} files, ${formatBytes(manifest.bytes)}`)

  progress.phase('sync: checking the runner')
  const git = manifest.git
  const probe = await probing!

  // What the runner holds according to its own record; `--checksum` trusts nothing.
  let remote = new Map<string, RemoteRecord>()
  if (!options.checksum) {
    const cached = probe.known && probe.fingerprint ? await sent.read(probe.fingerprint) : undefined
    remote = parseRecords(cached ?? probe.records)
  }
  // Nothing recorded on the runner: every file goes, hashed as it is read for the tar
  // instead of in a pass of its own; the fingerprint and record travel at the end of the tar.
  const cold = remote.size === 0
  let fingerprint = ''
  let records = Buffer.alloc(0)
  let plan: SyncPlan
  if (cold) {
    timer.skip('fingerprint', 'runner holds nothing yet: hashed while sending')
    plan = planEverything(manifest)
  } else {
    const hashed = await timer.phase('fingerprint', () => hashManifest(manifest, { checksum: options.checksum }))
    fingerprint = computeFingerprint(manifest, hashed, config)
    if (useFingerprint && probe.fingerprint === fingerprint) {
      await saveSnapshot(manifest, fingerprint, config).catch(() => {})
      for (const name of ['prune', 'transfer', 'git_seed', 'hydrate', 'finalize']) timer.skip(name, 'fingerprint matches')
      progress.done('No changes detected, skipping sync')
      return { skipped: true, filesSent: 0, bytesSent: 0, filesDeleted: 0, warnings, ...timer.result() }
    }
    plan = planSync(manifest, hashed, remote, { delete: config.delete })
    records = Buffer.from(plan.records.join(''))
  }
  if (config.delete) massDeletionGuard(manifest, plan.remove, env)

  // Compact the runner's record when appending would make it mostly history.
  const deltaBytes = plan.delta.reduce((n, record) => n + Buffer.byteLength(record), 0)
  const fullManifest = cold || probe.sizes.delta + deltaBytes > Math.max(256 * 1024, probe.sizes.base / 4)
  const needTar = plan.send.length > 0 || fullManifest
  const { shouldCompress, splitByBytes, tarStream, transferParts } = await transfer
  const gzip = shouldCompress(plan.sendBytes + (fullManifest ? manifest.files * 80 : 0), env)
  const work = config.gitSeed ? gitWork(git, probe.git) : undefined
  if (config.gitSeed && git?.head && probe.git?.missing) warn('git is not installed on the runner; skipping git seed')

  const scriptOptions = {
    workdir: options.workdir,
    meta,
    fingerprint: useFingerprint ? (cold ? 'tar' : fingerprint) : undefined,
    pending: plan.pending,
    remove: plan.remove,
    tar: needTar ? { gzip } : undefined,
    fullManifest,
    records: plan.delta,
    git: work && git ? gitBlock(git, work) : undefined,
  }
  // A large transfer goes over several channels at once (the SSH window limits each channel, not the
  // connection); the record and fingerprint are then committed by one more exec once every part landed.
  let parts = needTar ? splitByBytes(plan.send, transferParts(plan.sendBytes, plan.send.length, env)) : []
  const commit = parts.length > 1 ? commitScript(scriptOptions) : undefined
  if (commit === undefined || commit.length > INLINE_SCRIPT_LIMIT) parts = [{ start: 0, entries: plan.send }]
  const split = parts.length > 1
  const script = applyScript({ ...scriptOptions, deferCommit: split })

  if (script.length > INLINE_SCRIPT_LIMIT) {
    await timer.phase('prune', () => exec(session, shCommand(UPLOAD_SCRIPT, 'crabbox-upload', [options.workdir, meta]), { stdin: script, signal, what: 'uploading the sync script' }))
  }

  progress.phase(`sync: sending ${plan.send.length} files (${formatBytes(plan.sendBytes)}), removing ${plan.remove.length}`)
  const sentHashes: string[] = cold ? new Array(manifest.entries.length) : []
  const trailer = () => {
    if (cold) {
      const hashed = { hashes: sentHashes, hashedFiles: manifest.files, hashedBytes: manifest.bytes }
      fingerprint = computeFingerprint(manifest, hashed, config)
      records = Buffer.from(manifest.entries.map((entry, i) => encodeRecord(sentHashes[i], entry.mode, entry.path)).join(''))
    }
    const files = fullManifest ? [{ path: `${meta}/${META_FILES.next}`, data: records }] : []
    if (cold && useFingerprint) files.push({ path: `${meta}/${META_FILES.fingerprintNext}`, data: Buffer.from(`${fingerprint}\n`) })
    return files
  }
  const onHash = (start: number) => (cold ? (index: number, hash: string) => (sentHashes[start + index] = hash) : undefined)
  const sides = parts.slice(1).map((part) => tarStream({ root: manifest.root, entries: part.entries, extra: () => [], extraPaths: [], onHash: onHash(part.start) }, { gzip }))
  const tar = needTar
    ? tarStream(
        {
          root: manifest.root,
          entries: parts[0].entries,
          // The record holds every part's hashes: written once all parts were read.
          extra: split ? () => Promise.all(sides.map((side) => side.done)).then(trailer) : trailer,
          extraPaths: [`${meta}/${META_FILES.next}`],
          onHash: onHash(0),
        },
        { gzip },
      )
    : undefined
  let current: string | undefined
  let since = performance.now()
  const flags = new Set<string>()
  const onLine = (line: string) => {
    if (line.startsWith('mark ')) {
      const now = performance.now()
      if (current) timer.add(current, now - since)
      current = line.slice(5) === 'done' ? undefined : line.slice(5)
      since = now
    } else if (line.startsWith('warn ')) warn(line.slice(5))
    else if (line === 'need-bundle' || line === 'need-base') flags.add(line)
  }
  const command = script.length > INLINE_SCRIPT_LIMIT ? shCommand(RUN_UPLOADED_SCRIPT, 'crabbox-apply', [options.workdir, meta]) : shCommand(script, 'crabbox-apply')
  let packError: unknown
  for (const stream of [tar, ...sides]) stream?.done.catch((error: unknown) => (packError ??= error))
  // The first failure closes every other channel of this sync.
  const channels = new AbortController()
  const execSignal = split ? AbortSignal.any([signal, channels.signal]) : signal
  let failure: unknown
  const fail = (error: unknown) => {
    failure ??= error
    channels.abort(error)
  }
  let sideRuns: Promise<unknown>[] = []
  // The extra parts start once the runner reports the prune is over, so a path changing type extracts cleanly.
  const onApplyLine = (line: string) => {
    onLine(line)
    if (split && line === 'mark transfer' && sideRuns.length === 0) {
      sideRuns = sides.map((side) => exec(session, shCommand(PART_SCRIPT, 'crabbox-part', [options.workdir, gzip ? 'z' : '-']), { stdin: side.stream, signal: execSignal, what: 'sending files' }).catch(fail))
    }
  }
  try {
    await exec(session, command, { stdin: tar?.stream, signal: execSignal, onLine: onApplyLine, what: 'applying the sync' }).catch(fail)
    await Promise.all(sideRuns)
    if (failure) throw failure
    if (commit && split) await exec(session, shCommand(commit, 'crabbox-commit'), { signal, onLine, what: 'committing the sync' })
  } catch (error) {
    // A local read failure truncates the stream, so the runner's tar fails too: report the cause.
    throw packError ?? error
  } finally {
    for (const stream of [tar, ...sides]) stream?.stream.destroy()
  }
  if (current) timer.add(current, performance.now() - since)

  if (git && work && (flags.has('need-bundle') || flags.has('need-base'))) {
    progress.phase('sync: sending git history')
    const bundleWarnings = await timer.phase('git_seed', () =>
      sendBundle(session, { repoRoot: options.repoRoot, workdir: options.workdir, meta, fingerprint: useFingerprint ? fingerprint : '', local: git, remote: probe.git!, needHead: flags.has('need-bundle'), needBase: flags.has('need-base'), signal }),
    )
    for (const message of bundleWarnings) warn(message)
  }

  if (!work) {
    const reason = !config.gitSeed ? 'sync.gitSeed is off' : !git ? 'not a git checkout' : !git.head ? 'no commits yet' : 'runner git is current'
    timer.skip('git_seed', reason)
    timer.skip('hydrate', reason)
  }
  if (plan.remove.length === 0) timer.skip('prune', 'nothing to remove')
  if (!needTar) timer.skip('transfer', 'nothing changed')

  if (cold) await saveHashes(manifest, sentHashes).catch(() => {})
  await sent.write(fingerprint, records).catch(() => {})
  if (useFingerprint) await saveSnapshot(manifest, fingerprint, config).catch(() => {})
  progress.done(`synced ${plan.send.length} files (${formatBytes(plan.sendBytes)}), removed ${plan.remove.length}`)
  return { skipped: false, filesSent: plan.send.length, bytesSent: plan.sendBytes, filesDeleted: plan.remove.length, warnings, ...timer.result() }
}
