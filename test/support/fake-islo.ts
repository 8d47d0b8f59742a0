/**
 * A fake Islo API on loopback, in the wire format crabbox's client speaks: bearer auth, JSON
 * sandboxes (`POST/GET/DELETE /sandboxes…`, `GET /sandboxes?limit&cursor` with `next_cursor`),
 * a gzipped tar `PUT /sandboxes/<name>/archive?path=` (extracted here with `tar`), and
 * `POST /sandboxes/<name>/exec/stream` answering server-sent events (`started`, `stdout`,
 * `stderr`, `exit`) while the command really runs here, in the sandbox's folder. Errors are
 * `{"error":{"message"}}` with an `x-request-id` header. Fault switches make it fail on purpose.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface IsloFaults {
  /** `POST /sandboxes` answers 422 with this message. */
  createError?: string
  /** The sandbox reports this status instead of `running` (e.g. `failed`). */
  status?: string
  /** The archive upload answers 500 (after the sandbox exists). */
  uploadError?: string
  /** The exec stream ends after the output without an `exit` event. */
  noExitEvent?: boolean
  /** Sandboxes per list page (pagination). */
  pageSize?: number
}

export interface FakeIslo {
  url: string
  key: string
  faults: IsloFaults
  calls: { method: string; path: string; body?: unknown }[]
  sandboxes: Map<string, { name: string; status: string; image: string; created_at: string; polls: number }>
  /** The folder standing in for a sandbox's filesystem root. */
  root(name: string): string
  close(): Promise<void>
}

const KEY = 'ak_fake_islo'

export async function startFakeIslo(): Promise<FakeIslo> {
  const dir = mkdtempSync(join(tmpdir(), 'fake-islo-'))
  const running = new Map<string, ChildProcess>()
  let requests = 0
  const fake: FakeIslo = {
    url: '',
    key: KEY,
    faults: {},
    calls: [],
    sandboxes: new Map(),
    root: (name) => join(dir, name),
    async close() {
      for (const child of running.values()) child.kill('SIGKILL')
      await new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  const readBody = async (req: IncomingMessage) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks)
  }
  const reply = (res: ServerResponse, status: number, body?: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': `req_${++requests}` })
    res.end(body === undefined ? '' : JSON.stringify(body))
  }
  const error = (res: ServerResponse, status: number, message: string) => reply(res, status, { error: { message } })

  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://fake')
      const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent)
      if (req.headers.authorization !== `Bearer ${KEY}`) return error(res, 401, 'invalid API key')
      const raw = req.method === 'PUT' ? undefined : await readBody(req)
      const body = raw && raw.length > 0 ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : undefined
      fake.calls.push({ method: req.method ?? '', path: url.pathname + url.search, ...(body && { body }) })
      if (parts[0] !== 'sandboxes') return error(res, 404, 'no such route')
      const [, name, action, execId, sub] = parts
      if (!name && req.method === 'POST') {
        if (fake.faults.createError) return error(res, 422, fake.faults.createError)
        const sandbox = {
          name: String(body?.name),
          status: 'starting',
          image: String(body?.image),
          created_at: new Date().toISOString(),
          polls: 0,
        }
        fake.sandboxes.set(sandbox.name, sandbox)
        mkdirSync(fake.root(sandbox.name), { recursive: true })
        return reply(res, 201, { name: sandbox.name, status: sandbox.status })
      }
      if (!name && req.method === 'GET') {
        const all = [...fake.sandboxes.values()].map(({ name: n, status, image, created_at }) => ({ name: n, status, image, created_at }))
        const size = fake.faults.pageSize ?? 100
        const start = Number(url.searchParams.get('cursor') ?? 0)
        const next = start + size < all.length ? String(start + size) : null
        return reply(res, 200, { items: all.slice(start, start + size), next_cursor: next })
      }
      const sandbox = name ? fake.sandboxes.get(name) : undefined
      if (!sandbox) return error(res, 404, `sandbox ${name} not found`)
      if (!action && req.method === 'GET') {
        // The first look finds it still starting, as a real one would be.
        sandbox.polls++
        if (sandbox.polls > 1) sandbox.status = fake.faults.status ?? 'running'
        return reply(res, 200, { name: sandbox.name, status: sandbox.status, image: sandbox.image, created_at: sandbox.created_at })
      }
      if (!action && req.method === 'DELETE') {
        fake.sandboxes.delete(sandbox.name)
        rmSync(fake.root(sandbox.name), { recursive: true, force: true })
        return reply(res, 204)
      }
      if (action === 'archive' && req.method === 'PUT') return upload(sandbox.name, url.searchParams.get('path') ?? '', req, res)
      if (action === 'exec' && execId === 'stream' && req.method === 'POST') return exec(sandbox.name, body ?? {}, res)
      if (action === 'exec' && sub === 'signal' && req.method === 'POST') {
        const child = running.get(execId)
        if (!child) return error(res, 404, `exec ${execId} not found`)
        child.kill(String(body?.signal ?? 'SIGINT') as NodeJS.Signals)
        return reply(res, 202, {})
      }
      return error(res, 404, 'no such route')
    })().catch((failure: Error) => error(res, 500, failure.message))
  })

  function upload(name: string, path: string, req: IncomingMessage, res: ServerResponse) {
    if (fake.faults.uploadError) {
      req.resume()
      return error(res, 500, fake.faults.uploadError)
    }
    const target = join(fake.root(name), path)
    mkdirSync(target, { recursive: true })
    const tar = spawn('tar', ['-xzf', '-', '-C', target], { stdio: ['pipe', 'ignore', 'pipe'] })
    let stderr = ''
    tar.stderr.on('data', (chunk) => (stderr += chunk))
    req.pipe(tar.stdin)
    tar.on('close', (code) => (code === 0 ? reply(res, 204) : error(res, 400, `bad archive: ${stderr.trim()}`)))
  }

  function exec(name: string, body: Record<string, unknown>, res: ServerResponse) {
    const command = body.command as string[]
    const cwd = join(fake.root(name), String(body.workdir ?? '/'))
    mkdirSync(cwd, { recursive: true })
    const id = `exec_${++requests}`
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': `req_${requests}` })
    const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    const child = spawn(command[0], command.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    running.set(id, child)
    send('started', { exec_id: id })
    child.stdout!.on('data', (chunk: Buffer) => send('stdout', { data: chunk.toString('utf8') }))
    child.stderr!.on('data', (chunk: Buffer) => send('stderr', { data: chunk.toString('utf8') }))
    child.on('error', (failure) => {
      send('error', { message: failure.message })
      res.end()
    })
    child.on('close', (code, signal) => {
      running.delete(id)
      if (!fake.faults.noExitEvent) send('exit', { exit_code: code ?? (signal === 'SIGINT' ? 130 : 137) })
      res.end()
    })
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return fake
}
