import { rmSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { gitRepo, sleep } from '../support/fixtures.js'
import { processesMatching, rssMiB } from '../support/processes.js'

// Names the endless remote command of the closed-reader test, so cleanup finds it.
const MARK = `crabbox-epipe-${process.pid}`
/** Processes whose command line mentions `needle` (the local runner and what it started). */
const processesMentioning = (needle: string) => processesMatching((p) => p.cmdline.includes(needle))

describe('crabbox run output into a slow reader', () => {
  const env = { CRABBOX_NO_AGENT: '1', NODE_EXTRA_CA_CERTS: undefined }
  let home: CliHome | undefined
  let repo: string | undefined
  afterAll(() => {
    if (home) {
      for (const pid of [...processesMentioning(home.dir), ...processesMentioning(MARK)]) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
      rmSync(home.dir, { recursive: true, force: true })
    }
    if (repo) rmSync(repo, { recursive: true, force: true })
  })

  // 300 MiB from a remote that writes as fast as it can, while our reader takes nothing.
  const SIZE = 300 * 1024 * 1024
  it('holds the remote command back instead of buffering its output, and loses nothing', async () => {
    home = cliHome()
    repo = gitRepo()
    const child = spawnCli(['run', '--', 'head', '-c', String(SIZE), '/dev/zero'], {
      home,
      cwd: repo,
      env,
    })
    child.stdin!.end()
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    let received = 0
    child.stdout!.on('data', (d: Buffer) => (received += d.length))
    // Take the first bytes, then stop reading for a while.
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()))
    child.stdout!.pause()
    await sleep(3000)
    // Far below the 300 MiB the remote would have sent by now without backpressure.
    expect(rssMiB(child.pid!)).toBeLessThan(200)
    expect(received).toBeLessThan(SIZE)
    child.stdout!.resume()
    expect(await exited, stderr).toBe(0)
    expect(received).toBe(SIZE)
  })
  it('a reader that goes away stops the remote command, releases the lease and exits 141 (SIGPIPE)', async () => {
    home ??= cliHome()
    repo ??= gitRepo()
    const child = spawnCli(['run', '--no-sync', '--', 'sh', '-c', `exec yes ${MARK}`], { home, cwd: repo, env })
    child.stdin!.end()
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()))
    child.stdout!.destroy()
    expect(await exited, stderr).toBe(141)
    expect(processesMentioning(MARK)).toEqual([])
    const list = await runCli(['list', '--json'], { home, cwd: repo, env })
    expect(JSON.parse(list.stdout)).toEqual([])
  })
})
