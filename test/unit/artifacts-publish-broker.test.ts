import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listPublishFiles } from '../../src/services/artifacts/publish-files.js'
import { publishToBroker } from '../../src/services/artifacts/publish-storage.js'
import { createBrokerClient } from '../../src/transport/broker/client.js'
import { serveFake, type ServedFake } from '../support/fake-faults.js'

/**
 * Broker storage against a loopback stand-in for the grant route: requests are split at
 * 100 files, each PUT carries exactly the granted headers, and a grant for another size
 * than the file's is refused before anything is sent for it.
 */

let served: ServedFake
let dir: string
const grantRequests: { prefix?: string; run?: string; files: { name: string; size: number }[] }[] = []
const puts: { path: string; headers: Record<string, string>; bytes: number }[] = []
let lieAboutSize = false

beforeAll(async () => {
  served = await serveFake(async (request) => {
    const url = new URL(request.url)
    if (request.method === 'POST' && url.pathname === '/v1/artifacts/uploads') {
      const body = (await request.json()) as (typeof grantRequests)[number]
      grantRequests.push(body)
      const files = body.files.map((file) => ({
        name: file.name,
        key: `crabbox-artifacts/me/${body.prefix}/${file.name}`,
        upload: {
          method: 'PUT',
          url: `${url.origin}/put/${file.name}?signature=x`,
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(lieAboutSize ? file.size + 1 : file.size) },
          expiresAt: new Date(Date.now() + 900_000).toISOString(),
        },
        url: `${url.origin}/get/${file.name}`,
      }))
      return Response.json(
        { backend: 'r2', bucket: 'b', prefix: `crabbox-artifacts/me/${body.prefix}`, expiresAt: files[0]!.upload.expiresAt, files },
        { status: 201 },
      )
    }
    if (request.method === 'PUT') {
      const headers: Record<string, string> = {}
      request.headers.forEach((value, name) => (headers[name] = value))
      puts.push({ path: url.pathname, headers, bytes: (await request.arrayBuffer()).byteLength })
      return new Response(null, { status: 200 })
    }
    return new Response('no', { status: 404 })
  })
  dir = mkdtempSync(join(tmpdir(), 'crabbox-publish-broker-'))
  for (let i = 0; i < 150; i++) writeFileSync(join(dir, `f${String(i).padStart(3, '0')}.txt`), 'x'.repeat(i))
})
afterAll(async () => {
  await served?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('broker storage', () => {
  it('asks for grants 100 files at a time and PUTs each file with the granted headers', async () => {
    const client = createBrokerClient({ url: served.url, token: 't' })
    const files = await listPublishFiles(dir)
    const result = await publishToBroker(client, files, 'pr-1', { 'cf-access-token': 'access' }, 'run_0123456789ab')
    expect(grantRequests.map((r) => r.files.length)).toEqual([100, 50])
    expect(grantRequests.every((r) => r.run === 'run_0123456789ab' && r.prefix === 'pr-1')).toBe(true)
    expect(result.files).toHaveLength(150)
    expect(result.prefix).toBe('crabbox-artifacts/me/pr-1')
    expect(puts).toHaveLength(150)
    const f42 = puts.find((p) => p.path === '/put/f042.txt')!
    expect(f42).toMatchObject({
      bytes: 42,
      headers: { 'content-length': '42', 'content-type': 'application/octet-stream', 'cf-access-token': 'access' },
    })
    expect(f42.headers.authorization).toBeUndefined()
  })

  it('refuses a grant for another size than the file', async () => {
    lieAboutSize = true
    const before = puts.length
    const client = createBrokerClient({ url: served.url, token: 't' })
    const files = (await listPublishFiles(dir)).slice(0, 3)
    await expect(publishToBroker(client, files, 'pr-2')).rejects.toThrow(/another size than the file's 0 bytes/)
    expect(puts.length).toBe(before)
    lieAboutSize = false
  })
})
