import type { Config } from '../../../config/schema.js'
import { computeFingerprint, type HashedManifest } from '../fingerprint.js'
import { gitWork, type GitWork } from '../git-seed.js'
import type { Manifest } from '../manifest.js'
import type { Probe } from '../probe-protocol.js'
import type { Expected } from '../remote-scripts.js'
import { massDeletionGuard, planEverything, planSync, type SyncPlan } from '../prune.js'
import type { RemoteRecord } from '../records.js'

/** Below this the runner's record is never compacted. */
export const COMPACT_MIN_BYTES = 256 * 1024

export interface PlanInput {
  manifest: Manifest
  /** Content hashes per entry; undefined when the runner holds no record (they are taken while sending). */
  hashed?: HashedManifest
  /** The runner's record (empty: it holds nothing crabbox put there, or `--checksum`). */
  remote: Map<string, RemoteRecord>
  probe: Pick<Probe, 'fingerprint' | 'git' | 'sizes'>
  config: Config['sync']
  useFingerprint: boolean
  /** For CRABBOX_ALLOW_MASS_DELETIONS. */
  env: NodeJS.ProcessEnv
}

export type PlanDecision = { skip: true; fingerprint: string } | SendDecision

export interface SendDecision {
  skip: false
  /** The runner holds nothing recorded: everything goes, and the fingerprint and record travel at the end of the tar. */
  cold: boolean
  /** The checkout's fingerprint; empty when cold (computed while sending). */
  fingerprint: string
  /** The runner's record after this sync, built when first asked; empty when cold (built while sending). */
  records: () => Buffer
  plan: SyncPlan
  /** The tar carries a full record that replaces the runner's base and delta (compaction). */
  fullManifest: boolean
  /** Whether a tar stream goes at all. */
  needTar: boolean
  /** What the runner's git needs (undefined: nothing, or git seeding is off). */
  work?: GitWork
  /** Planned without the probe: what the runner must hold for the apply to go ahead (steps/fold.ts). */
  expect?: Expected
  warnings: string[]
}

/**
 * Decides the sync from what both sides hold, without any I/O: skip when the
 * fingerprints match, else what to send and prune, whether to compact the
 * runner's record, and what git needs. Throws when the sync would delete many
 * tracked files (the mass-deletion guard).
 */
export function planStep(input: PlanInput): PlanDecision {
  const { manifest, remote, probe, config } = input
  const cold = remote.size === 0
  let fingerprint = ''
  let plan: SyncPlan
  if (cold) {
    plan = planEverything(manifest)
  } else {
    if (!input.hashed) throw new Error('sync plan: the runner holds a record but the checkout was not hashed')
    fingerprint = computeFingerprint(manifest, input.hashed, config)
    if (input.useFingerprint && probe.fingerprint === fingerprint) return { skip: true, fingerprint }
    plan = planSync(manifest, input.hashed, remote, { delete: config.delete })
  }
  if (config.delete) massDeletionGuard(manifest, plan.remove, input.env)

  // Compact the runner's record when appending would make it mostly history.
  const deltaBytes = plan.delta.reduce((n, record) => n + Buffer.byteLength(record), 0)
  const fullManifest = cold || probe.sizes.delta + deltaBytes > Math.max(COMPACT_MIN_BYTES, probe.sizes.base / 4)
  const git = manifest.git
  const warnings = config.gitSeed && git?.head && probe.git?.missing ? ['git is not installed on the runner; skipping git seed'] : []
  const work = config.gitSeed ? gitWork(git, probe.git) : undefined
  return {
    skip: false,
    cold,
    fingerprint,
    records: plan.records,
    plan,
    fullManifest,
    // A seed built on the runner travels at the end of the tar, so it needs one even with no file to send.
    needTar: plan.send.length > 0 || fullManifest || Boolean(work?.build),
    work,
    warnings,
  }
}
