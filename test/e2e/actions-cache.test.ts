import { mkdirSync, rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { workflowTemplate } from '../../src/services/init-workflow.js'
import { cliHome, runCli, spawnCli, type CliHome, type CliResult } from '../support/cli.js'
import { createFakeActions, serveOn, type FakeActions } from '../support/fake-github-actions.js'
import { collectOutput, gitRepo, until } from '../support/fixtures.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'
import { installStandinRunner } from '../support/standin-runner.js'

const PLAIN_WORKFLOW = `name: plain
on:
  workflow_dispatch:
    inputs:
      command:
        required: false
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: echo plain
`

/**
 * Actions hydration end to end, against a fake GitHub API (the real wire shapes) and a
 * stand-in runner on a real sshd host that performs the job side the way the workflow
 * `init --workflow` writes does (the same script). Then the runner caches on that host.
 */
describe('actions hydration and runner caches on a test host', () => {
  let host: SshHost
  let fake: FakeActions
  let served: { url: string; close(): Promise<void> }
  let repo: string
  let home: CliHome
  let env: Record<string, string>

  beforeAll(async () => {
    mkdirSync('/var/cache/crabbox', { recursive: true })
    home = cliHome()
    host = await sshHost({ name: 'actions', privateDirs: ['/var/cache/crabbox'] })
    repo = gitRepo('crabbox-actions-', { 'package.json': '{"name":"app"}\n', 'hello.txt': 'local checkout\n' })
    const workflow = workflowTemplate(repo)
    fake = createFakeActions({ repo: 'acme/app', workflows: { 'crabbox.yml': workflow, 'plain.yml': PLAIN_WORKFLOW } })
    // The root side of the host's veth pair: the CLI and the stand-in runner both reach it.
    const rootSide = host.address.replace(/\.(\d+)$/, (_, last: string) => `.${Number(last) - 1}`)
    served = await serveOn(fake.handler, rootSide)
    fake.setBaseUrl(served.url)
    const jobSide = (parse(workflow) as { jobs: { hydrate: { steps: { run?: string }[] } } }).jobs.hydrate.steps.at(-1)!.run!
    await installStandinRunner(host, served.url, jobSide)
    const prepared = await host.run(
      `mkdir -p /var/cache/crabbox/pnpm /var/cache/crabbox/npm /var/cache/crabbox/git && chown -R ${host.user}: /var/cache/crabbox`,
    )
    expect(prepared.code, prepared.stderr).toBe(0)
    env = {
      CRABBOX_PROVIDER: 'ssh',
      CRABBOX_STATIC_HOST: host.address,
      CRABBOX_SSH_KEY: host.privateKeyPath,
      CRABBOX_STATIC_WORK_ROOT: `${host.home}/work`,
      CRABBOX_NO_AGENT: '1',
      CRABBOX_ACTIONS_REPO: 'acme/app',
      CRABBOX_ACTIONS_REF: 'main',
      GH_TOKEN: fake.token,
      GITHUB_TOKEN: '',
      GITHUB_API_URL: served.url,
      GITHUB_SERVER_URL: served.url,
    }
  }, 90_000)
  afterAll(async () => {
    await served?.close()
    await host?.stop()
    if (repo) rmSync(repo, { recursive: true, force: true })
    if (home) rmSync(home.dir, { recursive: true, force: true })
  })

  const cli = (args: string[], extra: Record<string, string> = {}) =>
    runCli(args, { home, cwd: repo, env: { ...env, ...extra }, timeoutMs: 120_000 })
  const noSecrets = (...results: CliResult[]) => {
    for (const result of results)
      for (const secret of [fake.token, ...fake.issued, 'runtime-secret-standin', 'ghs_job_token_standin']) {
        expect(result.stdout).not.toContain(secret)
        expect(result.stderr).not.toContain(secret)
      }
  }

  it('warmup --actions-runner hydrates the lease; run sees the job env; stop ends the job and leaves no runner', async () => {
    const warm = await cli(['warmup', '--actions-runner', '--json'])
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout) as {
      id: string
      actions: { workspace: string; runnerName: string; runUrl?: string; labels: string[] }
    }
    const workspace = `${host.home}/.crabbox/actions-runner/_work/app/app`
    expect(lease.actions).toMatchObject({ workspace, runnerName: `crabbox-${lease.id}`, repo: 'acme/app' })
    expect(lease.actions.labels).toEqual(
      expect.arrayContaining(['crabbox', `crabbox-${lease.id}`, 'crabbox-profile-default', 'crabbox-class-beast']),
    )
    // One ephemeral runner, busy with the run dispatched with the crabbox_* inputs.
    expect([...fake.runners.values()].map((r) => ({ name: r.name, busy: r.busy, ephemeral: r.ephemeral }))).toEqual([
      { name: `crabbox-${lease.id}`, busy: true, ephemeral: true },
    ])
    expect(fake.runs).toHaveLength(1)
    expect(fake.runs[0]).toMatchObject({
      ref: 'main',
      status: 'in_progress',
      inputs: { crabbox_id: lease.id, crabbox_runner_label: `crabbox-${lease.id}`, crabbox_keep_alive_minutes: '90' },
    })
    expect(lease.actions.runUrl).toBe(`${served.url}/acme/app/actions/runs/${fake.runs[0]!.id}`)
    const services = await host.run(`cat ${host.home}/.crabbox/actions/${lease.id}.services`)
    expect(JSON.parse(services.stdout)).toMatchObject({ redis: { ports: { '6379': '6379' } } })

    const run = await cli([
      'run',
      '--id',
      lease.id,
      '--shell',
      '--',
      // eslint-disable-next-line no-template-curly-in-string -- a shell expansion on the runner
      'echo "$HYDRATED_BY run=$GITHUB_RUN_ID token=${ACTIONS_RUNTIME_TOKEN:-none}"; setup-tool; pwd; cat hello.txt',
    ])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe(`crabbox-standin run=${fake.runs[0]!.id} token=none\ntool-from-setup\n${workspace}\nlocal checkout\n`)

    // cache warm runs there too, with the job's env and the caches.
    const warmed = await cli([
      'cache',
      'warm',
      '--id',
      lease.id,
      '--json',
      '--',
      'sh',
      '-c',
      'echo "$HYDRATED_BY $npm_config_cache $(pwd)"',
    ])
    expect(warmed.code, warmed.stderr).toBe(0)
    expect(JSON.parse(warmed.stdout)).toMatchObject({ workdir: workspace, hydrated: true, exitCode: 0 })
    expect(warmed.stderr).toContain(`crabbox-standin /var/cache/crabbox/npm ${workspace}\n`)

    // JUnit results are read where the command ran: the job's workspace.
    const junit = await cli([
      'run',
      '--id',
      lease.id,
      '--junit',
      'report.xml',
      '--',
      'sh',
      '-c',
      `printf '<testsuite name="s" tests="1"><testcase name="a"/></testsuite>' > report.xml`,
    ])
    expect(junit.code, junit.stderr).toBe(0)
    expect(junit.stderr).toMatch(/^junit: 1 test/m)

    const stop = await cli(['stop', lease.id])
    expect(stop.code, stop.stderr).toBe(0)
    expect((await host.run(`test -e ${host.home}/.crabbox/actions/${lease.id}.stop`)).code).toBe(0)
    expect(fake.runs[0]).toMatchObject({ status: 'completed', conclusion: 'success' })
    expect(fake.runners.size).toBe(0)
    noSecrets(warm, run, warmed, junit, stop)
  })

  it('a hydration that times out (or is interrupted) stops and deregisters its runner, and says so', async () => {
    const warm = await cli(['warmup', '--json'])
    expect(warm.code, warm.stderr).toBe(0)
    const id = JSON.parse(warm.stdout).id as string
    fake.holdJobs(true)
    try {
      const hydrate = await cli(['actions', 'hydrate', '--id', id, '--wait-timeout', '4s'])
      expect(hydrate.code, hydrate.stderr).toBe(5)
      expect(hydrate.stderr).toContain(`timed out after 4s: runner crabbox-${id} was deregistered from acme/app`)
      expect(fake.runners.size).toBe(0)
      // The stand-in runner process is gone too.
      await until('the runner process to end', async () => !(await host.processes()).some((p) => p.command.includes('run.sh')), 10_000, 200)
      noSecrets(hydrate)
      // Ctrl-C while waiting: the runner goes too (exit 130).
      const child = spawnCli(['actions', 'hydrate', '--id', id], { home, cwd: repo, env })
      const output = collectOutput(child)
      const runsBefore = fake.runs.length
      await until('the dispatch', () => fake.runs.length > runsBefore && fake.runners.size === 1, 60_000, 100)
      child.kill('SIGINT')
      expect(await output.done, output.stderr()).toBe(130)
      expect(output.stderr()).toContain(`runner crabbox-${id} was deregistered from acme/app`)
      expect(fake.runners.size).toBe(0)
    } finally {
      fake.holdJobs(false)
      await cli(['stop', id])
    }
  })

  it('a missing GitHub token is a clear exit 3; a workflow without the crabbox inputs is exit 2', async () => {
    const noToken = await cli(['actions', 'hydrate', '--id', 'anything'], { GH_TOKEN: '', GITHUB_TOKEN: '', PATH: '/usr/bin:/bin' })
    expect(noToken.code).toBe(3)
    expect(noToken.stderr).toContain('no GitHub token')
    expect(noToken.stderr).toContain('GH_TOKEN')

    const warm = await cli(['warmup', '--json'])
    const id = JSON.parse(warm.stdout).id as string
    const plain = await cli(['actions', 'hydrate', '--id', id, '--workflow', 'plain.yml'])
    expect(plain.code).toBe(2)
    expect(plain.stderr).toContain(
      'does not declare the workflow_dispatch inputs crabbox_id, crabbox_runner_label, crabbox_keep_alive_minutes',
    )
    expect(plain.stderr).toContain('crabbox init --workflow')
    const missing = await cli(['actions', 'hydrate', '--id', id, '--workflow', 'nowhere.yml'])
    expect(missing.code).toBe(4)
    expect(fake.runners.size).toBe(0) // nothing was registered
    await cli(['stop', id])
  })

  it('actions dispatch sends config fields then -f, and names the run', async () => {
    const dispatched = await cli(['actions', 'dispatch', '--json', '-f', 'command=make check'])
    expect(dispatched.code, dispatched.stderr).toBe(0)
    const result = JSON.parse(dispatched.stdout)
    expect(result).toMatchObject({ repo: 'acme/app', workflow: 'crabbox.yml', ref: 'main', inputs: { command: 'make check' } })
    expect(result.runUrl).toBe(`${served.url}/acme/app/actions/runs/${fake.runs.at(-1)!.id}`)
    const refused = await cli(['actions', 'dispatch', '-f', 'nope=1'])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('Unexpected inputs provided')
  })

  it('cache stats, warm (with the maxGB limit) and purge on the host', async () => {
    const warm = await cli(['warmup', '--json'])
    const id = JSON.parse(warm.stdout).id as string
    // An old file in the npm cache, then a warm command that adds a new one past the limit.
    const seeded = await host.run(
      `head -c 400000 /dev/urandom > /var/cache/crabbox/npm/old.bin && touch -d '2 days ago' /var/cache/crabbox/npm/old.bin && chown ${host.user}: /var/cache/crabbox/npm/old.bin`,
    )
    expect(seeded.code, seeded.stderr).toBe(0)
    const before = await cli(['cache', 'stats', '--id', id, '--json'])
    expect(before.code, before.stderr).toBe(0)
    const stats = JSON.parse(before.stdout)
    expect(stats.caches.map((c: { kind: string }) => c.kind)).toEqual(['pnpm', 'npm', 'docker', 'git'])
    expect(stats.caches.find((c: { kind: string }) => c.kind === 'npm').bytes).toBeGreaterThanOrEqual(400_000)

    const filled = await cli(
      [
        'cache',
        'warm',
        '--id',
        id,
        '--json',
        '--',
        'sh',
        '-c',
        'head -c 400000 /dev/urandom > "$npm_config_cache/new.bin"; echo "$npm_config_store_dir"',
      ],
      {
        CRABBOX_CACHE_MAX_GB: '0.0005',
      },
    )
    expect(filled.code, filled.stderr).toBe(0)
    expect(filled.stderr).toContain('/var/cache/crabbox/pnpm')
    expect(JSON.parse(filled.stdout)).toMatchObject({ leaseId: id, exitCode: 0, pruned: 1, hydrated: false })
    expect((await host.run('ls /var/cache/crabbox/npm')).stdout).toBe('new.bin\n')

    const list = await cli(['cache', 'list', '--id', id])
    expect(list.stdout).toMatch(/^npm\s+\S+/m)
    expect((await cli(['cache', 'purge', '--id', id, '--kind', 'npm'])).code).toBe(2)
    const disabled = await cli(['cache', 'purge', '--id', id, '--kind', 'docker', '--force'], { CRABBOX_CACHE_DOCKER: '0' })
    expect(disabled.code).toBe(2)
    expect(disabled.stderr).toContain('the docker cache is disabled')
    const purged = await cli(['cache', 'purge', '--id', id, '--kind', 'npm', '--force'])
    expect(purged.code, purged.stderr).toBe(0)
    expect(purged.stdout).toContain('purged npm')
    expect((await host.run('ls -A /var/cache/crabbox/npm')).stdout).toBe('')
    const failing = await cli(['cache', 'warm', '--id', id, '--', 'sh', '-c', 'exit 7'])
    expect(failing.code).toBe(7)
    expect((await cli(['cache', 'warm', '--id', id, '--', 'sh', '-c', 'echo kept > "$npm_config_cache/kept"'])).code).toBe(0)
    const stopped = await cli(['stop', id], { CRABBOX_CACHE_PURGE_ON_RELEASE: '1' })
    expect(stopped.code, stopped.stderr).toBe(0)
    expect((await host.run('ls -A /var/cache/crabbox/npm')).stdout).toBe('')
  })
})
