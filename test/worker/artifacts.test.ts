import { env, SELF } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { workerTestBindings } from './fixtures/bindings.js'
import { api, nobody, shared, userToken } from './broker-support.js'
import { getPage } from './portal-support.js'
import { createRun } from './runs-support.js'

const peter = shared('peter@example.com')

const grant = (body: unknown, who = peter) => api(who, 'POST', '/v1/artifacts/uploads', body)

async function put(upload: { url: string; headers: Record<string, string> }, body: Uint8Array | string): Promise<Response> {
  return SELF.fetch(upload.url, { method: 'PUT', headers: upload.headers, body })
}

describe('artifact upload grants', () => {
  it('answers the grant shape: owner prefix, signed PUT with the exact headers, a read URL', async () => {
    const result = await grant({
      prefix: 'pr-42',
      files: [{ name: 'screenshots/after.png', size: 5, contentType: 'image/png', sha256: 'a'.repeat(64) }],
    })
    expect(result.status).toBe(201)
    const body = result.body
    expect(body).toMatchObject({ backend: 'r2', bucket: 'crabbox-artifacts', prefix: 'crabbox-artifacts/peter@example.com/pr-42' })
    expect(Date.parse(body.expiresAt)).toBeGreaterThan(Date.now())
    const [file] = body.files
    expect(file.name).toBe('screenshots/after.png')
    expect(file.key).toBe('crabbox-artifacts/peter@example.com/pr-42/screenshots/after.png')
    expect(file.upload).toMatchObject({ method: 'PUT', headers: { 'content-type': 'image/png', 'content-length': '5' } })
    expect(file.upload.url).toMatch(
      /^https:\/\/broker\.test\/v1\/artifacts\/objects\/crabbox-artifacts\/peter%40example\.com\/pr-42\/screenshots\/after\.png\?expires=\d+&ns=claimed&signature=/,
    )
    expect(file.url).toMatch(/^https:\/\/broker\.test\/v1\/artifacts\/objects\/.*after\.png\?expires=\d+&signature=/)
    expect(result.text).not.toContain(workerTestBindings.CRABBOX_SESSION_SECRET)
  })

  it('stores the upload in R2 and serves it back byte for byte, sandboxed', async () => {
    const bytes = new Uint8Array(70_000).map((_, i) => (i * 31) % 256)
    const { body } = await grant({ files: [{ name: 'video/run.bin', size: bytes.byteLength }] })
    const [file] = body.files
    expect((await put(file.upload, bytes)).status).toBe(200)
    const stored = await (env.ARTIFACTS as R2Bucket).get(file.key)
    expect(new Uint8Array(await stored!.arrayBuffer())).toEqual(bytes)
    const read = await SELF.fetch(file.url)
    expect(read.status).toBe(200)
    expect(read.headers.get('content-type')).toBe('application/octet-stream')
    expect(read.headers.get('content-security-policy')).toBe('sandbox')
    expect(new Uint8Array(await read.arrayBuffer())).toEqual(bytes)
  })

  it('refuses an upload of another size or type, a changed key, a bad signature and a read with the upload link', async () => {
    const { body } = await grant({ files: [{ name: 'a.txt', size: 3, contentType: 'text/plain' }] })
    const [file] = body.files
    expect((await put({ ...file.upload, headers: { ...file.upload.headers, 'content-length': '4' } }, 'abcd')).status).toBe(403)
    // A body that runs past the length it declares (and was signed for) is cut off, never stored.
    const lying = await put(file.upload, 'abcd')
    expect(lying.status).toBe(400)
    expect(await lying.json()).toMatchObject({ error: 'invalid_request' })
    expect((await SELF.fetch(file.upload.url, { method: 'PUT', headers: { 'content-type': 'text/html' }, body: 'abc' })).status).toBe(403)
    expect((await put({ ...file.upload, url: file.upload.url.replace('a.txt', 'b.txt') }, 'abc')).status).toBe(403)
    expect((await put({ ...file.upload, url: file.upload.url.replace(/signature=.{4}/, 'signature=AAAA') }, 'abc')).status).toBe(403)
    expect((await SELF.fetch(file.upload.url)).status).toBe(403)
    expect(await (env.ARTIFACTS as R2Bucket).head(file.key)).toBeNull()
    expect((await put(file.upload, 'abc')).status).toBe(200)
  })

  it('refuses an expired link', async () => {
    const { body } = await grant({ files: [{ name: 'old.txt', size: 1 }] })
    const url = new URL(body.files[0].upload.url)
    url.searchParams.set('expires', String(Math.floor(Date.now() / 1000) - 10))
    expect((await put({ ...body.files[0].upload, url: url.toString() }, 'x')).status).toBe(403)
  })

  it('normalizes names and refuses escapes, too many bytes and bad bodies with artifact_upload_unavailable', async () => {
    const ok = await grant({ prefix: '/qa//x/', files: [{ name: '\\logs\\run.txt', size: 1 }] })
    expect(ok.body.files[0].key).toBe('crabbox-artifacts/peter@example.com/qa/x/logs/run.txt')
    for (const name of ['../etc/passwd', 'a/../b', 'a//b', '.', '', 'a\n1\n2']) {
      const refused = await grant({ files: [{ name, size: 1 }] })
      expect(refused.status, name).toBe(400)
      expect(refused.body.error, name).toBe('artifact_upload_unavailable')
    }
    const big = await grant({ files: Array.from({ length: 6 }, (_, i) => ({ name: `f${i}`, size: 1024 ** 3 })) })
    expect(big.body).toEqual({
      error: 'artifact_upload_unavailable',
      message: 'artifacts upload request supports at most 5368709120 bytes',
    })
    expect((await grant({ files: [] })).body.error).toBe('artifact_upload_unavailable')
    expect((await grant({ prefix: '../up', files: [{ name: 'a', size: 1 }] })).body.error).toBe('artifact_upload_unavailable')
    expect((await grant({ files: [{ name: 'a', size: 1024 ** 3 + 1 }] })).status).toBe(400)
    expect((await grant({ files: [{ name: 'a', size: 1, contentType: 'text/plain\n9999999999' }] })).body.error).toBe(
      'artifact_upload_unavailable',
    )
  })

  it('keeps a key to the identity namespace that first wrote it: a claimed owner cannot overwrite a verified one', async () => {
    const verified = { kind: 'user' as const, token: await userToken({ owner: 'vera@example.com', org: 'openclaw', login: 'vera' }) }
    const claimed = shared('vera@example.com')
    const mine = await grant({ prefix: 'pr-1', files: [{ name: 'shot.png', size: 3 }] }, verified)
    const theirs = await grant({ prefix: 'pr-1', files: [{ name: 'shot.png', size: 3 }] }, claimed)
    expect(theirs.body.files[0].key).toBe(mine.body.files[0].key)
    expect((await put(mine.body.files[0].upload, 'abc')).status).toBe(200)
    expect((await put(theirs.body.files[0].upload, 'bad')).status).toBe(403)
    // The namespace is signed: swapping it in the URL breaks the signature.
    const swapped = theirs.body.files[0].upload.url.replace('ns=claimed', 'ns=verified')
    expect((await put({ ...theirs.body.files[0].upload, url: swapped }, 'bad')).status).toBe(403)
    expect(await (await SELF.fetch(mine.body.files[0].url)).text()).toBe('abc')
    // The same namespace may replace its own file.
    const again = await grant({ prefix: 'pr-1', files: [{ name: 'shot.png', size: 3 }] }, verified)
    expect((await put(again.body.files[0].upload, 'new')).status).toBe(200)
  })

  it('needs a credential for grants', async () => {
    expect((await grant({ files: [{ name: 'a', size: 1 }] }, nobody)).status).toBe(401)
  })
})

describe("a run's artifacts", () => {
  const stranger = shared('stranger@example.com', 'elsewhere')

  it('are granted only on a run the caller can see, listed on its page, opened only by those who see the run', async () => {
    const run = await createRun(peter)
    const bytes = new TextEncoder().encode('<html><script>alert(1)</script></html>')
    const refused = await grant({ run: run.id, files: [{ name: 'x.html', size: bytes.byteLength }] }, stranger)
    expect(refused.status).toBe(404)

    const { status, body } = await grant({
      run: run.id,
      prefix: 'qa',
      files: [{ name: 'report/x.html', size: bytes.byteLength, contentType: 'text/html' }],
    })
    expect(status).toBe(201)
    const [file] = body.files
    expect(file.url).toBe(`https://broker.test/portal/runs/${run.id}/artifact?name=report%2Fx.html`)
    expect((await put(file.upload, bytes)).status).toBe(200)

    const page = await getPage(peter, `/portal/runs/${run.id}`)
    expect(page.status).toBe(200)
    expect(page.text).toContain('Artifacts')
    expect(page.text).toContain(`/portal/runs/${run.id}/artifact?name=report%2Fx.html`)

    const path = new URL(file.url).pathname + new URL(file.url).search
    const opened = await getPage(peter, path)
    expect(opened.status).toBe(200)
    expect(opened.text).toBe(new TextDecoder().decode(bytes))
    expect(opened.headers.get('content-type')).toBe('text/html')
    expect(opened.headers.get('content-security-policy')).toContain('sandbox')
    expect(opened.headers.get('x-content-type-options')).toBe('nosniff')

    expect((await getPage(stranger, path)).status).toBe(404)
    expect((await getPage(stranger, `/portal/runs/${run.id}`)).text).not.toContain('report/x.html')
    expect((await getPage(peter, `/portal/runs/${run.id}/artifact?name=other.txt`)).status).toBe(404)
  })
})
