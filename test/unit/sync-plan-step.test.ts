import { describe, expect, it } from 'vitest'
import { defaultConfig } from '../../src/config/schema.js'
import { CrabboxError } from '../../src/errors.js'
import { computeFingerprint, type HashedManifest } from '../../src/services/sync/fingerprint.js'
import { MODE_EXEC, MODE_FILE, type Manifest, type ManifestEntry } from '../../src/services/sync/manifest.js'
import { MASS_DELETION_LIMIT } from '../../src/services/sync/prune.js'
import { UNKNOWN, encodeRecord, parseRecords, type RemoteRecord } from '../../src/services/sync/records.js'
import { planStep, type PlanInput, type SendDecision } from '../../src/services/sync/steps/plan.js'

/*
 * The plan step decides everything from what both sides hold, without I/O:
 * these cases build the local manifest and the runner's record in memory.
 */

type File = { path: string; hash: string; mode?: ManifestEntry['mode']; size?: number }

const entry = (file: File): ManifestEntry => ({
  path: file.path,
  mode: file.mode ?? MODE_FILE,
  size: file.size ?? 10,
  mtimeMs: 1,
  ctimeMs: 1,
  ino: 1,
})

function local(files: File[], tracked?: string[]): { manifest: Manifest; hashed: HashedManifest } {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : 1))
  const entries = sorted.map(entry)
  const manifest = {
    root: '/nowhere',
    git: tracked ? { head: 'f'.repeat(40), tracked: new Set(tracked) } : undefined,
    entries,
    deleted: [],
    rejected: [],
    excludes: [],
    files: entries.length,
    bytes: entries.reduce((n, e) => n + e.size, 0),
    cache: undefined as unknown as Manifest['cache'],
  } satisfies Manifest
  return { manifest, hashed: { hashes: sorted.map((file) => file.hash), hashedFiles: 0, hashedBytes: 0 } }
}

/** The runner's record as the probe returns it: base records, parsed. */
const record = (files: File[]): Map<string, RemoteRecord> =>
  parseRecords(files.map((file) => encodeRecord(file.hash, file.mode ?? MODE_FILE, file.path)).join(''))

const config = (overrides: Partial<PlanInput['config']> = {}) => ({ ...defaultConfig().sync, ...overrides })

function input(
  files: File[],
  remoteFiles: File[],
  options: {
    fingerprint?: string
    tracked?: string[]
    config?: Partial<PlanInput['config']>
    env?: NodeJS.ProcessEnv
    sizes?: { base: number; delta: number }
  } = {},
): PlanInput {
  const { manifest, hashed } = local(files, options.tracked)
  const remote = record(remoteFiles)
  return {
    manifest,
    hashed: remote.size > 0 ? hashed : undefined,
    remote,
    probe: { fingerprint: options.fingerprint, sizes: options.sizes ?? { base: 100_000, delta: 0 }, git: undefined },
    config: config(options.config),
    useFingerprint: true,
    env: options.env ?? {},
  }
}

const sending = (decision: ReturnType<typeof planStep>): SendDecision => {
  if (decision.skip) throw new Error('expected a sync that sends')
  return decision
}

const a = { path: 'a.txt', hash: '1'.repeat(64) }
const b = { path: 'src/b.ts', hash: '2'.repeat(64), size: 30 }
const c: File = { path: 'tool.sh', hash: '3'.repeat(64), mode: MODE_EXEC }

describe('sync plan step', () => {
  it('unchanged: the runner holds this fingerprint, so the sync is skipped', () => {
    const { manifest, hashed } = local([a, b, c])
    const fingerprint = computeFingerprint(manifest, hashed, config())
    const decision = planStep(input([a, b, c], [a, b, c], { fingerprint }))
    expect(decision).toEqual({ skip: true, fingerprint })
  })

  it('a different fingerprint with the same record sends nothing, and never skips when fingerprints are off', () => {
    const decision = sending(planStep(input([a, b, c], [a, b, c], { fingerprint: 'e'.repeat(64) })))
    expect(decision.plan.send).toEqual([])
    expect(decision.plan.remove).toEqual([])
    expect(decision.needTar).toBe(false)
    const { manifest, hashed } = local([a, b, c])
    const fingerprint = computeFingerprint(manifest, hashed, config())
    const off = planStep({ ...input([a, b, c], [a, b, c], { fingerprint }), useFingerprint: false })
    expect(off.skip).toBe(false)
  })

  it('one changed file: sends exactly that file, marks it unknown until it lands, appends one record', () => {
    const edited = { ...b, hash: '9'.repeat(64) }
    const decision = sending(planStep(input([a, edited, c], [a, b, c], { fingerprint: 'e'.repeat(64) })))
    expect(decision.cold).toBe(false)
    expect(decision.plan.send.map((e) => e.path)).toEqual(['src/b.ts'])
    expect(decision.plan.sendBytes).toBe(30)
    expect(decision.plan.pending).toEqual([encodeRecord(UNKNOWN, MODE_FILE, 'src/b.ts')])
    expect(decision.plan.delta).toEqual([encodeRecord(edited.hash, MODE_FILE, 'src/b.ts')])
    expect(decision.plan.remove).toEqual([])
    expect(decision.needTar).toBe(true)
    expect(decision.fullManifest).toBe(false)
    // The fingerprint written on the runner is the checkout's; the runner's new record lists every file.
    const { manifest, hashed } = local([a, edited, c])
    expect(decision.fingerprint).toBe(computeFingerprint(manifest, hashed, config()))
    expect([...parseRecords(decision.records())].map(([path, r]) => [path, r.hash])).toEqual([
      ['a.txt', a.hash],
      ['src/b.ts', edited.hash],
      ['tool.sh', c.hash],
    ])
  })

  it('a file deleted locally is pruned on the runner (sync.delete on) or kept in the record (off)', () => {
    const decision = sending(planStep(input([a, c], [a, b, c])))
    expect(decision.plan.send).toEqual([])
    expect(decision.plan.remove).toEqual(['src/b.ts'])
    expect(decision.plan.delta).toEqual([encodeRecord('-', MODE_FILE, 'src/b.ts')])
    expect(decision.needTar).toBe(false)

    const kept = sending(planStep(input([a, c], [a, b, c], { config: { delete: false } })))
    expect(kept.plan.remove).toEqual([])
    expect(parseRecords(kept.records()).has('src/b.ts')).toBe(true)
  })

  it('a mode change alone resends the file', () => {
    const executable: File = { ...a, mode: MODE_EXEC }
    const decision = sending(planStep(input([executable, b], [a, b])))
    expect(decision.plan.send.map((e) => [e.path, e.mode])).toEqual([['a.txt', MODE_EXEC]])
    expect(decision.plan.delta).toEqual([encodeRecord(a.hash, MODE_EXEC, 'a.txt')])
  })

  it('cold: the runner holds no record, so everything goes with a full record and the fingerprint comes from the tar', () => {
    const decision = sending(planStep(input([a, b, c], [])))
    expect(decision.cold).toBe(true)
    expect(decision.fingerprint).toBe('')
    expect(decision.records().length).toBe(0)
    expect(decision.plan.send.map((e) => e.path)).toEqual(['a.txt', 'src/b.ts', 'tool.sh'])
    expect(decision.fullManifest).toBe(true)
    expect(decision.needTar).toBe(true)
  })

  it('compacts the runner record once appending would make it mostly history', () => {
    const edited = { ...b, hash: '9'.repeat(64) }
    const small = sending(planStep(input([a, edited, c], [a, b, c], { sizes: { base: 2_000_000, delta: 100 } })))
    expect(small.fullManifest).toBe(false)
    const big = sending(planStep(input([a, edited, c], [a, b, c], { sizes: { base: 2_000_000, delta: 600_000 } })))
    expect(big.fullManifest).toBe(true)
    expect(big.needTar).toBe(true)
  })

  it(`the mass-deletion guard stops ${MASS_DELETION_LIMIT} tracked deletions unless allowed; untracked ones and fewer pass`, () => {
    const many = Array.from({ length: MASS_DELETION_LIMIT }, (_, i) => ({
      path: `gone/${String(i).padStart(3, '0')}.txt`,
      hash: '4'.repeat(64),
    }))
    const tracked = many.map((file) => file.path)
    let thrown: unknown
    try {
      planStep(input([a], [a, ...many], { tracked }))
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(CrabboxError)
    expect(thrown).toMatchObject({ code: 'mass_deletion' })
    expect((thrown as Error).message).toContain(`sync would delete ${MASS_DELETION_LIMIT} tracked files`)

    expect(sending(planStep(input([a], [a, ...many], { tracked, env: { CRABBOX_ALLOW_MASS_DELETIONS: '1' } }))).plan.remove).toHaveLength(
      MASS_DELETION_LIMIT,
    )
    expect(sending(planStep(input([a], [a, ...many.slice(1)], { tracked }))).plan.remove).toHaveLength(MASS_DELETION_LIMIT - 1)
    expect(sending(planStep(input([a], [a, ...many], { tracked: [] }))).plan.remove).toHaveLength(MASS_DELETION_LIMIT)
    // With sync.delete off nothing is pruned, so nothing is guarded.
    expect(sending(planStep(input([a], [a, ...many], { tracked, config: { delete: false } }))).plan.remove).toEqual([])
  })

  it('git: warns when the runner has no git, and plans the seed when its HEAD differs', () => {
    const base = input([a], [a])
    const missing = sending(
      planStep({
        ...base,
        manifest: { ...base.manifest, git: { head: 'f'.repeat(40), tracked: new Set() } },
        probe: { ...base.probe, git: { missing: true, hasHead: false } },
      }),
    )
    expect(missing.warnings).toEqual(['git is not installed on the runner; skipping git seed'])
    expect(missing.work).toBeUndefined()
    const behind = sending(
      planStep({
        ...base,
        manifest: { ...base.manifest, git: { head: 'f'.repeat(40), tracked: new Set() } },
        probe: { ...base.probe, git: { missing: false, head: 'e'.repeat(40), hasHead: false } },
      }),
    )
    expect(behind.warnings).toEqual([])
    // The runner has a HEAD already (an older commit): history since it, no seed built from the files.
    expect(behind.work).toEqual({ seed: true, hydrate: false, build: false })
    const fresh = (git: { baseRef?: string; baseSha?: string }) =>
      sending(
        planStep({
          ...base,
          manifest: { ...base.manifest, git: { head: 'f'.repeat(40), tracked: new Set(), ...git } },
          probe: { ...base.probe, git: { missing: false, hasHead: false } },
        }),
      ).work
    // No HEAD on the runner: seeded from the synced files, also when the base is HEAD itself, not when it is elsewhere.
    expect(fresh({})).toEqual({ seed: true, hydrate: false, build: true })
    expect(fresh({ baseRef: 'main', baseSha: 'f'.repeat(40) })).toEqual({ seed: true, hydrate: true, build: true })
    expect(fresh({ baseRef: 'main', baseSha: 'd'.repeat(40) })).toEqual({ seed: true, hydrate: true, build: false })
    const off = sending(
      planStep({
        ...base,
        config: config({ gitSeed: false }),
        probe: { ...base.probe, git: { missing: false, head: 'e'.repeat(40), hasHead: false } },
      }),
    )
    expect(off.work).toBeUndefined()
  })
})
