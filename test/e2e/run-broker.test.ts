import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, spawnCli } from '../support/cli.js'
import { gitRepo, stdoutShows, until } from '../support/fixtures.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

const rig = brokerWithStaticHosts({ token: 'e2e-run-token', owner: 'runner@example.com', names: ['e2e-run'] })
const { cliEnv } = rig
let repo: string

async function api<T = any>(method: string, path: string): Promise<T> {
  const response = await fetch(`${rig.broker.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${rig.token}`, 'x-crabbox-owner': rig.owner },
  })
  return (await response.json()) as T
}

const lastJsonLine = (text: string) => JSON.parse(text.trim().split('\n').at(-1)!)

beforeAll(() => {
  repo = gitRepo('crabbox-repo-', { 'hello.txt': 'hello\n' })
})

afterAll(() => {
  if (repo) rmSync(repo, { recursive: true, force: true })
})

describe('crabbox run through the broker with a static pool', () => {
  it('streams, exits with the remote code, records the run with its events, and releases the lease', async () => {
    const result = await runCli(['run', '--timing-json', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3'], {
      home: rig.home,
      cwd: repo,
      env: cliEnv(),
    })
    expect(result.stdout).toBe('out\n')
    expect(result.stderr).toMatch(/^err$/m)
    expect(result.code).toBe(3)
    const timing = lastJsonLine(result.stderr)
    expect(timing).toMatchObject({ provider: 'static', exitCode: 3, syncSkipped: false })
    expect(timing.runId).toMatch(/^run_[0-9a-f]{12}$/)

    const { run } = await api('GET', `/v1/runs/${timing.runId}`)
    expect(run).toMatchObject({ exitCode: 3, state: 'failed', leaseID: timing.leaseId })
    const { events } = await api<{ events: { type: string; data?: string }[] }>('GET', `/v1/runs/${timing.runId}/events`)
    const types = events.map((e) => e.type)
    for (const type of [
      'leasing.started',
      'lease.created',
      'bootstrap.waiting',
      'sync.started',
      'sync.finished',
      'command.started',
      'stdout',
      'stderr',
      'lease.released',
    ]) {
      expect(types).toContain(type)
    }
    expect(
      events
        .filter((e) => e.type === 'stdout')
        .map((e) => e.data)
        .join(''),
    ).toBe('out\n')
    const { runs } = await api<{ runs: { id: string }[] }>('GET', '/v1/runs')
    expect(runs.map((r) => r.id)).toContain(timing.runId)
    const { lease } = await api('GET', `/v1/leases/${timing.leaseId}`)
    expect(lease.state).toBe('released')
  })

  it('warmup, run --id <slug> twice (the second skips sync), stop twice', async () => {
    const warm = await runCli(['warmup', '--json'], { home: rig.home, cwd: repo, env: cliEnv() })
    expect(warm.code).toBe(0)
    const lease = JSON.parse(warm.stdout)
    const first = await runCli(['run', '--id', lease.slug, '--timing-json', '--', 'cat', 'hello.txt'], {
      home: rig.home,
      cwd: repo,
      env: cliEnv(),
    })
    expect(first.stdout).toBe('hello\n')
    expect(first.code).toBe(0)
    const second = await runCli(['run', '--id', lease.slug, '--timing-json', '--', 'true'], { home: rig.home, cwd: repo, env: cliEnv() })
    expect(second.code).toBe(0)
    expect(lastJsonLine(second.stderr)).toMatchObject({ leaseId: lease.id, syncSkipped: true })
    expect((await api('GET', `/v1/leases/${lease.id}`)).lease.state).toBe('active')
    expect((await runCli(['stop', lease.slug], { home: rig.home, cwd: repo, env: cliEnv() })).code).toBe(0)
    expect((await runCli(['stop', lease.id], { home: rig.home, cwd: repo, env: cliEnv() })).code).toBe(0)
    expect((await api('GET', `/v1/leases/${lease.id}`)).lease.state).toBe('released')
  })

  it('SIGINT mid-command kills the remote process and releases the lease', async () => {
    const seconds = `300.${process.pid}1`
    const child = spawnCli(['run', '--no-sync', '--timing-json', '--', 'sh', '-c', `echo started; exec sleep ${seconds}`], {
      home: rig.home,
      cwd: repo,
      env: cliEnv(),
    })
    let stdout = ''
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    child.stdout!.on('data', (d) => (stdout += d))
    await stdoutShows(child, 'started')
    const remoteSleeps = async () => (await rig.host.processes()).filter((p) => p.command.includes(`sleep ${seconds}`))
    expect(await remoteSleeps()).not.toEqual([])
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(code, stderr).toBe(130)
    const leaseId = /released (cbx_[0-9a-f]{12})/.exec(stderr)?.[1]
    expect(leaseId).toBeDefined()
    await until('the remote sleep to end', async () => (await remoteSleeps()).length === 0, 15_000)
    expect((await api('GET', `/v1/leases/${leaseId}`)).lease.state).toBe('released')
  })

  it('a CLI killed with SIGKILL leaves a lease that the broker expires at its idle timeout', async () => {
    const child = spawnCli(['run', '--no-sync', '--idle-timeout', '3s', '--', 'sh', '-c', 'echo started; exec sleep 30'], {
      home: rig.home,
      cwd: repo,
      env: cliEnv(),
    })
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    await stdoutShows(child, 'started')
    const leaseId = /leased (cbx_[0-9a-f]{12})/.exec(stderr)![1]
    child.kill('SIGKILL')
    await new Promise((resolve) => child.on('close', resolve))
    const state = await until('the lease to expire', async () => {
      const { lease } = await api('GET', `/v1/leases/${leaseId}`)
      return lease.state === 'active' ? undefined : lease.state
    })
    expect(state).toBe('expired')
  })

  it('a broker that goes away mid-run changes neither the output nor the exit code', async () => {
    const child = spawnCli(['run', '--no-sync', '--', 'sh', '-c', 'echo a; sleep 3; echo b; exit 5'], {
      home: rig.home,
      cwd: repo,
      env: cliEnv(),
    })
    let stdout = ''
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    child.stdout!.on('data', (d) => (stdout += d))
    await stdoutShows(child, 'a\n')
    await rig.broker.stop()
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(stdout, stderr).toBe('a\nb\n')
    expect(code, stderr).toBe(5)
    expect(stderr.match(/broker unreachable/g)?.length ?? 0).toBeLessThanOrEqual(1)
    await rig.broker.restart()
  })
})
