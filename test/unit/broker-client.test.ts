import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import * as v from 'valibot'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defaultConfig } from '../../src/config/schema.js'
import { accessAuth, BrokerError, brokerClient, createBrokerClient } from '../../src/transport/broker/client.js'

// A plain HTTP server stands in for the far side of the wire; the client under test is real.
let server: Server
let url: string
let seen: { method?: string; url?: string; headers?: IncomingHttpHeaders; body?: string } = {}

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = ''
    req.on('data', (chunk) => (body += chunk))
    req.on('end', () => {
      seen = { method: req.method, url: req.url, headers: req.headers, body }
      const path = new URL(req.url!, 'http://x').pathname
      const json = (status: number, data: unknown) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(data))
      if (path === '/v1/whoami') return json(200, { owner: 'me@example.com', org: 'acme', auth: 'bearer' })
      if (path === '/v1/denied') return json(401, { error: 'unauthorized' })
      if (path === '/v1/admin/x') return json(403, { error: 'forbidden', message: 'admin token required' })
      if (path === '/v1/logs') return res.writeHead(200, { 'content-type': 'text/plain' }).end('line 1\n')
      if (path === '/v1/html') return res.writeHead(502).end('<html>bad gateway</html>')
      // Cloudflare Access in front of the broker: an HTML 403, not the broker's JSON error.
      if (path === '/v1/behind-access')
        return req.headers['cf-access-client-id'] === 'id.access' && req.headers['cf-access-client-secret'] === 'shh'
          ? json(200, { owner: 'me@example.com', org: 'acme', auth: 'bearer' })
          : res.writeHead(403, { 'content-type': 'text/html' }).end('<html>Forbidden. Cloudflare Access</html>')
      return json(404, { error: 'not_found' })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

const Whoami = v.object({ owner: v.string(), org: v.string(), auth: v.string() })
const caught = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error as BrokerError,
  )

describe('broker client', () => {
  it('is absent without a broker URL', () => {
    expect(brokerClient(defaultConfig())).toBeUndefined()
  })

  it('sends the bearer token and identity headers, query and JSON body, and validates the reply', async () => {
    const client = createBrokerClient({ url, token: 'tok', owner: 'me@example.com', org: 'acme' })
    const who = await client.request('POST', '/v1/whoami', { body: { a: 1 }, query: { limit: 5, skip: undefined }, schema: Whoami })
    expect(who).toEqual({ owner: 'me@example.com', org: 'acme', auth: 'bearer' })
    expect(seen.url).toBe('/v1/whoami?limit=5')
    expect(seen.headers).toMatchObject({
      authorization: 'Bearer tok',
      'x-crabbox-owner': 'me@example.com',
      'x-crabbox-org': 'acme',
      'content-type': 'application/json',
    })
    expect(JSON.parse(seen.body!)).toEqual({ a: 1 })
    expect(client.authHeaders()).toEqual({ authorization: 'Bearer tok', 'x-crabbox-owner': 'me@example.com', 'x-crabbox-org': 'acme' })
    expect(await client.requestText('GET', '/v1/logs')).toBe('line 1\n')
  })

  it('maps 401 to exit 3 with a login hint and 404 to exit 4, keeping the broker code', async () => {
    const client = createBrokerClient({ url, token: 'bad' })
    const denied = await caught(client.request('GET', '/v1/denied'))
    expect(denied).toBeInstanceOf(BrokerError)
    expect(denied).toMatchObject({ status: 401, errorCode: 'unauthorized', exitCode: 3 })
    expect(denied!.hint).toContain('crabbox login')
    const missing = await caught(client.request('GET', '/v1/leases/cbx_000000000000'))
    expect(missing).toMatchObject({ status: 404, errorCode: 'not_found', exitCode: 4 })
    const gateway = await caught(client.request('GET', '/v1/html'))
    expect(gateway).toMatchObject({ status: 502, errorCode: 'http_502', exitCode: 1 })
  })

  it('refuses admin calls without an admin token and sends it when present', async () => {
    const without = await caught(createBrokerClient({ url, token: 't' }).request('GET', '/v1/admin/x', { admin: true }))
    expect(without).toMatchObject({ exitCode: 3 })
    const withToken = await caught(
      createBrokerClient({ url, token: 't', adminToken: 'adm' }).request('GET', '/v1/admin/x', { admin: true }),
    )
    expect(seen.headers?.authorization).toBe('Bearer adm')
    expect(withToken).toMatchObject({ status: 403, exitCode: 3 })
  })

  it('reports an unexpected reply shape', async () => {
    const error = await caught(
      createBrokerClient({ url }).request('GET', '/v1/whoami', { schema: v.object({ leases: v.array(v.string()) }) }),
    )
    expect(error).toMatchObject({ errorCode: 'invalid_reply', exitCode: 1 })
    expect(error!.message).toContain('leases')
  })

  it('a broker that cannot be reached is exit 1 naming the URL and pointing at doctor', async () => {
    const probe = createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const port = (probe.address() as AddressInfo).port
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    const error = await caught(createBrokerClient({ url: `http://127.0.0.1:${port}` }).request('GET', '/v1/health'))
    expect(error).toMatchObject({ status: 0, errorCode: 'network', exitCode: 1 })
    expect(error!.message).toContain(`http://127.0.0.1:${port}/v1/health`)
    expect(error!.hint).toContain('crabbox doctor')
  })

  it('sends the Cloudflare Access service token as a pair and the Access token, on requests and the socket headers', async () => {
    const client = createBrokerClient({ url, token: 'tok', access: { clientId: 'id.access', clientSecret: 'shh', token: 'jwt' } })
    expect(await client.request('GET', '/v1/behind-access', { schema: Whoami })).toMatchObject({ owner: 'me@example.com' })
    expect(seen.headers).toMatchObject({ 'cf-access-client-id': 'id.access', 'cf-access-client-secret': 'shh', 'cf-access-token': 'jwt' })
    expect(client.authHeaders()).toMatchObject({
      'cf-access-client-id': 'id.access',
      'cf-access-client-secret': 'shh',
      'cf-access-token': 'jwt',
    })
    // Half a service token is never sent.
    const half = createBrokerClient({ url, access: { clientId: 'id.access' } })
    expect(Object.keys(half.authHeaders()).filter((name) => name.startsWith('cf-access'))).toEqual([])
    expect([
      accessAuth(undefined),
      accessAuth({ clientId: 'a' }),
      accessAuth({ clientId: 'a', clientSecret: 'b' }),
      accessAuth({ token: 't' }),
    ]).toEqual(['missing', 'incomplete', 'service-token', 'token'])
    expect(accessAuth({ clientId: 'a', clientSecret: 'b', token: 't' })).toBe('service-token+token')
  })

  it('an HTML 403 from Access in front of the broker is exit 3 saying Access credentials are needed and which settings', async () => {
    const error = await caught(createBrokerClient({ url }).request('GET', '/v1/behind-access'))
    expect(error).toBeInstanceOf(BrokerError)
    expect(error!.exitCode).toBe(3)
    expect(error!.errorCode).toBe('access_denied')
    expect(error!.message).toContain('Access credentials are needed')
    expect(error!.hint).toContain('broker.access.clientId')
    expect(error!.hint).toContain('CRABBOX_ACCESS_TOKEN')
    const wrong = await caught(
      createBrokerClient({ url, access: { clientId: 'id.access', clientSecret: 'wrong' } }).request('GET', '/v1/behind-access'),
    )
    expect(wrong!.message).toContain('were not accepted')
    expect(wrong!.message).not.toContain('wrong')
    // The broker's own 403 stays the broker's answer.
    const admin = await caught(createBrokerClient({ url, adminToken: 'a' }).request('GET', '/v1/admin/x', { admin: true }))
    expect(admin!.errorCode).toBe('forbidden')
  })
})
