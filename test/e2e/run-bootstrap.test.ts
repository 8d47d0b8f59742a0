import { existsSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { freePort } from '../support/broker.js'
import { cliHome, runCli } from '../support/cli.js'

const home = cliHome()
afterAll(() => rmSync(home.dir, { recursive: true, force: true }))

/** An SSH host that never answers: a loopback port nothing listens on. */
async function deadHost() {
  const port = await freePort()
  return {
    CRABBOX_PROVIDER: 'ssh',
    CRABBOX_STATIC_HOST: '127.0.0.1',
    CRABBOX_STATIC_PORT: String(port),
    CRABBOX_SSH_KEY: join(home.dir, 'no-key'),
    CRABBOX_NO_AGENT: '1',
    NODE_EXTRA_CA_CERTS: undefined,
  }
}
const claims = () =>
  existsSync(join(home.env.XDG_STATE_HOME, 'crabbox', 'claims')) ? readdirSync(join(home.env.XDG_STATE_HOME, 'crabbox', 'claims')) : []

describe('crabbox run when the runner never reaches SSH', () => {
  it('retries a fresh, non-kept lease once on a new machine, never runs the command, and leaves no lease', async () => {
    const result = await runCli(['run', '--bootstrap-timeout', '2s', '--', 'sh', '-c', 'echo ran'], { home, env: await deadHost() })
    expect(result.code).toBe(5)
    expect(result.stdout).toBe('')
    expect(result.stderr.match(/retrying once on a new machine/g)).toHaveLength(1)
    expect(result.stderr).toMatch(/timed out waiting for SSH/)
    expect(claims()).toEqual([])
  })

  it('does not retry a kept lease', async () => {
    const result = await runCli(['run', '--keep', '--bootstrap-timeout', '2s', '--', 'true'], { home, env: await deadHost() })
    expect(result.code).toBe(5)
    expect(result.stderr).not.toMatch(/retrying/)
    expect(claims()).toEqual([])
  })

  it('a bad --bootstrap-timeout is a usage error', async () => {
    const result = await runCli(['run', '--bootstrap-timeout', 'soon', '--', 'true'], { home, env: await deadHost() })
    expect(result.code).toBe(2)
  })
})
