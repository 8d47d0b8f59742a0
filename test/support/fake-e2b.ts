/**
 * A fake E2B: the control-plane REST API the `e2b` SDK calls (`POST /v2/sandboxes`,
 * `POST /v2/sandboxes/{id}/connect`, `GET /v2/sandboxes?metadata=…`, `DELETE /sandboxes/{id}`,
 * `X-API-KEY`, `{"code","message"}` errors) and the in-sandbox envd daemon on the same port
 * (the SDK's `sandboxUrl`; the sandbox is named by the `E2b-Sandbox-Id` header): multipart
 * `POST /files`, and the Connect protocol with JSON (`application/connect+json` envelopes:
 * one flag byte, a 4-byte big-endian length, the message; an end-of-stream envelope with flag 2)
 * for `process.Process/Start` (server streaming) and `process.Process/SendSignal` (unary JSON).
 *
 * Commands really run here, `/bin/bash` with the SDK's arguments, in the sandbox's own temporary
 * folder: every sandbox path is mapped under it. Fault switches fail one route with E2B's error shape.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

export interface FakeSandbox {
  sandboxID: string
  templateID: string
  metadata: Record<string, string>
  timeout: number
  root: string
  startedAt: string
  endAt: string
}

export type E2bFault = 'create' | 'upload' | 'list' | 'kill'

export interface FakeE2b {
  url: string
  apiKey: string
  sandboxes: Map<string, FakeSandbox>
  /** Every sandbox ever created (killed ones too). */
  created: FakeSandbox[]
  killed: string[]
  /** The command lines `process.Process/Start` ran, and the signals sent. */
  started: { sandboxID: string; args: string[]; cwd: string }[]
  signals: { pid: number; signal: string }[]
  faults: Set<E2bFault>
  close(): Promise<void>
}

const API_KEY = 'e2b_fake_key'

const readBody = (req: IncomingMessage) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}
const apiFail = (res: ServerResponse, status: number, message: string) => json(res, status, { code: status, message })

/** One Connect envelope: flags, big-endian length, JSON. */
const envelope = (flags: number, message: unknown) => {
  const data = Buffer.from(JSON.stringify(message))
  const head = Buffer.alloc(5)
  head.writeUInt8(flags, 0)
  head.writeUInt32BE(data.length, 1)
  return Buffer.concat([head, data])
}

const sandboxInfo = (box: FakeSandbox) => ({
  sandboxID: box.sandboxID,
  templateID: box.templateID,
  clientID: 'fake',
  envdVersion: '0.5.0',
  envdAccessToken: null,
  domain: null,
})

/** The multipart/form-data file parts: `[filename, bytes]`. */
function multipartFiles(body: Buffer, contentType: string): [string, Buffer][] {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1]
  if (!boundary) return []
  const files: [string, Buffer][] = []
  const marker = Buffer.from(`--${boundary}`)
  let at = body.indexOf(marker)
  while (at !== -1) {
    const next = body.indexOf(marker, at + marker.length)
    if (next === -1) break
    const part = body.subarray(at + marker.length + 2, next - 2)
    const split = part.indexOf('\r\n\r\n')
    const headers = part.subarray(0, split).toString('utf8')
    const name = /filename="([^"]*)"/.exec(headers)?.[1]
    if (name !== undefined) files.push([name, part.subarray(split + 4)])
    at = next
  }
  return files
}

interface State {
  sandboxes: Map<string, FakeSandbox>
  created: FakeSandbox[]
  killed: string[]
  started: FakeE2b['started']
  signals: FakeE2b['signals']
  faults: Set<E2bFault>
  processes: Map<number, ChildProcess>
  counter: number
}

const inside = (box: FakeSandbox, path: string) => join(box.root, path)

function control(state: State, req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer) {
  if (req.headers['x-api-key'] !== API_KEY) return apiFail(res, 401, 'Invalid API key, it must start with e2b_')
  const byId = /^\/(?:v2\/)?sandboxes\/([^/]+)(\/connect)?$/.exec(url.pathname)
  if (req.method === 'POST' && url.pathname === '/v2/sandboxes') {
    if (state.faults.has('create')) return apiFail(res, 500, 'failed to place sandbox: no capacity in cluster (request id req_e2b_1)')
    const input = JSON.parse(body.toString('utf8')) as { templateID: string; metadata?: Record<string, string>; timeout?: number }
    const now = new Date()
    const box: FakeSandbox = {
      sandboxID: `ifake${(++state.counter).toString().padStart(4, '0')}`,
      templateID: input.templateID,
      metadata: input.metadata ?? {},
      timeout: input.timeout ?? 300,
      root: mkdtempSync(join(tmpdir(), 'fake-e2b-')),
      startedAt: now.toISOString(),
      endAt: new Date(now.getTime() + (input.timeout ?? 300) * 1000).toISOString(),
    }
    state.sandboxes.set(box.sandboxID, box)
    state.created.push(box)
    return json(res, 201, sandboxInfo(box))
  }
  if (req.method === 'POST' && byId?.[2]) {
    const box = state.sandboxes.get(byId[1])
    return box ? json(res, 200, sandboxInfo(box)) : apiFail(res, 404, `sandbox "${byId[1]}" not found`)
  }
  if (req.method === 'GET' && url.pathname === '/v2/sandboxes') {
    if (state.faults.has('list')) return apiFail(res, 500, 'list failed (request id req_e2b_2)')
    const wanted = new URLSearchParams(url.searchParams.get('metadata') ?? '')
    const rows = [...state.sandboxes.values()].filter((box) => [...wanted].every(([key, value]) => box.metadata[key] === value))
    return json(
      res,
      200,
      rows.map((box) => ({
        ...sandboxInfo(box),
        metadata: box.metadata,
        startedAt: box.startedAt,
        endAt: box.endAt,
        state: 'running',
        cpuCount: 2,
        memoryMB: 512,
        diskSizeMB: 1024,
      })),
    )
  }
  if (req.method === 'DELETE' && byId && !byId[2]) {
    if (state.faults.has('kill')) return apiFail(res, 500, 'kill failed (request id req_e2b_3)')
    const box = state.sandboxes.get(byId[1])
    if (!box) return apiFail(res, 404, `sandbox "${byId[1]}" not found`)
    state.sandboxes.delete(box.sandboxID)
    state.killed.push(box.sandboxID)
    rmSync(box.root, { recursive: true, force: true })
    res.writeHead(204).end()
    return
  }
  apiFail(res, 404, `no route ${req.method} ${url.pathname}`)
}

function startProcess(state: State, box: FakeSandbox, res: ServerResponse, body: Buffer) {
  const request = JSON.parse(body.subarray(5).toString('utf8')) as { process: { cmd: string; args?: string[]; cwd?: string } }
  const cwd = inside(box, request.process.cwd ?? '/home/user')
  mkdirSync(cwd, { recursive: true })
  const args = request.process.args ?? []
  state.started.push({ sandboxID: box.sandboxID, args, cwd: request.process.cwd ?? '' })
  const child = spawn(request.process.cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  const pid = child.pid ?? 0
  state.processes.set(pid, child)
  res.writeHead(200, { 'content-type': 'application/connect+json' })
  res.write(envelope(0, { event: { start: { pid } } }))
  child.stdout!.on('data', (d: Buffer) => res.write(envelope(0, { event: { data: { stdout: d.toString('base64') } } })))
  child.stderr!.on('data', (d: Buffer) => res.write(envelope(0, { event: { data: { stderr: d.toString('base64') } } })))
  child.on('close', (code, signal) => {
    state.processes.delete(pid)
    const exitCode = code ?? -1
    const status = signal ? `signal: ${signal === 'SIGKILL' ? 'killed' : signal}` : `exit status ${exitCode}`
    res.write(envelope(0, { event: { end: { exitCode, exited: signal === null, status } } }))
    res.end(envelope(2, {}))
  })
}

function envd(state: State, req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer, box: FakeSandbox) {
  if (url.pathname === '/health') return void res.writeHead(204).end()
  if (req.method === 'POST' && url.pathname === '/files') {
    if (state.faults.has('upload')) return json(res, 507, { code: 507, message: 'not enough disk space' })
    const path = url.searchParams.get('path')
    const written = multipartFiles(body, String(req.headers['content-type'])).map(([name, data]) => {
      const target = path ?? name
      mkdirSync(dirname(inside(box, target)), { recursive: true })
      writeFileSync(inside(box, target), data)
      return { name: target.split('/').at(-1), path: target, type: 'file' }
    })
    return json(res, 200, written)
  }
  if (req.method === 'POST' && url.pathname === '/process.Process/Start') return startProcess(state, box, res, body)
  if (req.method === 'POST' && url.pathname === '/process.Process/SendSignal') {
    const input = JSON.parse(body.toString('utf8')) as { process: { pid: number }; signal: string | number }
    const name = input.signal === 9 || input.signal === 'SIGNAL_SIGKILL' ? 'SIGKILL' : 'SIGTERM'
    state.signals.push({ pid: input.process.pid, signal: name })
    const child = state.processes.get(input.process.pid)
    if (!child) return json(res, 404, { code: 'not_found', message: `process ${input.process.pid} not found` })
    // The whole process group is not ours to reach; kill the shell and what it exec'd.
    child.kill(name)
    return json(res, 200, {})
  }
  json(res, 404, { code: 'not_found', message: `no route ${url.pathname}` })
}

export async function startFakeE2b(): Promise<FakeE2b> {
  const state: State = {
    sandboxes: new Map(),
    created: [],
    killed: [],
    started: [],
    signals: [],
    faults: new Set(),
    processes: new Map(),
    counter: 0,
  }
  const server: Server = createServer((req, res) => {
    void readBody(req).then((body) => {
      const url = new URL(req.url ?? '/', 'http://fake')
      const id = req.headers['e2b-sandbox-id']
      if (typeof id !== 'string') return control(state, req, res, url, body)
      const box = state.sandboxes.get(id)
      if (!box) return json(res, 502, { message: 'The sandbox was not found', sandboxId: id, code: 502 })
      envd(state, req, res, url, body, box)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    apiKey: API_KEY,
    sandboxes: state.sandboxes,
    created: state.created,
    killed: state.killed,
    started: state.started,
    signals: state.signals,
    faults: state.faults,
    close: async () => {
      for (const child of state.processes.values()) child.kill('SIGKILL')
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      for (const box of state.sandboxes.values()) rmSync(box.root, { recursive: true, force: true })
    },
  }
}
