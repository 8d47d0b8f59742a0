import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { CrabboxError } from '../../src/errors.js'
import { daytonaCredentials, daytonaError, loadSdk } from '../../src/providers/daytona/client.js'
import { commandLine } from '../../src/providers/daytona/run.js'

const thrown = (call: () => unknown) => {
  try {
    call()
  } catch (error) {
    return error as CrabboxError
  }
  throw new Error('did not throw')
}

describe('daytona credentials', () => {
  it('take an API key (the CRABBOX_ name first), or a JWT with its organization', () => {
    expect(daytonaCredentials({ DAYTONA_API_KEY: 'a', CRABBOX_DAYTONA_API_KEY: 'b' })).toEqual({ apiKey: 'b' })
    expect(daytonaCredentials({ DAYTONA_JWT_TOKEN: 'j', DAYTONA_ORGANIZATION_ID: 'o' })).toEqual({ jwtToken: 'j', organizationId: 'o' })
  })

  it('missing ones are exit 3 naming the variable', () => {
    const none = thrown(() => daytonaCredentials({}))
    expect(none.message).toBe('DAYTONA_API_KEY is not set')
    expect(none.exitCode).toBe(3)
    const jwtOnly = thrown(() => daytonaCredentials({ DAYTONA_JWT_TOKEN: 'j' }))
    expect(jwtOnly.message).toMatch(/^DAYTONA_ORGANIZATION_ID is not set/)
    expect(jwtOnly.exitCode).toBe(3)
  })
})

describe('daytona errors and commands', () => {
  it("report Daytona's message, status and request ID; 401/403 are exit 3", () => {
    const error = daytonaError('list', { message: 'boom', statusCode: 500, headers: { 'x-request-id': 'req_1' } })
    expect(error.message).toBe('daytona list failed (HTTP 500): boom (request id req_1)')
    expect(error.exitCode).toBe(1)
    expect(daytonaError('create', { message: 'no', statusCode: 403 }, 'provisioning').exitCode).toBe(3)
    expect(daytonaError('create', { message: 'full' }, 'provisioning').exitCode).toBe(5)
  })

  it('quote each word unless --shell or a single word', () => {
    expect(commandLine(['printf', '%s|', 'a b', "it's", '$HOME'], false)).toBe(`printf '%s|' 'a b' 'it'\\''s' '$HOME'`)
    expect(commandLine(['echo $HOME && ls'], false)).toBe('echo $HOME && ls')
    expect(commandLine(['echo', '$HOME'], true)).toBe('echo $HOME')
  })
})

describe('daytona settings', () => {
  it('come from the daytona block and the variables, CRABBOX_DAYTONA_* before DAYTONA_*', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-daytona-'))
    try {
      writeFileSync(join(dir, 'crabbox.yaml'), 'provider: daytona\ndaytona:\n  snapshot: from-file\n  user: dev\n')
      const env = {
        HOME: dir,
        XDG_CONFIG_HOME: join(dir, 'config'),
        DAYTONA_TARGET: 'eu',
        DAYTONA_API_URL: 'http://a',
        CRABBOX_DAYTONA_API_URL: 'http://b',
        CRABBOX_DAYTONA_SSH_ACCESS_MINUTES: '12',
      }
      const { config } = await loadConfig({ cwd: dir, env, warn: () => {} })
      expect(config.provider).toBe('daytona')
      expect(config.daytona).toEqual({
        apiUrl: 'http://b',
        snapshot: 'from-file',
        target: 'eu',
        user: 'dev',
        workRoot: '/home/daytona/crabbox',
        sshGatewayHost: 'ssh.app.daytona.io',
        sshAccessMinutes: 12,
      })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('the Daytona SDK, an optional peer', () => {
  it('missing, it is exit 3 naming the install; any other load error is passed on', async () => {
    const missing = Object.assign(new Error("Cannot find package '@daytonaio/sdk'"), { code: 'ERR_MODULE_NOT_FOUND' })
    const refused = await loadSdk(() => Promise.reject(missing)).catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(CrabboxError)
    expect((refused as CrabboxError).exitCode).toBe(3)
    expect((refused as CrabboxError).hint).toContain('npm install -g @daytonaio/sdk@^0.218.0')
    const broken = new SyntaxError('Unexpected token')
    await expect(loadSdk(() => Promise.reject(broken))).rejects.toBe(broken)
    expect(typeof (await loadSdk()).Daytona).toBe('function')
  })
})
