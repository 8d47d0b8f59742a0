import { createHash } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { desktopHost, type DesktopHost } from '../support/desktop-host.js'
import { probe } from '../support/media.js'

/**
 * `artifacts collect` and `artifacts video` against a runner with a real X
 * server (test/support/desktop-host.ts), reached as a declared static desktop
 * host: ffmpeg records on the runner, the GIF is made here. Both use this
 * machine's ffmpeg (the test host shares its filesystem).
 */

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

describe('artifacts collect on a desktop host', () => {
  let host: DesktopHost
  let home: CliHome
  const at = () => ['--provider', 'ssh', '--static-host', host.address, '--static-port', '22']
  const cli = (args: string[]) => runCli(args, { home, cwd: home.dir, timeoutMs: 120_000 })

  beforeAll(async () => {
    host = await desktopHost({ name: 'artifacts' })
    home = cliHome()
    home.env = { ...home.env, CRABBOX_SSH_KEY: host.privateKeyPath, CRABBOX_STATIC_DESKTOP: '1' }
    // Something that moves on the display while the video records.
    await host.onDisplay(
      `setsid nohup xterm -geometry 60x10+20+20 -e sh -c 'while :; do date +%N; sleep 0.05; done' >/dev/null 2>&1 </dev/null & exit 0`,
    )
  }, 60_000)
  afterAll(async () => {
    if (home) await runCli(['agent', 'stop'], { home })
    await host?.stop()
  })

  it('--screenshot --video --gif: one folder, every file in metadata.json with its size and hash', async () => {
    const output = join(home.dir, 'evidence')
    const result = await cli([
      'artifacts',
      'collect',
      ...at(),
      '--screenshot',
      '--video',
      '--gif',
      '--duration',
      '2s',
      '--output',
      output,
      '--json',
    ])
    expect(result.code, result.stderr).toBe(0)
    const out = JSON.parse(result.stdout)
    expect(out.warnings).toEqual([])
    // No broker here: the WebVNC status does not apply.
    expect(out.skipped).toEqual(['webvnc-status: no broker is configured'])
    const names = ['doctor.json', 'screenshot.png', 'screen.mp4', 'screen.gif', 'screen-trimmed.mp4']
    expect(out.files.map((f: { name: string }) => f.name)).toEqual(names)
    expect(readdirSync(output).sort()).toEqual([...names, 'metadata.json'].sort())
    const manifest = JSON.parse(readFileSync(join(output, 'metadata.json'), 'utf8'))
    expect(manifest.lease).toMatchObject({ id: expect.any(String), provider: 'ssh' })
    expect(manifest.run).toBeNull()
    for (const file of manifest.files) {
      const data = readFileSync(join(output, file.name))
      expect(file).toEqual({ name: file.name, size: data.length, sha256: sha256(data) })
    }
    expect(readFileSync(join(output, 'screenshot.png')).subarray(1, 4).toString('latin1')).toBe('PNG')
    expect(readFileSync(join(output, 'screen.gif')).subarray(0, 6).toString('latin1')).toBe('GIF89a')
    const video = probe(join(output, 'screen.mp4'))
    expect(video.width).toBe(1280)
    expect(video.duration).toBeGreaterThan(1.5)
    expect(video.duration).toBeLessThan(2.5)
    expect(
      JSON.parse(readFileSync(join(output, 'doctor.json'), 'utf8')).checks.find((c: { layer: string }) => c.layer === 'x-server'),
    ).toMatchObject({
      status: 'ok',
    })
  })

  it('artifacts video writes an MP4 of the display', async () => {
    const output = join(home.dir, 'screen.mp4')
    const result = await cli(['artifacts', 'video', ...at(), '--duration', '1s', '--fps', '10', '--output', output])
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toMatch(new RegExp(`^${output} 1s 10fps \\d+ bytes`))
    expect(probe(output).width).toBe(1280)
  })

  it('no X server: the video is exit 5 with problem/rescue lines, and the folder and manifest are still written', async () => {
    await host.stopLayer('xvfb')
    try {
      const output = join(home.dir, 'broken')
      const result = await cli([
        'artifacts',
        'collect',
        ...at(),
        '--no-screenshot',
        '--video',
        '--duration',
        '1s',
        '--output',
        output,
        '--json',
      ])
      expect(result.code).toBe(5)
      const out = JSON.parse(result.stdout)
      expect(out.warnings[0]).toMatchObject({ item: 'video', layer: 'x-server', problem: 'no X server answers on :99', exitCode: 5 })
      expect(out.warnings[0].rescue).toContain(`crabbox desktop doctor --id ${out.lease.slug}`)
      const manifest = JSON.parse(readFileSync(join(output, 'metadata.json'), 'utf8'))
      expect(manifest.files.map((f: { name: string }) => f.name)).toEqual(['doctor.json'])
      expect(manifest.warnings).toEqual(out.warnings)
    } finally {
      await host.startLayer('xvfb')
    }
  })
})
