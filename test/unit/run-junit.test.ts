import { describe, expect, it } from 'vitest'
import { parseJunitFiles } from '../../src/services/run/junit.js'
import { junitPatterns, splitMarked } from '../../src/services/run/steps/results.js'
import { parseTelemetry } from '../../src/services/run/telemetry.js'

describe('JUnit parser', () => {
  it('takes counts from the suite attributes', () => {
    const xml = `<?xml version="1.0"?>
<testsuites>
  <testsuite name="api" tests="10" failures="1" errors="0" skipped="2" time="1.5">
    <testcase name="creates" classname="api.Create" time="0.1"/>
    <testcase name="rejects" classname="api.Create" file="test/api.ts" time="0.2">
      <failure message="expected 400, got 500" type="AssertionError">stack…</failure>
    </testcase>
  </testsuite>
</testsuites>`
    const { summary, warnings } = parseJunitFiles([{ path: 'junit.xml', text: xml }])
    expect(warnings).toEqual([])
    expect(summary).toEqual({
      format: 'junit',
      files: ['junit.xml'],
      suites: 1,
      tests: 10,
      failures: 1,
      errors: 0,
      skipped: 2,
      timeSeconds: 1.5,
      failed: [
        {
          suite: 'api',
          name: 'rejects',
          classname: 'api.Create',
          file: 'test/api.ts',
          message: 'expected 400, got 500',
          type: 'AssertionError',
          kind: 'failure',
        },
      ],
    })
  })

  it('counts the test cases when the attributes are zero or missing', () => {
    const xml = `<testsuite name="unit" tests="0" file="test/unit.ts">
  <testcase name="a" time="0.25"/>
  <testcase name="b" time="0.5"><skipped/></testcase>
  <testcase name="c" classname="Unit"><error type="TypeError">x is undefined
    at line 3</error></testcase>
  <testcase name="d"><failure/></testcase>
</testsuite>`
    const { summary } = parseJunitFiles([{ path: 'out/unit.xml', text: xml }])
    expect(summary).toMatchObject({ suites: 1, tests: 4, failures: 1, errors: 1, skipped: 1, timeSeconds: 0.75 })
    expect(summary?.failed).toEqual([
      { suite: 'unit', name: 'c', classname: 'Unit', file: 'test/unit.ts', message: 'x is undefined', type: 'TypeError', kind: 'error' },
      { suite: 'unit', name: 'd', file: 'test/unit.ts', kind: 'failure' },
    ])
  })

  it('walks nested suites and sums several files', () => {
    const nested = `<testsuites tests="99">
  <testsuite name="outer">
    <testsuite name="inner-a" tests="3" failures="1">
      <testcase name="x"><failure message="boom"/></testcase>
    </testsuite>
    <testsuite name="inner-b">
      <testcase name="y"/>
      <testcase name="z"/>
    </testsuite>
  </testsuite>
</testsuites>`
    const single = `<testsuite name="solo" tests="1"><testcase name="ok"/></testsuite>`
    const { summary } = parseJunitFiles([
      { path: 'a.xml', text: nested },
      { path: 'b.xml', text: single },
    ])
    expect(summary).toMatchObject({ files: ['a.xml', 'b.xml'], suites: 3, tests: 6, failures: 1, errors: 0 })
    expect(summary?.failed).toEqual([{ suite: 'inner-a', name: 'x', message: 'boom', kind: 'failure' }])
  })

  it('turns malformed XML and non-JUnit roots into warnings, keeping the good files', () => {
    const { summary, warnings } = parseJunitFiles([
      { path: 'bad.xml', text: '<testsuite name="x"><testcase name="a"></testsuite>' },
      { path: 'other.xml', text: '<coverage lines="3"/>' },
      { path: 'good.xml', text: '<testsuite name="g" tests="2"/>' },
    ])
    expect(warnings).toHaveLength(2)
    expect(warnings[0]).toMatch(/^bad\.xml: not valid XML/)
    expect(warnings[1]).toBe('other.xml: no <testsuites> or <testsuite> root')
    expect(summary).toMatchObject({ files: ['good.xml'], tests: 2 })
    expect(parseJunitFiles([{ path: 'bad.xml', text: 'not xml <' }])).toEqual({ warnings: [expect.stringMatching(/^bad\.xml: /)] })
  })

  it('bounds the failure list and the strings', () => {
    const cases = Array.from({ length: 150 }, (_, i) => `<testcase name="t${i}"><failure message="${'m'.repeat(5000)}"/></testcase>`).join(
      '',
    )
    const { summary } = parseJunitFiles([{ path: 'big.xml', text: `<testsuite name="big">${cases}</testsuite>` }])
    expect(summary?.failures).toBe(150)
    expect(summary?.failed).toHaveLength(100)
    expect(summary?.failed[0]?.message).toHaveLength(4096)
  })
})

describe('JUnit remote read', () => {
  it('splits comma-separated patterns', () => {
    expect(junitPatterns(['a.xml, reports/*.xml', '', ' b.xml '])).toEqual(['a.xml', 'reports/*.xml', 'b.xml'])
  })

  it('splits the marked output into files and patterns without a match', () => {
    const m = '@@m@@'
    const output = `\n${m} F a.xml\n<testsuite/>\n\n${m} M none/*.xml\n\n${m} F b.xml\nline1\nline2`
    expect(splitMarked(output, m)).toEqual({
      files: [
        { path: 'a.xml', text: '<testsuite/>\n' },
        { path: 'b.xml', text: 'line1\nline2' },
      ],
      missing: ['none/*.xml'],
    })
  })
})

describe('runner telemetry', () => {
  const now = new Date('2026-05-05T01:02:03Z')
  it('reads load, memory, disk and uptime from one output', () => {
    const output = [
      '0.42 0.30 0.20 1/123 456',
      '@@crabbox-telemetry@@',
      'MemTotal:        8000000 kB\nMemFree:          1000000 kB\nMemAvailable:    6000000 kB',
      '@@crabbox-telemetry@@',
      '/dev/sda1 100000 25000 75000 25% /',
      '@@crabbox-telemetry@@',
      '3600.55 7000.1',
      '',
    ].join('\n')
    expect(parseTelemetry(output, now)).toEqual({
      capturedAt: '2026-05-05T01:02:03.000Z',
      source: 'ssh-linux',
      load1: 0.42,
      load5: 0.3,
      load15: 0.2,
      memoryTotalBytes: 8000000 * 1024,
      memoryUsedBytes: 2000000 * 1024,
      memoryPercent: 25,
      diskTotalBytes: 100000 * 1024,
      diskUsedBytes: 25000 * 1024,
      diskPercent: 25,
      uptimeSeconds: 3600,
    })
  })

  it('is undefined when nothing could be read', () => {
    expect(parseTelemetry('', now)).toBeUndefined()
    expect(parseTelemetry('@@crabbox-telemetry@@\n@@crabbox-telemetry@@\n', now)).toBeUndefined()
  })
})
