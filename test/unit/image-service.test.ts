import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defaultConfig } from '../../src/config/schema.js'
import { CrabboxError } from '../../src/errors.js'
import { createImage, promoteImage } from '../../src/services/image.js'
import type { ServiceContext } from '../../src/services/context.js'
import { createProgress } from '../../src/ui/progress.js'

// A plain HTTP server plays the broker's image routes; the service and its client are real.
let server: Server
let url: string
let states: string[] = []
const requests: Array<{ method: string; path: string; authorization?: string }> = []

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const path = new URL(req.url!, 'http://x').pathname
      requests.push({ method: req.method!, path, authorization: req.headers.authorization })
      const image = (state: string) => ({ image: { id: 'ami-0123456789abcdef0', name: 'img', state, region: 'eu-west-1' } })
      const json = (status: number, data: unknown) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(data))
      if (req.method === 'POST' && path === '/v1/images') return json(201, image('pending'))
      if (req.method === 'GET' && path === '/v1/images/ami-0123456789abcdef0') return json(200, image(states.shift() ?? 'pending'))
      return json(404, { error: 'not_found' })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

function context(broker: Partial<ReturnType<typeof defaultConfig>['broker']> = {}): ServiceContext {
  const config = defaultConfig()
  config.broker = { url, token: 'user-token', ...broker }
  config.provider = 'broker'
  return { config, progress: createProgress({ quiet: true, env: {} }), json: true, cwd: process.cwd() }
}
const options = { lease: 'cbx_0123456789ab', name: 'img', noReboot: true, wait: true, waitTimeoutMs: 60_000, pollMs: 1 }
const failure = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error as CrabboxError,
  )

describe('image service', () => {
  it('--wait polls until available, with the user token when no admin token is set', async () => {
    states = ['pending', 'available']
    requests.length = 0
    const image = await createImage(context(), options)
    expect(image.state).toBe('available')
    expect(requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'POST /v1/images',
      'GET /v1/images/ami-0123456789abcdef0',
      'GET /v1/images/ami-0123456789abcdef0',
    ])
    expect(requests.every((r) => r.authorization === 'Bearer user-token')).toBe(true)
  })

  it('a failed image is exit 5; the admin token is sent when set', async () => {
    states = ['pending', 'failed']
    requests.length = 0
    const error = await failure(createImage(context({ adminToken: 'admin-token' }), options))
    expect(error).toBeInstanceOf(CrabboxError)
    expect(error!.exitCode).toBe(5)
    expect(error!.message).toBe('image ami-0123456789abcdef0 is failed')
    expect(requests[0].authorization).toBe('Bearer admin-token')
  })

  it('--wait-timeout passing first is exit 1 pointing at promote later', async () => {
    states = []
    const error = await failure(createImage(context(), { ...options, waitTimeoutMs: 0 }))
    expect(error!.exitCode).toBe(1)
    expect(error!.hint).toContain('crabbox image promote ami-0123456789abcdef0')
  })

  it('bad names and AMI IDs are exit 2 before any request; promote without the admin token is exit 3', async () => {
    requests.length = 0
    expect((await failure(createImage(context(), { ...options, name: 'no' })))!.exitCode).toBe(2)
    expect((await failure(promoteImage(context({ adminToken: 'a' }), 'ami-xyz')))!.exitCode).toBe(2)
    const noAdmin = await failure(promoteImage(context(), 'ami-0123456789abcdef0'))
    expect(noAdmin!.exitCode).toBe(3)
    expect(noAdmin!.message).toContain('broker.adminToken')
    expect(requests).toEqual([])
  })
})
