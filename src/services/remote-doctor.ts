import type { Config } from '../config/schema.js'
import type { Progress } from '../ui/progress.js'
import { formatBytes } from '../ui/format.js'
import type { DoctorCheck } from './doctor-checks.js'
import { fail, pass } from './doctor-checks.js'

/** What a runner needs: sh and bash run commands, tar and gzip take the sync stream, git seeds history. */
export const REMOTE_TOOLS = ['sh', 'bash', 'tar', 'git', 'gzip'] as const

/** Less free space than this under the work root is a failed check. */
export const MIN_FREE_BYTES = 1024 ** 3

const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`

/**
 * The remote doctor, one exec: a line per tool (`tool NAME PATH`, `-` when missing), the
 * free space of the work root's file system (`disk KIB MOUNT`, from its nearest existing
 * folder), and whether a file can be written there (`write ok` or `write no <why>`).
 * The work root is created as a run would create it.
 */
export function remoteDoctorScript(workRoot: string): string {
  return [
    `root=${quote(workRoot)}`,
    `for tool in ${REMOTE_TOOLS.join(' ')}; do printf 'tool %s %s\\n' "$tool" "$(command -v "$tool" 2>/dev/null || echo -)"; done`,
    'dir=$root; while [ ! -d "$dir" ] && [ "$dir" != / ]; do dir=$(dirname "$dir"); done',
    `df -Pk "$dir" 2>/dev/null | awk 'NR==2 { print "disk", $4, $6 }'`,
    'if err=$(mkdir -p "$root" 2>&1 && f=$(mktemp "$root/.crabbox-doctor.XXXXXX" 2>&1) && rm -f "$f"); then echo "write ok"; ' +
      'else echo "write no $(printf %s "$err" | tr "\\n" " ")"; fi',
  ].join('\n')
}

export interface RemoteFacts {
  tools: Record<string, string | undefined>
  disk?: { freeBytes: number; mount: string }
  writable?: { ok: boolean; detail: string }
}

/** Reads the script's lines; anything else (a login banner, a shell's noise) is ignored. */
export function parseRemoteDoctor(output: string): RemoteFacts {
  const facts: RemoteFacts = { tools: {} }
  for (const line of output.split('\n')) {
    const [kind, first = '', ...rest] = line.trim().split(' ')
    if (kind === 'tool' && first) facts.tools[first] = rest[0] && rest[0] !== '-' ? rest.join(' ') : undefined
    else if (kind === 'disk' && /^\d+$/.test(first)) facts.disk = { freeBytes: Number(first) * 1024, mount: rest.join(' ') || '?' }
    else if (kind === 'write') facts.writable = { ok: first === 'ok', detail: rest.join(' ').trim() }
  }
  return facts
}

/** The facts as doctor checks, named `remote …`. */
export function remoteChecks(facts: RemoteFacts, workRoot: string): DoctorCheck[] {
  const missing = REMOTE_TOOLS.filter((tool) => !facts.tools[tool])
  const checks: DoctorCheck[] = [
    missing.length
      ? fail(
          'remote tools',
          `missing ${missing.join(', ')}`,
          `Install ${missing.join(', ')} on the runner; crabbox needs ${REMOTE_TOOLS.join(', ')}.`,
        )
      : pass('remote tools', REMOTE_TOOLS.join(', ')),
  ]
  const disk = facts.disk
  if (!disk) checks.push(fail('remote disk', `could not read the free space under ${workRoot} (df)`, 'Check that df works on the runner.'))
  else if (disk.freeBytes < MIN_FREE_BYTES)
    checks.push(
      fail(
        'remote disk',
        `${formatBytes(disk.freeBytes)} free on ${disk.mount}`,
        `Free space under ${workRoot} (at least ${formatBytes(MIN_FREE_BYTES)}).`,
      ),
    )
  else checks.push(pass('remote disk', `${formatBytes(disk.freeBytes)} free on ${disk.mount}`))
  const written = facts.writable
  if (written?.ok) checks.push(pass('remote work root', `${workRoot} is writable`))
  else
    checks.push(
      fail(
        'remote work root',
        `${workRoot} is not writable${written?.detail ? `: ${written.detail}` : ''}`,
        'Set workRoot (or --work-root) to a folder the SSH user can write, or fix its permissions.',
      ),
    )
  return checks
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error))

/**
 * `doctor --id`: resolves the lease, connects once and runs the remote doctor in one exec.
 * A lease that cannot be resolved or reached is a failed check, not an exception.
 */
export async function remoteDoctor(config: Config, idOrSlug: string, progress: Progress): Promise<DoctorCheck[]> {
  const { leaseBackend } = await import('./lease.js')
  let lease
  try {
    lease = await (await leaseBackend({ config, progress })).resolve(idOrSlug)
  } catch (error) {
    return [fail('remote lease', message(error), 'Check the ID or slug with `crabbox list`.')]
  }
  const checks = [pass('remote lease', `${lease.id} (${lease.slug}, ${lease.provider}, ${lease.state})`)]
  const where = `${lease.ssh.user}@${lease.ssh.host}:${lease.ssh.port}`
  const { openSession } = await import('../transport/ssh/index.js')
  let output = ''
  try {
    const session = await openSession(lease.ssh, { connectTimeoutMs: 15_000 })
    try {
      const result = await session.exec(remoteDoctorScript(lease.workRoot), {
        signal: AbortSignal.timeout(30_000),
        onStdout: (chunk) => (output += chunk.toString('utf8')),
      })
      if (result.code !== 0 && !output) throw new Error(`the doctor script exited ${result.code ?? result.signal}`)
    } finally {
      await session.close()
    }
  } catch (error) {
    return [
      ...checks,
      fail('remote ssh', `${where}: ${message(error)}`, 'Check that the runner is up (`crabbox status --id …`) and reachable.'),
    ]
  }
  return [...checks, pass('remote ssh', where), ...remoteChecks(parseRemoteDoctor(output), lease.workRoot)]
}
