// `npm run bench -- media [--minutes N] [--runs N]`: the cost of `media preview` per minute of video.
// A screen-like recording (1280x800, 15 fps, H.264 as `artifacts video` writes it: a still quarter, a
// moving half, a still quarter) is made with ffmpeg, then the preview's three ffmpeg passes are timed
// one by one (freeze detection, palette GIF, trimmed MP4), beside a plain decode of the same video
// (`ffmpeg -f null`, the floor any pass pays). Figures are seconds of work per minute of video.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { probeDuration, runTool } from '../../src/services/artifacts/ffmpeg.js'
import { detectFreezes, gifArgs, motionWindow, PREVIEW_DEFAULTS, trimmedVideoArgs } from '../../src/services/artifacts/media.js'
import { loadAverage } from '../common.js'

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1]) || fallback
const minutes = arg('--minutes', 1)
const runs = arg('--runs', 3)
const dir = mkdtempSync(join(tmpdir(), 'crabbox-bench-media-'))
const input = join(dir, 'screen.mp4')
const still = (minutes * 60) / 4
const size = '1280x800'

process.stderr.write(`making a ${minutes}-minute ${size} 15 fps test recording ...\n`)
await runTool('ffmpeg', [
  '-y',
  '-loglevel',
  'error',
  '-filter_complex',
  `color=c=gray:s=${size}:r=15:d=${still}[a];testsrc2=s=${size}:r=15:d=${still * 2}[b];color=c=gray:s=${size}:r=15:d=${still}[c];[a][b][c]concat=n=3:v=1:a=0,format=yuv420p[v]`,
  '-map',
  '[v]',
  '-c:v',
  'libx264',
  '-preset',
  'ultrafast',
  input,
])
const duration = await probeDuration(input)

const timed = async (work: () => Promise<unknown>): Promise<number> => {
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
    const start = performance.now()
    await work()
    times.push(performance.now() - start)
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)] / 1000
}

const noise = PREVIEW_DEFAULTS.freezeNoise
const freezes = await detectFreezes(input, duration, noise, 500)
const window = motionWindow(freezes, duration, { paddingMs: 750, minDurationMs: 1500 })
const rows: Array<[string, number]> = [
  ['decode only (ffmpeg -f null, the floor)', await timed(() => runTool('ffmpeg', ['-i', input, '-f', 'null', '-']))],
  ['freeze detection (whole video)', await timed(() => detectFreezes(input, duration, noise, 500))],
  ['palette GIF, 640 px, 4 fps (motion window)', await timed(() => runTool('ffmpeg', gifArgs(input, join(dir, 'p.gif'), window, 640, 4)))],
  ['trimmed MP4 (motion window)', await timed(() => runTool('ffmpeg', trimmedVideoArgs(input, join(dir, 'p.mp4'), window)))],
]
const perMinute = (seconds: number) => seconds / (duration / 60)
const total = rows.slice(1).reduce((sum, [, s]) => sum + s, 0)
console.log(
  `video ${duration.toFixed(1)} s (${size}, 15 fps), window ${window.start}–${window.end} s, load average ${loadAverage()}, median of ${runs}`,
)
console.log('| Pass | Seconds | Seconds per video-minute |')
console.log('| --- | --- | --- |')
for (const [name, seconds] of rows) console.log(`| ${name} | ${seconds.toFixed(2)} | ${perMinute(seconds).toFixed(2)} |`)
console.log(`| media preview (the three passes) | ${total.toFixed(2)} | ${perMinute(total).toFixed(2)} |`)
rmSync(dir, { recursive: true, force: true })
