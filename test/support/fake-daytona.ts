/**
 * A stand-in for the Daytona API and the sandbox toolbox, speaking the JSON wire format the
 * official SDK (`@daytonaio/sdk`) uses: `POST/GET/DELETE /sandbox`, `GET /sandbox?labels=`,
 * and under each sandbox's `toolboxProxyUrl` the file upload (multipart), `/process/execute`
 * and the session API. Commands really run here (`sh -c`), so output, exit codes and Ctrl-C
 * (deleting the session kills its process group) are real. Errors carry Daytona's shape
 * (`{ statusCode, message, error }`) and an `x-request-id` header.
 *
 * With `ssh`, `POST /sandbox/{id}/ssh-access` hands out tokens whose `sshCommand` points at a
 * local stand-in for the SSH gateway (test/support/fake-daytona-ssh.ts) that lets a live token
 * in as the user; `DELETE` with `?token=` revokes one, without it every token of the sandbox.
 * Without `ssh` the access call is refused, so a run goes through the toolbox.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { startFakeGateway, type FakeGateway } from './fake-daytona-ssh.js'

export interface FakeDaytonaOptions {
  apiKey?: string
  /** `create-error`: the create call is refused. `start-error`: the sandbox is made, then fails to start. */
  fault?: 'create-error' | 'start-error'
  /** `on`: SSH access tokens and a gateway that takes them; `reject`: tokens the gateway then refuses. */
  ssh?: 'on' | 'reject'
}

export interface FakeToken {
  token: string
  sandboxId: string
  expiresInMinutes?: number
  revoked: boolean
}

export interface RecordedCall {
  method: string
  path: string
  body?: unknown
}

interface Command {
  id: string
  command: string
  exitCode?: number
  stdout: string
  stderr: string
  child: ChildProcess
}

interface FakeSandbox {
  dto: Record<string, unknown>
  polls: number
  sessions: Map<string, Map<string, Command>>
  uploads: string[]
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

function run(command: string): Command {
  const child = spawn('sh', ['-c', command], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  const entry: Command = { id: randomUUID(), command, stdout: '', stderr: '', child }
  child.stdout!.on('data', (d: Buffer) => (entry.stdout += d.toString('utf8')))
  child.stderr!.on('data', (d: Buffer) => (entry.stderr += d.toString('utf8')))
  child.on('close', (code, signal) => (entry.exitCode = code ?? (signal ? 128 + 9 : 1)))
  return entry
}

function kill(command: Command) {
  if (command.exitCode === undefined && command.child.pid) {
    try {
      process.kill(-command.child.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

async function upload(sandbox: FakeSandbox, req: IncomingMessage, raw: Buffer) {
  const form = await new Request('http://fake/upload', {
    method: 'POST',
    headers: { 'content-type': String(req.headers['content-type']) },
    body: raw,
  }).formData()
  for (const [key, value] of form.entries()) {
    const match = /^files\[(\d+)\]\.file$/.exec(key)
    if (!match || typeof value === 'string') continue
    const path = String(form.get(`files[${match[1]}].path`))
    writeFileSync(path, Buffer.from(await value.arrayBuffer()))
    sandbox.uploads.push(path)
  }
  return undefined
}

async function toolbox(sandbox: FakeSandbox, method: string, rest: string, req: IncomingMessage, raw: Buffer) {
  const json = () => JSON.parse(raw.toString('utf8') || '{}') as Record<string, unknown>
  if (method === 'POST' && rest === '/files/bulk-upload') return upload(sandbox, req, raw)
  if (method === 'POST' && rest === '/process/execute') {
    const command = run(String(json().command))
    await new Promise((resolve) => command.child.on('close', resolve))
    return { exitCode: command.exitCode, result: command.stdout + command.stderr }
  }
  if (method === 'POST' && rest === '/process/session') {
    sandbox.sessions.set(String(json().sessionId), new Map())
    return undefined
  }
  const session = /^\/process\/session\/([^/]+)(.*)$/.exec(rest)
  const commands = session && sandbox.sessions.get(decodeURIComponent(session[1]))
  if (!session || !commands) throw new ApiError(404, `session not found: ${rest}`)
  if (method === 'DELETE' && session[2] === '') {
    for (const command of commands.values()) kill(command)
    sandbox.sessions.delete(decodeURIComponent(session[1]))
    return undefined
  }
  if (method === 'POST' && session[2] === '/exec') {
    const command = run(String(json().command))
    commands.set(command.id, command)
    return { cmdId: command.id }
  }
  const command = /^\/command\/([^/]+)(\/logs)?$/.exec(session[2])
  const found = command && commands.get(command[1])
  if (!command || !found) throw new ApiError(404, `command not found: ${rest}`)
  if (command[2]) return { output: found.stdout + found.stderr, stdout: found.stdout, stderr: found.stderr }
  return { id: found.id, command: found.command, exitCode: found.exitCode }
}

function sshAccess(sandbox: FakeSandbox, tokens: FakeToken[], gateway: FakeGateway | undefined, method: string, url: URL) {
  const sandboxId = String(sandbox.dto.id)
  if (method === 'DELETE') {
    const only = url.searchParams.get('token')
    for (const t of tokens) if (t.sandboxId === sandboxId && (!only || t.token === only)) t.revoked = true
    return undefined
  }
  if (!gateway) throw new ApiError(400, 'SSH access is not available for this sandbox')
  const minutes = url.searchParams.get('expiresInMinutes')
  const entry: FakeToken = { token: randomUUID().replace(/-/g, ''), sandboxId, revoked: false }
  if (minutes) entry.expiresInMinutes = Number(minutes)
  tokens.push(entry)
  const now = new Date()
  return {
    id: randomUUID(),
    sandboxId,
    token: entry.token,
    expiresAt: new Date(now.getTime() + (entry.expiresInMinutes ?? 60) * 60_000).toISOString(),
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
    sshCommand: `ssh -p ${gateway.port} ${entry.token}@127.0.0.1`,
  }
}

export async function startFakeDaytona(options: FakeDaytonaOptions = {}) {
  const apiKey = options.apiKey ?? 'dtn_test_key'
  const sandboxes = new Map<string, FakeSandbox>()
  const calls: RecordedCall[] = []
  const tokens: FakeToken[] = []
  const gateway: FakeGateway | undefined = options.ssh
    ? await startFakeGateway((token) => options.ssh === 'on' && tokens.some((t) => t.token === token && !t.revoked))
    : undefined
  let base = ''
  const find = (idOrName: string) => [...sandboxes.values()].find((s) => s.dto.id === idOrName || s.dto.name === idOrName)
  const must = (idOrName: string) => {
    const found = find(idOrName)
    if (!found) throw new ApiError(404, `Sandbox with ID or name ${idOrName} not found`)
    return found
  }

  function create(body: Record<string, unknown>) {
    if (options.fault === 'create-error') throw new ApiError(400, `Snapshot ${String(body.snapshot)} not found`)
    const id = randomUUID()
    const dto = {
      id,
      name: body.name ?? id,
      organizationId: 'org_fake',
      snapshot: body.snapshot ?? 'daytona-default',
      user: body.user ?? 'daytona',
      env: body.env ?? {},
      labels: body.labels ?? {},
      public: false,
      target: body.target ?? 'us',
      cpu: 1,
      gpu: 0,
      memory: 1,
      disk: 3,
      state: 'starting',
      autoStopInterval: body.autoStopInterval,
      toolboxProxyUrl: `${base}/toolbox`,
      createdAt: new Date().toISOString(),
    }
    sandboxes.set(id, { dto, polls: 0, sessions: new Map(), uploads: [] })
    return dto
  }

  function get(idOrName: string) {
    const sandbox = must(idOrName)
    sandbox.polls++
    if (sandbox.dto.state === 'starting' && sandbox.polls >= 1) {
      if (options.fault === 'start-error') Object.assign(sandbox.dto, { state: 'error', errorReason: 'no runner capacity for snapshot' })
      else sandbox.dto.state = 'started'
    }
    return sandbox.dto
  }

  function remove(idOrName: string) {
    const sandbox = must(idOrName)
    for (const session of sandbox.sessions.values()) for (const command of session.values()) kill(command)
    sandboxes.delete(String(sandbox.dto.id))
    return { ...sandbox.dto, state: 'destroying' }
  }

  async function route(req: IncomingMessage, url: URL, raw: Buffer): Promise<unknown> {
    const method = req.method ?? 'GET'
    if (req.headers.authorization !== `Bearer ${apiKey}`) throw new ApiError(401, 'Invalid credentials')
    const path = url.pathname
    const box = /^\/toolbox\/([^/]+)(\/.*)$/.exec(path)
    if (box) return toolbox(must(box[1]), method, box[2], req, raw)
    if (method === 'POST' && path === '/sandbox') return create(JSON.parse(raw.toString('utf8')) as Record<string, unknown>)
    if (method === 'GET' && path === '/sandbox') {
      const labels = JSON.parse(url.searchParams.get('labels') ?? '{}') as Record<string, string>
      const items = [...sandboxes.values()]
        .map((s) => s.dto)
        .filter((dto) => Object.entries(labels).every(([k, v]) => (dto.labels as Record<string, string>)[k] === v))
      return { items, nextCursor: null }
    }
    const access = /^\/sandbox\/([^/]+)\/ssh-access$/.exec(path)
    if (access) return sshAccess(must(decodeURIComponent(access[1])), tokens, gateway, method, url)
    const one = /^\/sandbox\/([^/]+)$/.exec(path)
    if (one && method === 'GET') return get(decodeURIComponent(one[1]))
    if (one && method === 'DELETE') return remove(decodeURIComponent(one[1]))
    throw new ApiError(404, `Cannot ${method} ${path}`)
  }

  const server = createServer((req, res: ServerResponse) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://fake')
      const raw = await readBody(req)
      const isJson = String(req.headers['content-type'] ?? '').includes('json')
      calls.push({
        method: req.method ?? 'GET',
        path: url.pathname + url.search,
        body: isJson && raw.length ? JSON.parse(raw.toString('utf8')) : undefined,
      })
      const requestId = `req_${randomUUID().slice(0, 8)}`
      try {
        const result = await route(req, url, raw)
        res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': requestId })
        res.end(result === undefined ? '' : JSON.stringify(result))
      } catch (error) {
        const status = error instanceof ApiError ? error.status : 500
        res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': requestId })
        res.end(JSON.stringify({ statusCode: status, message: (error as Error).message, error: status === 404 ? 'Not Found' : 'Error' }))
      }
    })()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url: base,
    apiKey,
    calls,
    sandboxes: () => [...sandboxes.values()].map((s) => s.dto),
    sessions: () => [...sandboxes.values()].flatMap((s) => [...s.sessions.keys()]),
    tokens,
    gateway,
    async close() {
      await gateway?.close()
      for (const sandbox of sandboxes.values())
        for (const session of sandbox.sessions.values()) for (const command of session.values()) kill(command)
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
