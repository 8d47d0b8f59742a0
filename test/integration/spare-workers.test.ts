import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { SpareWorkers } from '../../src/transport/ssh/agent-spare.js'
import { sleep, until } from '../support/fixtures.js'

/*
 * When the agent replaces the spare workers commands took (src/transport/ssh/agent-spare.ts),
 * with real worker processes of a stand-in build: a worker listens, says ready, and on a
 * connection takes the "command" (it leaves the agent, as src/warm-worker.ts does) until its
 * client writes to it. A command that leaves a spare behind starts no replacement beside it;
 * the replacements start once a command ended; one that takes the last spare starts one at once.
 */
const STAND_IN = `import { rmSync } from 'node:fs'
import { createServer } from 'node:net'
export function warmWorker(socketPath) {
  let taken = false
  const server = createServer((socket) => {
    taken = true
    server.close()
    rmSync(socketPath, { force: true })
    process.disconnect()
    socket.on('data', () => process.exit(0))
    socket.on('close', () => process.exit(0))
  })
  process.on('disconnect', () => taken || process.exit(0))
  server.listen(socketPath, () => process.send('ready'))
}
`

/** Longer than the agent waits after the last command before it replaces spares. */
const QUIET_ENOUGH_MS = 500

describe("the agent's spare workers", () => {
  const cleanups: Array<() => void> = []
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup()
  })

  function spareDir() {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-spares-'))
    const build = join(dir, 'stand-in.mjs')
    writeFileSync(build, STAND_IN)
    const spares = new SpareWorkers(dir, () => {}, build)
    const clients: Socket[] = []
    cleanups.push(() => {
      spares.stop()
      for (const client of clients) client.destroy()
      rmSync(dir, { recursive: true, force: true })
    })
    const listening = () =>
      readdirSync(dir)
        .filter((name) => /^spare-\d+\.sock$/.test(name))
        .sort()
    /** Takes a spare as a thin client does; writing to the returned socket ends its command. */
    const take = async (name: string) => {
      const client = connect(join(dir, name))
      clients.push(client)
      await new Promise((resolve) => client.once('connect', resolve))
      await until(`${name} taken`, () => !listening().includes(name))
      return client
    }
    return { spares, listening, take }
  }

  it('replace taken spares once a command ended, the last one taken at once', async () => {
    const { spares, listening, take } = spareDir()
    spares.warm()
    await until('two spares', () => listening().length === 2)
    expect(listening()).toEqual(['spare-0.sock', 'spare-1.sock'])

    const first = await take('spare-0.sock')
    await sleep(QUIET_ENOUGH_MS)
    expect(listening()).toEqual(['spare-1.sock'])

    const second = await take('spare-1.sock')
    await until('a spare started at once', () => listening().includes('spare-2.sock'), 20_000)
    await sleep(QUIET_ENOUGH_MS)
    expect(listening()).toEqual(['spare-2.sock'])

    // A command ended: the spares taken are replaced, the other command still running.
    first.write('done')
    await until('two spares again', () => listening().length === 2)
    expect(listening()).toEqual(['spare-2.sock', 'spare-3.sock'])

    second.write('done')
    await sleep(QUIET_ENOUGH_MS)
    expect(listening()).toEqual(['spare-2.sock', 'spare-3.sock'])
  })

  it('a command on the agent lane holds a replacement back until it ended', async () => {
    const { spares, listening, take } = spareDir()
    spares.warm()
    await until('two spares', () => listening().length === 2)
    const taken = await take('spare-0.sock')
    // The command ends and the next one, on the lane, comes before the replacement would start.
    taken.write('done')
    spares.laneStarted()
    await sleep(QUIET_ENOUGH_MS)
    expect(listening()).toEqual(['spare-1.sock'])
    spares.laneEnded()
    await until('two spares again', () => listening().length === 2)
    expect(listening()).toEqual(['spare-1.sock', 'spare-2.sock'])
  })
})
