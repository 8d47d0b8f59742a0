import type { Config } from '../../config/schema.js'
import { CrabboxError } from '../../errors.js'
import type { Lease } from '../../providers/types.js'
import type { SshSession, SshTarget } from '../../transport/ssh/types.js'
import type { Progress } from '../../ui/progress.js'
import type { SyncPhase } from './timing.js'

/**
 * Seams to the SSH readiness wait and the sync engine. They are loaded by
 * name so the run pipeline builds while those modules land; each call says
 * clearly when its engine is missing from this build.
 */
type WaitForReady = (target: SshTarget, kind: 'managed' | 'static', options: { timeoutMs: number; progress: Progress }) => Promise<unknown>
type SyncWorkdir = (options: {
  repoRoot: string
  workdir: string
  config: Config['sync']
  session: SshSession
  progress: Progress
  checksum: boolean
  forceLarge: boolean
  env?: NodeJS.ProcessEnv
}) => Promise<{ skipped: boolean; phases?: unknown; totalMs?: number }>

async function load<T>(specifier: string, name: string): Promise<T | undefined> {
  try {
    const module = (await import(specifier)) as Record<string, unknown>
    return module[name] as T | undefined
  } catch {
    return undefined
  }
}

const BOOTSTRAP_TIMEOUT_MS = 20 * 60_000
const LOCAL_TIMEOUT_MS = 60_000

export async function waitReady(lease: Lease, kind: 'managed' | 'static', progress: Progress): Promise<void> {
  const wait = await load<WaitForReady>('../../transport/ssh/index.js', 'waitForReady')
  if (!wait) return // without the readiness module the first exec is the readiness check
  progress.phase(`waiting for SSH on ${lease.ssh.host}:${lease.ssh.port}`)
  await wait(lease.ssh, kind, { timeoutMs: lease.provider === 'local' ? LOCAL_TIMEOUT_MS : BOOTSTRAP_TIMEOUT_MS, progress })
}

export interface SyncOutcome {
  skipped: boolean
  phases: SyncPhase[]
  ms: number
}

function phasesOf(raw: unknown): SyncPhase[] {
  if (Array.isArray(raw)) return raw as SyncPhase[]
  if (raw && typeof raw === 'object') return Object.entries(raw as Record<string, number>).map(([name, ms]) => ({ name, ms: Number(ms) }))
  return []
}

export async function syncStep(options: Parameters<SyncWorkdir>[0]): Promise<SyncOutcome> {
  const sync = await load<SyncWorkdir>('../sync/index.js', 'syncWorkdir')
  if (!sync) throw new CrabboxError('this build has no sync engine', { exit: 'sync', hint: 'pass --no-sync to run without syncing' })
  const started = performance.now()
  const result = await sync(options)
  return { skipped: result.skipped, phases: phasesOf(result.phases), ms: Math.round(result.totalMs ?? performance.now() - started) }
}
