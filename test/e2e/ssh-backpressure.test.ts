import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { sleep } from '../support/fixtures.js'
import { rssMiB } from '../support/processes.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'

describe('crabbox ssh output into a slow reader', () => {
  let host: SshHost
  const homes: CliHome[] = []
  beforeAll(async () => {
    host = await sshHost({ ports: [22] })
  })
  afterEach(async () => {
    await Promise.all(homes.splice(0).map((h) => runCli(['agent', 'stop'], { home: h })))
  })
  afterAll(async () => {
    await host?.stop()
  })

  // 384 MiB from a remote that writes as fast as it can, while our reader takes nothing.
  const SIZE = 384 * 1024 * 1024
  for (const agent of [true, false]) {
    it(`holds the remote back instead of buffering it (${agent ? 'through the agent' : 'in-process'}), and loses nothing`, async () => {
      const h = cliHome()
      h.env = { ...h.env, CRABBOX_SSH_KEY: host.privateKeyPath, ...(agent ? {} : { CRABBOX_NO_AGENT: '1' }) }
      homes.push(h)
      const child = spawnCli(['ssh', '--provider', 'ssh', '--static-host', host.address, '--', `head -c ${SIZE} /dev/zero`], { home: h })
      child.stdin!.end()
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
      let received = 0
      child.stdout!.on('data', (d: Buffer) => (received += d.length))
      // Take the first bytes, then stop reading for a while.
      await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()))
      child.stdout!.pause()
      await sleep(3000)
      const cli = rssMiB(child.pid!)
      const status = agent ? JSON.parse((await runCli(['agent', 'status', '--json'], { home: h })).stdout) : undefined
      const agentRss = status ? rssMiB(status.pid) : 0
      // Far below the 384 MiB the remote would have sent by now without backpressure.
      expect(cli).toBeLessThan(200)
      expect(agentRss).toBeLessThan(200)
      child.stdout!.resume()
      expect(await exited).toBe(0)
      expect(received).toBe(SIZE)
    })
  }
})
