import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runAction } from '../support/action-runner.js'
import { repoRoot } from '../support/cli.js'
import { gitRepo } from '../support/fixtures.js'
import { pack } from '../support/npm-package.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

const token = 'action-shared-token-5e2a'
// The owner the Action claims for a shared token: the job's actor (GITHUB_ACTOR below).
const env = brokerWithStaticHosts({ token, owner: 'octocat@users.noreply.github.com' })

let packed: ReturnType<typeof pack>
const scratch: string[] = []
beforeAll(() => {
  packed = pack()
}, 120_000)
afterAll(() => {
  for (const dir of [...scratch, packed?.dir]) if (dir) rmSync(dir, { recursive: true, force: true })
})

/** The job's environment on a fresh runner: its own home, an empty npm prefix, Node and npm on PATH, nothing of crabbox. */
function jobEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const job = mkdtempSync(join(tmpdir(), 'crabbox-action-job-'))
  scratch.push(job)
  return {
    HOME: job,
    XDG_CONFIG_HOME: join(job, 'config'),
    XDG_STATE_HOME: join(job, 'state'),
    XDG_RUNTIME_DIR: join(job, 'run'),
    PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
    GITHUB_ACTOR: 'octocat',
    GITHUB_REPOSITORY: 'example/app',
    GITHUB_RUN_ID: '42',
    // The package under test, installed offline from the npm cache into the job's own prefix.
    CRABBOX_ACTION_PACKAGE: packed.tarball,
    npm_config_prefix: join(job, 'npm-global'),
    npm_config_offline: 'true',
    npm_config_cache: process.env.npm_config_cache ?? join(homedir(), '.npm'),
    npm_config_update_notifier: 'false',
    // The static pool's hosts take the test's key (a real job would load its own).
    CRABBOX_SSH_KEY: env.host.privateKeyPath,
    CRABBOX_PROVIDER: 'static',
    CRABBOX_NO_AGENT: '1',
    ...extra,
  }
}

const junit =
  '<testsuite name="s" tests="3" failures="1" skipped="1"><testcase name="a"/><testcase name="b"><failure message="no"/></testcase><testcase name="c"><skipped/></testcase></testsuite>'

describe('the GitHub Action (action.yml) as the runner runs it', () => {
  it('installs crabbox, runs the command on a leased box, passes its exit code, writes the summary, releases', async () => {
    const workspace = gitRepo('crabbox-action-ws-', { 'hello.txt': 'hello from the job checkout\n' })
    scratch.push(workspace)
    const result = await runAction(repoRoot, {
      workspace,
      env: jobEnv(),
      inputs: {
        command: `cat hello.txt && printf '%s' '${junit}' > junit.xml && exit 3`,
        'broker-url': env.broker.url,
        'broker-token': token,
        junit: 'junit.xml',
      },
    })
    expect(
      result.steps.map((step) => [step.name, step.code]),
      result.log,
    ).toEqual([
      ['Install crabbox', 0],
      ['Lease a box', 0],
      ['Run the command', 3],
      ['Release the lease', 0],
    ])
    // Output in the log, phases grouped, no colour or spinner, the token never printed.
    expect(result.log).toContain('hello from the job checkout')
    expect(result.log).toContain('::group::')
    expect(result.log).toContain(`::add-mask::${token}`)
    expect(result.log.replaceAll(`::add-mask::${token}`, '')).not.toContain(token)
    expect(result.log.includes('\u001b[') || result.log.includes('\r')).toBe(false)
    expect(result.outputs['exit-code']).toBe('3')

    const leaseId = result.outputs['lease-id']
    expect(leaseId).toMatch(/^cbx_/)
    const lease = await env.api('GET', `/v1/leases/${leaseId}`)
    expect(JSON.stringify(lease)).toMatch(/"state":"released"/)

    expect(result.summary).toContain('| crabbox run | |')
    expect(result.summary).toContain('| exit | 3 |')
    expect(result.summary).toMatch(/\| sync \| [^|]+ \|/)
    expect(result.summary).toContain('| tests | 3 tests, 1 failures, 0 errors, 1 skipped |')
    expect(result.summary).toMatch(
      new RegExp(`\\| portal \\| \\[run_[\\w]+\\]\\(${env.broker.url.replaceAll('.', '\\.')}/portal/runs/run_[\\w]+\\) \\|`),
    )
  })

  it('keep: true leaves the lease to the job; a later step reuses it with id', async () => {
    const workspace = gitRepo('crabbox-action-ws-')
    scratch.push(workspace)
    const inputs = { 'broker-url': env.broker.url, 'broker-token': token }
    const first = await runAction(repoRoot, { workspace, env: jobEnv(), inputs: { ...inputs, command: 'true', keep: 'true' } })
    expect(
      first.steps.map((step) => step.code),
      first.log,
    ).toEqual([0, 0, 0, 0])
    const leaseId = first.outputs['lease-id']
    expect(first.log).toContain(`keeping lease ${leaseId}`)
    const second = await runAction(repoRoot, { workspace, env: jobEnv(), inputs: { ...inputs, command: 'echo again', id: leaseId } })
    expect(second.steps.map((step) => step.code)).toEqual([0, 0, 0, 0])
    expect(second.log).toContain('again')
    expect(JSON.stringify(await env.api('GET', `/v1/leases/${leaseId}`))).toMatch(/"state":"active"/)
    await env.api('POST', `/v1/leases/${leaseId}/release`, {})
  })

  it('a job without node and npm gets an error that says what to add (exit 3), and nothing else runs', async () => {
    const workspace = gitRepo('crabbox-action-ws-')
    scratch.push(workspace)
    // A PATH with bash (the runner's shell) and nothing else.
    const bin = mkdtempSync(join(tmpdir(), 'crabbox-action-bin-'))
    scratch.push(bin)
    symlinkSync('/bin/bash', join(bin, 'bash'))
    const result = await runAction(repoRoot, { workspace, env: jobEnv({ PATH: bin }), inputs: { command: 'true' } })
    expect(result.steps.map((step) => step.code)).toEqual([3, null, null, 0])
    expect(result.log).toContain('::error title=crabbox::node and npm are not installed: add actions/setup-node')
  })
})
