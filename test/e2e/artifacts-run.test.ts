import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../support/cli.js'
import { gitRepo } from '../support/fixtures.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

/**
 * A run's evidence through the broker: `run --junit` records a failing test,
 * `artifacts collect --run` brings back its log and record with the manifest,
 * and `artifacts template` turns the record into the report's test summary
 * with a link to the run's portal page.
 */

const rig = brokerWithStaticHosts({ token: 'e2e-artifacts-token', owner: 'artifacts@example.com', names: ['e2e-artifacts'] })
const { cliEnv } = rig
let repo: string

const report = `<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="math" tests="2" failures="1" time="0.2">
  <testcase name="adds" classname="math.Add"/>
  <testcase name="divides" classname="math.Div"><failure message="expected 2, got NaN"/></testcase>
</testsuite>
`

beforeAll(() => {
  repo = gitRepo('crabbox-artifacts-run-', { 'report.txt': report })
})
afterAll(() => {
  if (repo) rmSync(repo, { recursive: true, force: true })
})

describe('artifacts collect --run and artifacts template', () => {
  it('collects the run log and record, and the template shows its test summary and portal link', async () => {
    const cli = (args: string[]) => runCli(args, { home: rig.home, cwd: repo, env: cliEnv() })
    const run = await cli([
      'run',
      '--junit',
      'reports/*.xml',
      '--timing-json',
      '--',
      'sh',
      '-c',
      'echo evidence-line; mkdir -p reports && cp report.txt reports/unit.xml && exit 1',
    ])
    expect(run.code, run.stderr).toBe(1)
    const { runId } = JSON.parse(run.stderr.trim().split('\n').at(-1)!)

    const output = join(repo, 'evidence')
    const collected = await cli([
      'artifacts',
      'collect',
      '--run',
      runId,
      '--no-screenshot',
      '--no-doctor',
      '--no-webvnc-status',
      '--output',
      output,
      '--json',
    ])
    expect(collected.code, collected.stderr).toBe(0)
    const out = JSON.parse(collected.stdout)
    expect(out.files.map((f: { name: string }) => f.name)).toEqual(['run.log', 'run.json'])
    expect(readFileSync(join(output, 'run.log'), 'utf8')).toContain('evidence-line')
    const manifest = JSON.parse(readFileSync(join(output, 'metadata.json'), 'utf8'))
    expect(manifest).toMatchObject({ lease: null, run: { id: runId, state: 'failed', exitCode: 1 }, warnings: [] })
    expect(JSON.parse(readFileSync(join(output, 'run.json'), 'utf8')).results).toMatchObject({ tests: 2, failures: 1 })

    const md = join(output, 'report.md')
    const template = await cli([
      'artifacts',
      'template',
      '--after',
      'evidence/screen.gif',
      '--summary-file',
      join(output, 'run.json'),
      '--output',
      md,
    ])
    expect(template.code, template.stderr).toBe(0)
    const text = readFileSync(md, 'utf8')
    expect(text).toContain('❌ 2 tests, 1 failure, 0 errors, 0 skipped in 0.2s')
    expect(text).toContain('| math.Div › divides | expected 2, got NaN |')
    expect(text).toContain(`- Run [\`${runId}\`](${rig.broker.url}/portal/runs/${runId}) (failed, exit 1)`)
  })

  it('a run the broker does not know is a warning with exit 4, and the manifest is still written', async () => {
    const output = join(repo, 'missing')
    const result = await runCli(
      ['artifacts', 'collect', '--run', 'run_0123456789ab', '--no-screenshot', '--no-doctor', '--no-webvnc-status', '--output', output],
      { home: rig.home, cwd: repo, env: cliEnv() },
    )
    expect(result.code).toBe(4)
    expect(result.stderr).toContain('problem: run: no run run_0123456789ab')
    expect(JSON.parse(readFileSync(join(output, 'metadata.json'), 'utf8')).warnings).toEqual([
      expect.objectContaining({ item: 'run', exitCode: 4 }),
    ])
  })
})
