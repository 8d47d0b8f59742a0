import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../support/cli.js'
import { gitRepo } from '../support/fixtures.js'
import { brokerWithStaticHosts } from '../support/static-broker.js'

const rig = brokerWithStaticHosts({ token: 'e2e-results-token', owner: 'results@example.com', names: ['e2e-results'] })
const { cliEnv } = rig
let repo: string

const lastJsonLine = (text: string) => JSON.parse(text.trim().split('\n').at(-1)!)

/** A real JUnit report, as a test runner on the box would write it: 3 tests, one failing. */
const report = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="math" tests="3" failures="1" errors="0" skipped="0" time="0.5" file="test/math.ts">
    <testcase name="adds" classname="math.Add" time="0.1"/>
    <testcase name="subtracts" classname="math.Sub" time="0.1"/>
    <testcase name="divides by zero" classname="math.Div" time="0.3">
      <failure message="expected Infinity, got NaN" type="AssertionError">at divide (math.ts:3)</failure>
    </testcase>
  </testsuite>
</testsuites>
`

beforeAll(() => {
  repo = gitRepo('crabbox-results-', { 'report.txt': report })
})

afterAll(() => {
  if (repo) rmSync(repo, { recursive: true, force: true })
})

describe('run --junit and run telemetry through the broker', () => {
  it('reads the JUnit files the command wrote, records the summary, and results shows it', async () => {
    // The command writes the report on the runner (a glob picks it up), then fails like a test run does.
    const result = await runCli(
      [
        'run',
        '--junit',
        'reports/*.xml, missing.xml',
        '--timing-json',
        '--',
        'sh',
        '-c',
        'mkdir -p reports && cp report.txt reports/unit.xml && exit 1',
      ],
      { home: rig.home, cwd: repo, env: cliEnv() },
    )
    expect(result.code, result.stderr).toBe(1)
    expect(result.stderr).toMatch(/^junit: 3 tests, 1 failure, 0 errors, 0 skipped in 0\.5s \(1 suite, 1 file\)$/m)
    expect(result.stderr).toMatch(/warning:.*junit: no file matches missing\.xml/)
    const { runId } = lastJsonLine(result.stderr)

    const shown = await runCli(['results', runId, '--json'], { home: rig.home, cwd: repo, env: cliEnv() })
    expect(shown.code, shown.stderr).toBe(0)
    // --json prints the bare results object.
    expect(JSON.parse(shown.stdout)).toEqual({
      format: 'junit',
      files: ['reports/unit.xml'],
      suites: 1,
      tests: 3,
      failures: 1,
      errors: 0,
      skipped: 0,
      timeSeconds: 0.5,
      failed: [
        {
          suite: 'math',
          name: 'divides by zero',
          classname: 'math.Div',
          file: 'test/math.ts',
          message: 'expected Infinity, got NaN',
          type: 'AssertionError',
          kind: 'failure',
        },
      ],
    })
    const human = await runCli(['results', runId], { home: rig.home, cwd: repo, env: cliEnv() })
    expect(human.stdout).toMatch(/FAIL math\.Div › divides by zero: expected Infinity, got NaN/)
  })

  it('a malformed file (named by results.junit) is a warning; the exit code stays the command’s', async () => {
    const result = await runCli(['run', '--timing-json', '--', 'sh', '-c', "printf '<testsuite><testcase>' > bad.xml"], {
      home: rig.home,
      cwd: repo,
      env: cliEnv({ CRABBOX_RESULTS_JUNIT: 'bad.xml' }),
    })
    expect(result.code, result.stderr).toBe(0)
    expect(result.stderr).toMatch(/warning:.*junit: bad\.xml: not valid XML/)
    const { runId, exitCode } = lastJsonLine(result.stderr)
    expect(exitCode).toBe(0)
    const shown = await runCli(['results', runId, '--json'], { home: rig.home, cwd: repo, env: cliEnv() })
    expect(JSON.parse(shown.stdout)).toBeNull()

    const failing = await runCli(['run', '--junit', 'bad.xml', '--', 'sh', '-c', "printf 'oops <' > bad.xml; exit 7"], {
      home: rig.home,
      cwd: repo,
      env: cliEnv(),
    })
    expect(failing.code, failing.stderr).toBe(7)
    expect(failing.stderr).toMatch(/warning:.*junit: bad\.xml: not valid XML/)
  })

  it('samples the runner while the command runs: the run record has telemetry, the lease heartbeats carry it', async () => {
    // A 15 s idle timeout beats every 5 s, so the second beat carries the first sample.
    const result = await runCli(['run', '--idle-timeout', '15s', '--timing-json', '--', 'sleep', '6'], {
      home: rig.home,
      cwd: repo,
      env: cliEnv(),
    })
    expect(result.code, result.stderr).toBe(0)
    const { runId, leaseId } = lastJsonLine(result.stderr)
    const { run } = await rig.api('GET', `/v1/runs/${runId}`)
    expect(run.telemetry.start).toMatchObject({ source: 'ssh-linux' })
    expect(run.telemetry.start.load1).toBeGreaterThanOrEqual(0)
    expect(run.telemetry.start.memoryTotalBytes).toBeGreaterThan(0)
    expect(run.telemetry.start.diskTotalBytes).toBeGreaterThan(0)
    expect(run.telemetry.samples.length).toBeGreaterThanOrEqual(1)
    expect(run.telemetry.end).toBeDefined()
    const { lease } = await rig.api('GET', `/v1/leases/${leaseId}`)
    expect(lease.telemetry).toMatchObject({ source: 'ssh-linux' })
    expect(lease.telemetry.memoryTotalBytes).toBeGreaterThan(0)
  })
})
