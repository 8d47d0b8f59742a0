import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { renderCloudInit } from '../../src/cloud/cloud-init.js'
import { loadConfig } from '../../src/config/load.js'
import { parseRepo } from '../../src/services/actions/github.js'
import { declaredInputs, parseFields, REQUIRED_INPUTS } from '../../src/services/actions/index.js'
import { jobSideScript, parseMarker } from '../../src/services/actions/scripts.js'
import { cacheEnv, parseStats, pruneScript, purgeKinds } from '../../src/services/cache/index.js'
import { workflowTemplate } from '../../src/services/init-workflow.js'
import { remoteCommandFor } from '../../src/services/run/remote-command.js'

describe('actions: parsing', () => {
  it('reads owner/name and GitHub URLs (https, ssh, scp form)', () => {
    for (const text of ['acme/app', 'https://github.com/acme/app.git', 'git@github.com:acme/app.git', 'ssh://git@github.com/acme/app'])
      expect(parseRepo(text), text).toEqual({ owner: 'acme', name: 'app' })
    expect(parseRepo('just-a-name')).toBeUndefined()
    expect(parseRepo('a/b/c')).toBeUndefined()
  })

  it('reads the hydration marker; nothing until it names a workspace', () => {
    expect(parseMarker('')).toBeUndefined()
    expect(parseMarker('RUN_ID=1\n')).toBeUndefined()
    expect(
      parseMarker(
        'WORKSPACE=/w/app\nRUN_ID=42\nREADY_AT=2026-01-01T00:00:00Z\nJOB=hydrate\nENV_FILE=/h/x.env.sh\nSERVICES_FILE=/h/x.services\n',
      ),
    ).toEqual({
      workspace: '/w/app',
      runId: '42',
      readyAt: '2026-01-01T00:00:00Z',
      job: 'hydrate',
      envFile: '/h/x.env.sh',
      servicesFile: '/h/x.services',
    })
  })

  it('fields are key=value, a later key wins; anything else is exit 2', () => {
    expect(parseFields(['a=1', 'b=x=y', 'a=2'])).toEqual({ a: '2', b: 'x=y' })
    expect(() => parseFields(['novalue'])).toThrow(/expected key=value/)
  })

  it('the workflow init --workflow writes declares every crabbox input and runs the job side on the lease runner', () => {
    const text = workflowTemplate(mkdtempSync(join(tmpdir(), 'crabbox-wf-')))
    const declared = declaredInputs(text)
    for (const name of [...REQUIRED_INPUTS, 'crabbox_job', 'command']) expect(declared.has(name), name).toBe(true)
    const workflow = parse(text)
    /* eslint-disable no-template-curly-in-string -- GitHub Actions expressions */
    expect(workflow.jobs.hydrate['runs-on']).toEqual(['self-hosted', '${{ inputs.crabbox_runner_label }}'])
    expect(workflow.jobs.hydrate.if).toBe('${{ inputs.crabbox_id }}')
    expect(workflow.jobs.test.if).toBe('${{ !inputs.crabbox_id }}')
    /* eslint-enable no-template-curly-in-string */
    expect(workflow.jobs.hydrate.steps.at(-1).run.trim()).toBe(jobSideScript.trim())
    expect(workflow.jobs.hydrate.steps[0]).toMatchObject({ uses: 'actions/checkout@v4', with: { 'persist-credentials': false } })
    expect(declaredInputs('name: x\non: push\n').size).toBe(0)
  })
})

describe('actions: the job side and the hydrated run, in a real shell', () => {
  it('writes env (without runner tokens), services and the marker last; ends on the stop marker', () => {
    const home = mkdtempSync(join(tmpdir(), 'crabbox-jobside-'))
    try {
      const env = {
        PATH: `/opt/setup/bin:${process.env.PATH}`,
        HOME: home,
        CRABBOX_ID: 'cbx_test',
        CRABBOX_KEEP_ALIVE_MINUTES: '1',
        CRABBOX_SERVICES: '{"db":{"ports":{"5432":"5432"}}}',
        GITHUB_WORKSPACE: join(home, 'ws'),
        GITHUB_RUN_ID: '77',
        GITHUB_JOB: 'hydrate',
        ACTIONS_RUNTIME_TOKEN: 'secret-runtime',
        GITHUB_TOKEN: 'secret-job',
        FROM_SETUP: 'it is "quoted" $here',
      }
      mkdirSync(join(home, '.crabbox', 'actions'), { recursive: true })
      writeFileSync(join(home, '.crabbox', 'actions', 'cbx_test.stop'), '') // ends at once
      execFileSync('bash', ['-c', jobSideScript], { env })
      const dir = join(home, '.crabbox', 'actions')
      const marker = parseMarker(execFileSync('cat', [join(dir, 'cbx_test.env')], { encoding: 'utf8' }))
      expect(marker).toMatchObject({ workspace: join(home, 'ws'), runId: '77', job: 'hydrate', envFile: join(dir, 'cbx_test.env.sh') })
      expect(JSON.parse(execFileSync('cat', [join(dir, 'cbx_test.services')], { encoding: 'utf8' }))).toEqual({
        db: { ports: { '5432': '5432' } },
      })
      // A command run the way `run` runs it on a hydrated lease sees the job's env, not its tokens.
      // eslint-disable-next-line no-template-curly-in-string -- shell expansions
      const remote = remoteCommandFor(['sh', '-c', 'echo "$FROM_SETUP|${ACTIONS_RUNTIME_TOKEN:-none}|${GITHUB_TOKEN:-none}|$PATH"'], {
        envFile: marker!.envFile,
      })
      const out = execFileSync('sh', ['-c', remote.command], { env: { PATH: '/usr/bin:/bin', HOME: home }, encoding: 'utf8' })
      expect(out).toBe(`it is "quoted" $here|none|none|/opt/setup/bin:${process.env.PATH}\n`)
    } finally {
      rmSync(home, { recursive: true, force: true })
    }
  })
})

describe('cache', () => {
  it('kinds: all is every enabled one; a disabled or unknown kind is exit 2', () => {
    expect(purgeKinds('all', ['pnpm', 'npm', 'git'])).toEqual(['pnpm', 'npm', 'git'])
    expect(purgeKinds('npm', ['npm'])).toEqual(['npm'])
    expect(() => purgeKinds('docker', ['npm'])).toThrow(/docker cache is disabled/)
    expect(() => purgeKinds('yarn', ['npm'])).toThrow(/unknown cache kind/)
  })

  it('stats lines: KiB to bytes, absent caches without a size, docker detail kept', () => {
    expect(parseStats('pnpm 8\nnpm -\ndocker - Images=1.2GB Containers=0B\nbogus 1\n')).toEqual([
      { kind: 'pnpm', path: '/var/cache/crabbox/pnpm', bytes: 8192 },
      { kind: 'npm', path: '/var/cache/crabbox/npm' },
      { kind: 'docker', path: 'docker system', detail: 'Images=1.2GB Containers=0B' },
    ])
    expect(cacheEnv(['npm'])).toEqual({ npm_config_cache: '/var/cache/crabbox/npm' })
  })

  it('prune removes the oldest files first until the folders fit', () => {
    const root = mkdtempSync(join(tmpdir(), 'crabbox-prune-'))
    try {
      mkdirSync(join(root, 'npm', 'sub'), { recursive: true })
      const put = (name: string, daysOld: number) => {
        writeFileSync(join(root, name), Buffer.alloc(100 * 1024, 1))
        const at = Date.now() / 1000 - daysOld * 86_400
        utimesSync(join(root, name), at, at)
      }
      put('npm/oldest', 3)
      put('npm/sub/older', 2)
      put('npm/newest', 0)
      const out = execFileSync('sh', ['-c', pruneScript, 'sh', '150', join(root, 'npm')], { encoding: 'utf8' })
      expect(
        out
          .trim()
          .split('\n')
          .map((line) => line.split(' ').slice(1).join(' ')),
      ).toEqual([join(root, 'npm/oldest'), join(root, 'npm/sub/older')])
      expect(readdirSync(join(root, 'npm'))).toEqual(['newest']) // the emptied folder went too
      expect(execFileSync('sh', ['-c', pruneScript, 'sh', '150', join(root, 'npm')], { encoding: 'utf8' })).toBe('')
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})

describe('settings and bootstrap', () => {
  it('actions.* and cache.* defaults, and their CRABBOX_* variables', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'crabbox-cfg-'))
    const base = { CRABBOX_CONFIG: join(cwd, 'none.yaml') }
    const defaults = (await loadConfig({ cwd, env: base })).config
    expect(defaults.actions).toEqual({ workflow: 'crabbox.yml', fields: [], runnerLabels: [], runnerVersion: 'latest', ephemeral: true })
    expect(defaults.cache).toEqual({ pnpm: true, npm: true, docker: true, git: true, maxGB: 80, purgeOnRelease: false })
    const { config } = await loadConfig({
      cwd,
      env: {
        ...base,
        CRABBOX_ACTIONS_REPO: 'acme/app',
        CRABBOX_ACTIONS_WORKFLOW: 'hydrate.yml',
        CRABBOX_ACTIONS_JOB: 'unit',
        CRABBOX_ACTIONS_REF: 'dev',
        CRABBOX_ACTIONS_RUNNER_LABELS: 'gpu, big',
        CRABBOX_ACTIONS_RUNNER_VERSION: '2.330.0',
        CRABBOX_ACTIONS_EPHEMERAL: '0',
        CRABBOX_CACHE_DOCKER: 'false',
        CRABBOX_CACHE_MAX_GB: '12.5',
        CRABBOX_CACHE_PURGE_ON_RELEASE: '1',
      },
    })
    expect(config.actions).toMatchObject({
      repo: 'acme/app',
      workflow: 'hydrate.yml',
      job: 'unit',
      ref: 'dev',
      runnerLabels: ['gpu', 'big'],
      runnerVersion: '2.330.0',
      ephemeral: false,
    })
    expect(config.cache).toMatchObject({ docker: false, maxGB: 12.5, purgeOnRelease: true })
    await expect(loadConfig({ cwd, env: { ...base, CRABBOX_CACHE_MAX_GB: 'lots' } })).rejects.toThrow(/CRABBOX_CACHE_MAX_GB/)
    rmSync(cwd, { recursive: true, force: true })
  })

  it('cloud-init makes the cache folders and points npm and pnpm at them', () => {
    const text = renderCloudInit({
      sshUser: 'crabbox',
      sshPort: '2222',
      sshFallbackPorts: ['22'],
      workRoot: '/work/crabbox',
      sshPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBb test',
    } as Parameters<typeof renderCloudInit>[0])
    const doc = parse(text)
    const environment = doc.write_files.find((file: { path: string }) => file.path === '/etc/environment')
    expect(environment).toMatchObject({ append: true })
    expect(environment.content).toContain('npm_config_cache=/var/cache/crabbox/npm')
    expect(environment.content).toContain('npm_config_store_dir=/var/cache/crabbox/pnpm')
    expect(environment.content).toContain('pnpm_config_store_dir=/var/cache/crabbox/pnpm')
    expect(text).toContain('/var/cache/crabbox/git')
  })
})

describe('actions: the GitHub client against the fake API', () => {
  it('speaks the wire shapes; a refused token is exit 3 whose message never carries it', async () => {
    const { createFakeActions, serveOn } = await import('../support/fake-github-actions.js')
    const { GithubApi } = await import('../../src/services/actions/github.js')
    const fake = createFakeActions({ repo: 'acme/app', workflows: { 'crabbox.yml': workflowTemplate(tmpdir()) } })
    const served = await serveOn(fake.handler, '127.0.0.1')
    try {
      const repo = { owner: 'acme', name: 'app' }
      const api = new GithubApi(fake.token, served.url)
      const registration = await api.registrationToken(repo)
      expect(fake.issued).toEqual([registration.token])
      expect(declaredInputs(await api.workflowText(repo, 'crabbox.yml', 'main')).has('crabbox_id')).toBe(true)
      expect(await api.defaultBranch(repo)).toBe('main')
      await api.dispatch(repo, 'crabbox.yml', 'main', { command: 'make' })
      expect((await api.runs(repo, 'crabbox.yml')).map((run) => run.status)).toEqual(['queued'])
      expect(await api.runners(repo)).toEqual([])
      const bad = new GithubApi('ghp_wrong_token_value', served.url)
      const refused = (await bad.runners(repo).then(
        () => undefined,
        (error: unknown) => error,
      )) as { exitCode: number; message: string; hint?: string }
      expect(refused).toMatchObject({ exitCode: 3 })
      expect(refused.message).toContain('401 Bad credentials')
      expect(`${refused.message} ${refused.hint}`).not.toContain('ghp_wrong_token_value')
      await expect(api.dispatch(repo, 'crabbox.yml', 'main', { nope: '1' })).rejects.toThrow(/422 Unexpected inputs provided/)
    } finally {
      await served.close()
    }
  })
})
