import type { ServiceContext } from '../context.js'
import type { Lease } from '../../providers/types.js'
import { GithubApi, githubToken, parseRepo } from './github.js'
import { forgetHydration, readHydration } from './record.js'
import { STATE_DIR, stopMarkerScript } from './scripts.js'

/** Stop marker, then up to 20 s for the runner to finish its job and exit; stopped if it does not. */
const endScript = (leaseId: string) => `${stopMarkerScript(leaseId)}
pf="${STATE_DIR}/runner.pid"
if [ -s "$pf" ]; then
  pid=$(cat "$pf"); i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 40 ]; do sleep 0.5; i=$((i+1)); done
  if kill -0 "$pid" 2>/dev/null; then kill -TERM -"$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; echo runner-stopped; fi
  rm -f "$pf"
fi; true`

/**
 * Before `stop` releases a hydrated lease: the stop marker ends the Actions job (the
 * ephemeral runner then leaves GitHub by itself); a runner still listed after that is
 * deleted through the API when a token is at hand. Best effort: warnings, never a failure.
 */
export async function endHydration(lease: Lease, context: Pick<ServiceContext, 'progress'>): Promise<void> {
  const record = readHydration(lease.id)
  if (!record) return
  try {
    const { openSession } = await import('../../transport/ssh/index.js')
    const session = await openSession(lease.ssh, { connectTimeoutMs: 8000 })
    try {
      await session.exec(`sh -c '${endScript(lease.id).replace(/'/g, `'\\''`)}'`, { signal: AbortSignal.timeout(30_000) })
    } finally {
      await session.close()
    }
  } catch (error) {
    context.progress.warn(`could not write the Actions stop marker on ${lease.slug}: ${(error as Error).message}`)
  }
  const repo = parseRepo(record.repo)
  try {
    if (repo) {
      const api = new GithubApi(await githubToken())
      for (const runner of await api.runners(repo)) if (runner.name === record.runnerName) await api.deleteRunner(repo, runner.id)
    }
  } catch (error) {
    context.progress.warn(`runner ${record.runnerName} may still be registered in ${record.repo}: ${(error as Error).message}`)
  }
  forgetHydration(lease.id)
}
