import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { probe, stillMotionStill, stillVideo } from '../support/media.js'

/**
 * `media preview` / `artifacts gif` with the real ffmpeg on a video ffmpeg made:
 * 2 s still, 2 s motion, 2 s still, at 25 frames a second.
 */

const FPS = 25
const FRAME = 1 / FPS

describe('media preview on a generated video', () => {
  let dir: string
  let video: string
  let home: CliHome
  const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { home, env, cwd: dir, timeoutMs: 90_000 })

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'crabbox-media-'))
    video = join(dir, 'screen.mp4')
    stillMotionStill(video, { head: 2, motion: 2, tail: 2 }, FPS)
    home = cliHome()
  })

  it('cuts the still head and tail: the trimmed MP4 is the motion window within one frame, and the GIF is written', async () => {
    const gif = join(dir, 'tight.gif')
    const mp4 = join(dir, 'tight.mp4')
    const result = await cli([
      'media',
      'preview',
      '--input',
      video,
      '--output',
      gif,
      '--trimmed-video-output',
      mp4,
      '--trim-padding',
      '0s',
      '--width',
      '160',
      '--json',
    ])
    expect(result.code, result.stderr).toBe(0)
    const out = JSON.parse(result.stdout)
    expect(out.window.trimmed).toBe(true)
    expect(Math.abs(out.window.start - 2)).toBeLessThanOrEqual(FRAME)
    expect(Math.abs(out.window.end - 4)).toBeLessThanOrEqual(FRAME)
    expect(readFileSync(gif).subarray(0, 6).toString('latin1')).toBe('GIF89a')
    expect(out.bytes).toBe(readFileSync(gif).length)
    const trimmed = probe(mp4)
    expect(Math.abs(trimmed.duration - 2)).toBeLessThanOrEqual(FRAME)
    expect(Math.abs(trimmed.frames - 2 * FPS)).toBeLessThanOrEqual(1)
    expect(trimmed.width).toBe(320)
  })

  it('keeps the padding by default, and artifacts gif is the same command', async () => {
    const mp4 = join(dir, 'padded.mp4')
    const result = await cli(['artifacts', 'gif', '--input', video, '--trimmed-video-output', mp4])
    expect(result.code, result.stderr).toBe(0)
    // Default output: the input's name with .gif; default padding 750ms each side.
    expect(result.stdout).toContain(`${join(dir, 'screen.gif')} 640px 4fps`)
    expect(result.stdout).toMatch(/kept 1\.2\d\ds–4\.7\d\ds of 6\.000s/)
    expect(existsSync(join(dir, 'screen.gif'))).toBe(true)
    expect(Math.abs(probe(mp4).duration - 3.5)).toBeLessThanOrEqual(FRAME)
  })

  it('keeps the whole video with --no-trim-static, and when nothing moves', async () => {
    const whole = await cli(['media', 'preview', '--input', video, '--output', join(dir, 'whole.gif'), '--no-trim-static', '--json'])
    expect(whole.code, whole.stderr).toBe(0)
    expect(JSON.parse(whole.stdout).window).toEqual({ start: 0, end: 6, trimmed: false, reason: 'trim-disabled' })
    const still = join(dir, 'still.mp4')
    stillVideo(still, 3, FPS)
    const mp4 = join(dir, 'still-out.mp4')
    const result = await cli(['media', 'preview', '--input', still, '--trimmed-video-output', mp4, '--json'])
    expect(result.code, result.stderr).toBe(0)
    expect(JSON.parse(result.stdout).window).toMatchObject({ trimmed: false, reason: 'no-motion' })
    expect(Math.abs(probe(mp4).duration - 3)).toBeLessThanOrEqual(FRAME)
  })

  it('a missing ffmpeg is exit 5 naming what to install; a missing input is exit 4; bad flags are exit 2', async () => {
    // An empty PATH folder: no ffmpeg or ffprobe (the CLI itself is started by its full path).
    const missing = await cli(['media', 'preview', '--input', video], { PATH: mkdtempSync(join(tmpdir(), 'crabbox-empty-path-')) })
    expect(missing.code).toBe(5)
    expect(missing.stderr).toMatch(/ffprobe is not installed/)
    expect(missing.stderr).toContain('apt-get install -y ffmpeg')
    const none = await cli(['media', 'preview', '--input', join(dir, 'nope.mp4')])
    expect(none.code).toBe(4)
    const noise = await cli(['media', 'preview', '--input', video, '--freeze-noise', 'loud'])
    expect(noise.code).toBe(2)
    expect(noise.stderr).toContain('--freeze-noise')
    const padding = await cli(['media', 'preview', '--input', video, '--trim-padding', 'soon'])
    expect(padding.code).toBe(2)
  })
})
