import type { ServiceContext } from '../context.js'
import { RemoteExit, usageError } from '../../errors.js'
import type { Lease } from '../../providers/types.js'
import { shellQuote } from '../../transport/ssh/exec.js'
import { leaseShell, type LeaseShell } from '../actions/lease-shell.js'
import { readHydration } from '../actions/record.js'
import { remoteCommandFor } from '../run/remote-command.js'
import { workdirFor } from '../run/workdir.js'

/**
 * The runner's package caches (`cache stats`, `cache purge`, `cache warm`): pnpm, npm and
 * git under /var/cache/crabbox (the runner bootstrap makes them and points npm and pnpm
 * there), Docker's own store through `docker system`. `cache.maxGB` bounds the folders:
 * after `cache warm` the oldest files go first until they fit.
 */

export const CACHE_ROOT = '/var/cache/crabbox'
export const CACHE_KINDS = ['pnpm', 'npm', 'docker', 'git'] as const
export type CacheKind = (typeof CACHE_KINDS)[number]
const DIR_KINDS: ReadonlyArray<CacheKind> = ['pnpm', 'npm', 'git']

/** The environment that points the package managers at the caches (only the enabled kinds). */
export function cacheEnv(enabled: readonly CacheKind[]): Record<string, string> {
  return {
    ...(enabled.includes('npm') ? { npm_config_cache: `${CACHE_ROOT}/npm` } : {}),
    // pnpm up to 10 reads npm_config_*, later versions pnpm_config_*.
    ...(enabled.includes('pnpm') ? { npm_config_store_dir: `${CACHE_ROOT}/pnpm`, pnpm_config_store_dir: `${CACHE_ROOT}/pnpm` } : {}),
  }
}

export interface CacheEntry {
  kind: CacheKind
  path: string
  /** Bytes on disk; undefined when the cache is not there (or Docker is not installed). */
  bytes?: number
  /** Docker's own summary line (`docker system df`). */
  detail?: string
}

export interface CacheStats {
  leaseId: string
  maxGB: number
  totalBytes: number
  caches: CacheEntry[]
}

export const enabledKinds = (config: ServiceContext['config']): CacheKind[] => CACHE_KINDS.filter((kind) => config.cache[kind])

const statsScript = `for k in "$@"; do
  if [ "$k" = docker ]; then
    if command -v docker >/dev/null 2>&1; then echo "docker - $(docker system df --format '{{.Type}}={{.Size}}' 2>/dev/null | tr '\\n' ' ')"; else echo "docker -"; fi
  elif [ -d "${CACHE_ROOT}/$k" ]; then echo "$k $(du -sk "${CACHE_ROOT}/$k" 2>/dev/null | cut -f1)"
  else echo "$k -"; fi
done`

export function parseStats(output: string): CacheEntry[] {
  const entries: CacheEntry[] = []
  for (const line of output.split('\n')) {
    const [kind, size, ...rest] = line.trim().split(' ')
    if (!kind || !(CACHE_KINDS as readonly string[]).includes(kind)) continue
    const detail = rest.join(' ').trim()
    entries.push({
      kind: kind as CacheKind,
      path: kind === 'docker' ? 'docker system' : `${CACHE_ROOT}/${kind}`,
      ...(size && /^\d+$/.test(size) ? { bytes: Number(size) * 1024 } : {}),
      ...(detail ? { detail } : {}),
    })
  }
  return entries
}

async function withShell<T>(context: ServiceContext, flags: { id?: string; reclaim?: boolean }, body: (shell: LeaseShell) => Promise<T>) {
  const shell = await leaseShell(context, flags)
  try {
    return await body(shell)
  } finally {
    await shell.close()
  }
}

export async function cacheStats(context: ServiceContext, flags: { id?: string; reclaim?: boolean }): Promise<CacheStats> {
  return withShell(context, flags, async (shell) => {
    const caches = parseStats((await shell.sh(statsScript, enabledKinds(context.config))).stdout)
    return {
      leaseId: shell.leaseId,
      maxGB: context.config.cache.maxGB,
      totalBytes: caches.reduce((sum, entry) => sum + (entry.bytes ?? 0), 0),
      caches,
    }
  })
}

const purgeScript = `for k in "$@"; do
  if [ "$k" = docker ]; then command -v docker >/dev/null 2>&1 && docker system prune -af >/dev/null && echo docker
  elif [ -d "${CACHE_ROOT}/$k" ]; then find "${CACHE_ROOT}/$k" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} + && echo "$k"; fi
done; true`

/** The kinds `--kind` names: `all` is every enabled one; a disabled kind is a usage error. */
export function purgeKinds(kind: string, enabled: readonly CacheKind[]): CacheKind[] {
  if (kind === 'all') return [...enabled]
  if (!(CACHE_KINDS as readonly string[]).includes(kind))
    throw usageError(`unknown cache kind ${kind}`, 'use pnpm, npm, docker, git or all')
  if (!enabled.includes(kind as CacheKind))
    throw usageError(`the ${kind} cache is disabled (cache.${kind}: false)`, `enable it with cache.${kind}: true, or purge another kind`)
  return [kind as CacheKind]
}

export async function cachePurge(
  context: ServiceContext,
  flags: { id?: string; reclaim?: boolean; kind: string; force: boolean },
): Promise<{ leaseId: string; purged: CacheKind[] }> {
  const kinds = purgeKinds(flags.kind, enabledKinds(context.config))
  if (!flags.force) throw usageError(`cache purge deletes the ${kinds.join(', ')} cache on the lease`, 'add --force to delete it')
  return withShell(context, flags, async (shell) => {
    const result = await shell.sh(purgeScript, kinds)
    const purged = result.stdout.split('\n').filter((line): line is CacheKind => (kinds as string[]).includes(line.trim()))
    return { leaseId: shell.leaseId, purged }
  })
}

/**
 * `cache.purgeOnRelease`: before `stop` releases a lease, its enabled caches are emptied
 * (what matters on a static host, which outlives the lease). Best effort: a warning on failure.
 */
export async function purgeBeforeRelease(lease: Lease, context: Pick<ServiceContext, 'config' | 'progress'>): Promise<void> {
  if (!context.config.cache.purgeOnRelease) return
  const kinds = enabledKinds(context.config)
  if (!kinds.length) return
  try {
    const { openSession } = await import('../../transport/ssh/index.js')
    const session = await openSession(lease.ssh, { connectTimeoutMs: 8000 })
    try {
      await session.exec(`sh -c ${shellQuote(purgeScript)} sh ${kinds.join(' ')}`, { signal: AbortSignal.timeout(120_000) })
    } finally {
      await session.close()
    }
  } catch (error) {
    context.progress.warn(`could not purge the caches on ${lease.slug} (cache.purgeOnRelease): ${(error as Error).message}`)
  }
}

/** Deletes the oldest files of the cache folders `$2…` until they use at most `$1` KiB; prints `<KiB> <path>` per file removed. */
export const pruneScript = `max=$1; shift
used=$(du -sk "$@" 2>/dev/null | awk '{s+=$1} END {print s+0}')
over=$((used - max)); [ "$over" -gt 0 ] || exit 0
find "$@" -type f -printf '%T@ %k %p\\n' 2>/dev/null | sort -n | while read -r at kib path; do
  [ "$over" -gt 0 ] || break
  rm -f -- "$path" && over=$((over - kib)) && echo "$kib $path"
done
find "$@" -mindepth 1 -type d -empty -delete 2>/dev/null; true`

export interface WarmResult {
  leaseId: string
  workdir: string
  hydrated: boolean
  exitCode: number
  /** Files removed to bring the caches back under cache.maxGB. */
  pruned: number
}

export async function cacheWarm(context: ServiceContext, flags: { id?: string; reclaim?: boolean }, argv: string[]): Promise<WarmResult> {
  if (argv.length === 0) throw usageError('cache warm needs a command', 'crabbox cache warm --id <lease> -- pnpm install')
  return withShell(context, flags, async (shell) => {
    const hydration = readHydration(shell.leaseId)
    const workdir =
      hydration?.workspace ?? workdirFor(shell.workRoot ?? context.config.workRoot, shell.leaseId, context.repoRoot ?? context.cwd)
    const kinds = enabledKinds(context.config)
    const remote = remoteCommandFor(argv, { envFile: hydration?.envFile })
    const dirs = DIR_KINDS.filter((kind) => kinds.includes(kind)).map((kind) => `${CACHE_ROOT}/${kind}`)
    const prepare = `mkdir -p ${[workdir, ...dirs].map((dir) => `'${dir.replace(/'/g, `'\\''`)}'`).join(' ')} 2>/dev/null; cd '${workdir.replace(/'/g, `'\\''`)}' && `
    const result = await shell.session.exec(prepare + remote.command, {
      env: cacheEnv(kinds),
      // Under --json the result is the only thing on stdout: the command's stdout goes to stderr (as with run).
      onStdout: (chunk) => void (context.json ? process.stderr : process.stdout).write(chunk),
      onStderr: (chunk) => void process.stderr.write(chunk),
    })
    const exitCode = result.code ?? 255
    let pruned = 0
    if (dirs.length) {
      const maxKiB = Math.floor(context.config.cache.maxGB * 1024 * 1024)
      const prune = await shell.sh(pruneScript, [String(maxKiB), ...dirs])
      pruned = prune.stdout.split('\n').filter(Boolean).length
      if (pruned) context.progress.info(`cache over ${context.config.cache.maxGB} GB: removed the ${pruned} oldest files`)
    }
    if (exitCode !== 0) throw new RemoteExit(exitCode)
    return { leaseId: shell.leaseId, workdir, hydrated: hydration !== undefined, exitCode, pruned }
  })
}
