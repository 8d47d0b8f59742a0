import { describe, expect, it } from 'vitest'
import { collectFailure, collectPlan, metadata, type CollectFlags, type CollectResult } from '../../src/services/artifacts/collect.js'
import { checkNoise, defaultGifPath, gifArgs, motionWindow, parseFreezes, trimmedVideoArgs } from '../../src/services/artifacts/media.js'
import { mediaMarkdown, readSummary, renderTemplate } from '../../src/services/artifacts/template.js'
import { videoScript, videoSeconds } from '../../src/services/artifacts/video.js'
import { RescueError } from '../../src/ui/rescue.js'

/** The pure parts of media preview, video, collect and template; ffmpeg itself runs in test/e2e/media-preview.test.ts. */

const LOG = `frame=    1 fps=0.0 q=-0.0 size=N/A time=00:00:00.04 bitrate=N/A speed=30.2x    [freezedetect @ 0x55a3] lavfi.freezedetect.freeze_start: 0
[freezedetect @ 0x55a3] lavfi.freezedetect.freeze_duration: 2
[freezedetect @ 0x55a3] lavfi.freezedetect.freeze_end: 2
[freezedetect @ 0x55a3] lavfi.freezedetect.freeze_start: 4.04
`
const pad = { paddingMs: 750, minDurationMs: 1500 }

describe('media preview: still stretches and the motion window', () => {
  it('reads freezedetect lines, even glued to a progress line; an open still runs to the end', () => {
    expect(parseFreezes(LOG, 6)).toEqual([
      { start: 0, end: 2 },
      { start: 4.04, end: 6 },
    ])
    expect(parseFreezes('no freezes here', 6)).toEqual([])
  })

  it('cuts the still head and tail, keeping the padding', () => {
    expect(motionWindow(parseFreezes(LOG, 6), 6, pad)).toEqual({ start: 1.25, end: 4.79, trimmed: true })
    expect(motionWindow(parseFreezes(LOG, 6), 6, { paddingMs: 0, minDurationMs: 0 })).toEqual({ start: 2, end: 4.04, trimmed: true })
  })

  it('cuts only a head or only a tail when there is only one', () => {
    expect(motionWindow([{ start: 0, end: 3 }], 10, pad)).toEqual({ start: 2.25, end: 10, trimmed: true })
    expect(motionWindow([{ start: 7, end: 10 }], 10, pad)).toEqual({ start: 0, end: 7.75, trimmed: true })
  })

  it('keeps a still stretch in the middle, and the whole video when nothing is still at the edges', () => {
    expect(motionWindow([{ start: 3, end: 5 }], 10, pad)).toEqual({ start: 0, end: 10, trimmed: false, reason: 'no-still-edges' })
  })

  it('keeps the whole video when nothing moves', () => {
    expect(motionWindow([{ start: 0, end: 10 }], 10, pad)).toEqual({ start: 0, end: 10, trimmed: false, reason: 'no-motion' })
    // A head and a tail that meet: no motion between them.
    expect(
      motionWindow(
        [
          { start: 0, end: 5 },
          { start: 5, end: 10 },
        ],
        10,
        { paddingMs: 0, minDurationMs: 0 },
      ),
    ).toMatchObject({
      trimmed: false,
      reason: 'no-motion',
    })
  })

  it('widens a short clip to the minimum duration around the motion, inside the video', () => {
    const short = motionWindow(
      [
        { start: 0, end: 4.9 },
        { start: 5.1, end: 10 },
      ],
      10,
      { paddingMs: 0, minDurationMs: 2000 },
    )
    expect(short).toEqual({ start: 4, end: 6, trimmed: true })
    const atStart = motionWindow([{ start: 0.5, end: 10 }], 10, { paddingMs: 0, minDurationMs: 3000 })
    expect(atStart).toEqual({ start: 0, end: 3, trimmed: true })
  })

  it('checks the noise level, and builds the palette GIF and the trimmed MP4 from the window', () => {
    expect(checkNoise('-60db')).toBe('-60dB')
    expect(checkNoise('0.003')).toBe('0.003')
    expect(() => checkNoise('loud')).toThrow(/--freeze-noise/)
    const gif = gifArgs('in.mp4', 'out.gif', { start: 1.25, end: 4.75 }, 320, 4)
    expect(gif.slice(gif.indexOf('-ss'), gif.indexOf('-ss') + 6)).toEqual(['-ss', '1.250', '-i', 'in.mp4', '-t', '3.500'])
    expect(gif.join(' ')).toMatch(/fps=4,scale=320:-1.*palettegen.*paletteuse/)
    expect(trimmedVideoArgs('in.mp4', 'out.mp4', { start: 0, end: 2 })).toEqual(expect.arrayContaining(['libx264', 'yuv420p', 'out.mp4']))
    expect(defaultGifPath('dir/screen.mp4')).toBe('dir/screen.gif')
  })
})

describe('artifacts video', () => {
  it('checks the duration and fps, and records with x11grab on :99', () => {
    expect(videoSeconds({ duration: '2s', fps: 15 })).toBe(2)
    expect(() => videoSeconds({ duration: '500ms', fps: 15 })).toThrow(/--duration/)
    expect(() => videoSeconds({ duration: '11m', fps: 15 })).toThrow(/--duration/)
    expect(videoScript(2, 15)).toMatch(/-f x11grab -framerate 15 .* -i :99/)
    expect(videoScript(2, 15)).toContain('exit 3')
  })
})

const flags = (over: Partial<CollectFlags> = {}): CollectFlags => ({
  all: false,
  screenshot: true,
  video: false,
  gif: false,
  doctor: true,
  webvncStatus: true,
  metadata: true,
  duration: '10s',
  fps: 15,
  gifWidth: 640,
  ...over,
})

describe('artifacts collect', () => {
  it('plans the pieces: --gif records the video, --all takes everything', () => {
    expect(collectPlan(flags({ gif: true }))).toMatchObject({ video: true, gif: true, screenshot: true })
    expect(collectPlan(flags({ all: true, screenshot: false, doctor: false }))).toEqual({
      screenshot: true,
      video: true,
      gif: true,
      doctor: true,
      webvncStatus: true,
      metadata: true,
    })
  })

  it('fails with the first warning exit code, as problem/rescue lines, and the manifest keeps them', () => {
    const result: CollectResult = {
      output: 'out',
      files: [{ name: 'screenshot.png', size: 3, sha256: 'ab' }],
      warnings: [
        {
          item: 'video',
          exitCode: 5,
          layer: 'video',
          problem: 'ffmpeg is not installed on the runner',
          rescue: ['crabbox ssh --id x -- apt'],
        },
        { item: 'run', exitCode: 2, layer: 'run', problem: 'no broker', rescue: [] },
      ],
      skipped: [],
      collectedAt: '2026-01-01T00:00:00.000Z',
    }
    const failure = collectFailure(result)!
    expect(failure).toBeInstanceOf(RescueError)
    expect(failure.exitCode).toBe(5)
    expect(failure.lines).toEqual([
      'problem: video: ffmpeg is not installed on the runner',
      'rescue: crabbox ssh --id x -- apt',
      'problem: run: no broker',
    ])
    expect(metadata(result)).toMatchObject({ lease: null, run: null, files: result.files, warnings: result.warnings })
    expect(collectFailure({ ...result, warnings: [] })).toBeUndefined()
  })
})

describe('artifacts template', () => {
  const results = {
    format: 'junit',
    files: ['junit.xml'],
    suites: 1,
    tests: 3,
    failures: 1,
    errors: 0,
    skipped: 0,
    timeSeconds: 1.5,
    failed: [{ suite: 's', name: 'adds | pipes', kind: 'failure' as const, message: 'expected 2\nstack' }],
  }

  it('reads a run record, a results summary, JUnit XML or plain text', () => {
    const run = { id: 'run_0123456789ab', state: 'failed', leaseID: 'cbx_1', exitCode: 1, results }
    expect(readSummary(JSON.stringify(run), 'run.json')).toMatchObject({ run: { id: 'run_0123456789ab' }, results })
    expect(readSummary(JSON.stringify(results), 'r.json')).toEqual({ results })
    const xml =
      '<testsuite name="s" tests="2" failures="1"><testcase name="a"/><testcase name="b"><failure message="no"/></testcase></testsuite>'
    expect(readSummary(xml, 'junit.xml').results).toMatchObject({ tests: 2, failures: 1 })
    expect(readSummary('  Fixed it  ', 'notes.md')).toEqual({ text: 'Fixed it' })
    expect(() => readSummary('{"x":1}', 'x.json')).toThrow(/neither/)
  })

  it('renders before/after media, the test summary and links', () => {
    const run = { id: 'run_0123456789ab', state: 'failed', leaseID: 'cbx_1', exitCode: 1 } as never
    const md = renderTemplate({ kind: 'openclaw', before: 'shots/before.png', after: 'shots/after one.mp4' }, { results, run })
    expect(md).toContain('## QA summary')
    expect(md).toContain('| ![Before](shots/before.png) | [After: after one.mp4](shots/after%20one.mp4) |')
    expect(md).toContain('❌ 3 tests, 1 failure, 0 errors, 0 skipped in 1.5s')
    expect(md).toContain('| s › adds \\| pipes | expected 2 |')
    expect(md).toContain('- Run `run_0123456789ab` (failed, exit 1) on lease `cbx_1`')
    expect(renderTemplate({ kind: 'openclaw', broker: 'https://broker.example/' }, { run })).toContain(
      '- Run [`run_0123456789ab`](https://broker.example/portal/runs/run_0123456789ab) (failed, exit 1)',
    )
    expect(renderTemplate({ kind: 'mantis', after: 'a.gif' }, { text: 'Fixed' })).toMatch(
      /## Bug report[\s\S]*\| — \| !\[Fixed \(after\)\]\(a\.gif\) \|[\s\S]*Fixed/,
    )
    expect(mediaMarkdown('x', 'a (1).png')).toBe('![x](a%20%281%29.png)')
  })
})
