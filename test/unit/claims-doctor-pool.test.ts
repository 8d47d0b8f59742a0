import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { CrabboxError } from '../../src/errors.js'
import type { LeaseRecord, ProviderMachine } from '../../src/protocol/leases.js'
import { claimingBackend, claimLease, claimsDir, forgetClaim, readClaim } from '../../src/services/claims.js'
import type { Lease } from '../../src/providers/types.js'
import { guessTestCommand, workflowTemplate } from '../../src/services/init-workflow.js'
import { markOrphans } from '../../src/services/pool.js'
import { MIN_FREE_BYTES, parseRemoteDoctor, remoteChecks, remoteDoctorScript } from '../../src/services/remote-doctor.js'
import { warmupTiming } from '../../src/services/run/timing.js'

const lease = { id: 'cbx_00000000c1a1', slug: 'tidal-lobster', provider: 'static' }

async function refusal(work: Promise<unknown>): Promise<CrabboxError> {
  try {
    await work
  } catch (error) {
    return error as CrabboxError
  }
  throw new Error('expected a refusal')
}

describe('repo claims', () => {
  let dir: string
  let saved: string | undefined
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'crabbox-claims-'))
    saved = process.env.XDG_STATE_HOME
    process.env.XDG_STATE_HOME = join(dir, 'state')
    for (const repo of ['a', 'b']) mkdirSync(join(dir, repo))
  })
  afterEach(() => {
    if (saved === undefined) delete process.env.XDG_STATE_HOME
    else process.env.XDG_STATE_HOME = saved
    rmSync(dir, { recursive: true, force: true })
  })
  const a = () => join(dir, 'a')
  const b = () => join(dir, 'b')

  it('claims for the first checkout; the same checkout (also through a symlink) uses it again', async () => {
    const first = await claimLease(lease, { repoRoot: a(), reclaim: false })
    expect(first.claim).toMatchObject({ leaseID: lease.id, slug: lease.slug, provider: 'static', repoRoot: a() })
    expect(first.reclaimedFrom).toBeUndefined()
    symlinkSync(a(), join(dir, 'link'))
    const again = await claimLease(lease, { repoRoot: join(dir, 'link'), reclaim: false })
    expect(again.claim.repoRoot).toBe(a())
    expect(readClaim(lease.id)?.repoRoot).toBe(a())
  })

  it('another checkout is refused with exit 2 naming the claiming checkout and --reclaim; --reclaim moves the claim', async () => {
    await claimLease(lease, { repoRoot: a(), reclaim: false })
    const refused = await refusal(claimLease(lease, { repoRoot: b(), reclaim: false }))
    expect(refused).toBeInstanceOf(CrabboxError)
    expect(refused.exitCode).toBe(2)
    expect(refused.message).toContain(a())
    expect(refused.hint).toContain('--reclaim')
    expect(readClaim(lease.id)?.repoRoot).toBe(a())

    const moved = await claimLease(lease, { repoRoot: b(), reclaim: true })
    expect(moved.reclaimedFrom).toBe(a())
    expect(readClaim(lease.id)?.repoRoot).toBe(b())
    expect((await refusal(claimLease(lease, { repoRoot: a(), reclaim: false }))).message).toContain(b())
  })

  it('the holding checkout is not held up by a lock another checkout holds; a change still waits for it', async () => {
    await claimLease(lease, { repoRoot: a(), reclaim: false })
    const lock = join(claimsDir(), `${lease.id}.json.lock`)
    writeFileSync(lock, '')
    // The holder reads its claim without the lock and leaves the other's lock alone.
    expect((await claimLease(lease, { repoRoot: a(), reclaim: false })).claim.repoRoot).toBe(a())
    expect(existsSync(lock)).toBe(true)
    // A reclaim is a change: it waits until the lock is gone.
    let moved = false
    const reclaiming = claimLease(lease, { repoRoot: b(), reclaim: true }).then(() => (moved = true))
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(moved).toBe(false)
    rmSync(lock)
    await reclaiming
    expect(readClaim(lease.id)?.repoRoot).toBe(b())
  })

  it('an unreadable or incomplete claim is no claim; a forgotten claim is gone', async () => {
    mkdirSync(claimsDir(), { recursive: true })
    writeFileSync(join(claimsDir(), `${lease.id}.json`), '{"leaseID": "cbx_00000000c1a1"')
    expect(readClaim(lease.id)).toBeUndefined()
    writeFileSync(join(claimsDir(), `${lease.id}.json`), JSON.stringify({ leaseID: lease.id, claimedAt: 'x' }))
    expect(readClaim(lease.id)).toBeUndefined()
    await claimLease(lease, { repoRoot: b(), reclaim: false })
    expect(readClaim(lease.id)?.repoRoot).toBe(b())
    forgetClaim(lease.id)
    expect(readClaim(lease.id)).toBeUndefined()
    await claimLease(lease, { repoRoot: a(), reclaim: false })
  })

  it('a claiming backend: a refused lease is left alone, one that could not be claimed at all is released', async () => {
    const released: string[] = []
    const asLease = { ...lease, ssh: {}, workRoot: '/w', state: 'active', keep: true, details: {} } as unknown as Lease
    const backend: Parameters<typeof claimingBackend>[0] = {
      acquire: async () => asLease,
      resolve: async () => asLease,
      release: async (l: Lease) => void released.push(l.id),
    }
    await claimLease(lease, { repoRoot: a(), reclaim: false })
    const fromB = claimingBackend(backend, { repoRoot: b(), reclaim: false })
    expect((await refusal(fromB.acquire({ keep: true }))).exitCode).toBe(2)
    expect((await refusal(fromB.resolve(lease.id))).exitCode).toBe(2)
    expect(released).toEqual([])
    let from = ''
    const reclaiming = claimingBackend(backend, { repoRoot: b(), reclaim: true, onReclaim: (previous) => (from = previous) })
    expect((await reclaiming.resolve(lease.id)).id).toBe(lease.id)
    expect(from).toBe(a())

    process.env.XDG_STATE_HOME = '/dev/null/not-a-folder'
    expect((await refusal(fromB.acquire({ keep: true }))).code).not.toBe('claimed')
    expect(released).toEqual([lease.id])
  })

  it('two checkouts claiming at once: exactly one wins, the other is refused', async () => {
    const results = await Promise.allSettled([
      claimLease(lease, { repoRoot: a(), reclaim: false }),
      claimLease(lease, { repoRoot: b(), reclaim: false }),
    ])
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
    expect((lost.reason as CrabboxError).exitCode).toBe(2)
    const winner = results.findIndex((r) => r.status === 'fulfilled')
    expect(readClaim(lease.id)?.repoRoot).toBe(winner === 0 ? a() : b())
  })
})

describe('remote doctor', () => {
  it('the script quotes the work root and reports tools, disk and writability', () => {
    const script = remoteDoctorScript("/srv/it's here")
    expect(script).toContain(`root='/srv/it'\\''s here'`)
    expect(script).toContain('for tool in sh bash tar git gzip')
  })

  it('parses the lines into passing checks, ignoring noise', () => {
    const facts = parseRemoteDoctor(
      [
        'Welcome to the runner',
        'tool sh /bin/sh',
        'tool bash /bin/bash',
        'tool tar /bin/tar',
        'tool git /usr/bin/git',
        'tool gzip /bin/gzip',
        'disk 20971520 /',
        'write ok',
      ].join('\n'),
    )
    expect(facts.disk).toEqual({ freeBytes: 20 * 1024 ** 3, mount: '/' })
    const checks = remoteChecks(facts, '/work/crabbox')
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ['remote tools', true],
      ['remote disk', true],
      ['remote work root', true],
    ])
    expect(checks[1].detail).toBe('20.0 GiB free on /')
  })

  it('names what is missing, too little disk and an unwritable work root, each with a fix', () => {
    const facts = parseRemoteDoctor(
      `tool sh /bin/sh\ntool bash -\ntool tar /bin/tar\ntool git -\ntool gzip /bin/gzip\ndisk ${MIN_FREE_BYTES / 1024 - 1} /data\nwrite no mkdir: Permission denied`,
    )
    const [tools, disk, root] = remoteChecks(facts, '/work/crabbox')
    expect(tools).toMatchObject({ ok: false, detail: 'missing bash, git' })
    expect(tools.fix).toContain('bash, git')
    expect(disk).toMatchObject({ ok: false, detail: expect.stringContaining('free on /data') })
    expect(root).toMatchObject({ ok: false, detail: '/work/crabbox is not writable: mkdir: Permission denied' })
    expect(remoteChecks(parseRemoteDoctor(''), '/w').every((c) => !c.ok && c.fix)).toBe(true)
  })
})

describe('list with the admin token', () => {
  const machine = (name: string, labels: Record<string, string>, extra: Partial<ProviderMachine> = {}): ProviderMachine => ({
    provider: 'hetzner',
    id: 1,
    cloudID: '1',
    name,
    status: 'running',
    serverType: 'cx53',
    host: '203.0.113.1',
    labels,
    ...extra,
  })
  const live = [{ id: 'cbx_000000000001', slug: 'tidal-lobster', owner: 'peter@example.com' }] as LeaseRecord[]

  it('pairs machines with live leases and marks the others orphan with the reason', () => {
    const marked = markOrphans(
      [
        machine('leased', { crabbox: 'true', lease: 'cbx_000000000001' }),
        machine('stale', { crabbox: 'true', lease: 'cbx_00000000dead' }),
        machine('unlabelled', { crabbox: 'true' }),
        machine('pool-free', { crabbox: 'true', status: 'free' }, { provider: 'static', status: 'free' }),
      ],
      live,
    )
    expect(marked.map((m) => [m.name, m.lease, m.owner, m.orphan])).toEqual([
      ['leased', 'cbx_000000000001', 'peter@example.com', undefined],
      ['stale', 'cbx_00000000dead', undefined, 'no-active-lease'],
      ['unlabelled', undefined, undefined, 'missing-lease-label'],
      ['pool-free', undefined, undefined, undefined],
    ])
  })
})

describe('init --workflow', () => {
  it('is valid YAML: a GitHub Actions job that checks out, installs crabbox and runs the command through it', () => {
    const repo = mkdtempSync(join(tmpdir(), 'crabbox-init-'))
    try {
      writeFileSync(join(repo, 'go.mod'), 'module example.com/x\n')
      expect(guessTestCommand(repo)).toBe('go test ./...')
      const workflow = parse(workflowTemplate(repo))
      expect(workflow.name).toBe('crabbox')
      expect(Object.keys(workflow.on).sort()).toEqual(['pull_request', 'push', 'workflow_dispatch'])
      expect(workflow.on.workflow_dispatch.inputs.command.default).toBe('go test ./...')
      expect(workflow.permissions).toEqual({ contents: 'read' })
      const job = workflow.jobs.test
      expect(job['runs-on']).toBe('ubuntu-latest')
      /* eslint-disable no-template-curly-in-string -- GitHub Actions expressions, not JavaScript templates */
      expect(job.env).toMatchObject({
        CRABBOX_COORDINATOR: '${{ secrets.CRABBOX_COORDINATOR }}',
        CRABBOX_COORDINATOR_TOKEN: '${{ secrets.CRABBOX_COORDINATOR_TOKEN }}',
        CRABBOX_COMMAND: "${{ inputs.command || 'go test ./...' }}",
      })
      /* eslint-enable no-template-curly-in-string */
      const steps = job.steps as Array<{ name: string; uses?: string; run?: string }>
      expect(steps.map((s) => s.uses ?? s.run)).toEqual([
        'actions/checkout@v4',
        'actions/setup-node@v4',
        'npm install --global crabbox',
        'crabbox doctor',
        'crabbox run --shell -- "$CRABBOX_COMMAND"',
      ])
      // The command reaches the shell only as a variable: no expression inside a script.
      for (const step of steps) expect(step.run ?? '').not.toContain('${{')
    } finally {
      rmSync(repo, { recursive: true, force: true })
    }
  })
})

describe('warmup --timing-json', () => {
  it('has the field names of run --timing-json, with nothing synced and no command', () => {
    expect(warmupTiming(lease, 1234)).toEqual({
      provider: 'static',
      leaseId: lease.id,
      slug: lease.slug,
      syncMs: 0,
      syncPhases: [],
      syncSkipped: true,
      commandMs: 0,
      totalMs: 1234,
      exitCode: 0,
    })
  })
})
