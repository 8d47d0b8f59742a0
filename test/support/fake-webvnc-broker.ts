import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'

/**
 * A fake broker that speaks the WebVNC part of the broker API and nothing else, so the CLI
 * bridge can be tested before the real relay lands:
 * - `GET /v1/leases/{id}`: one desktop lease (static provider) on a test host;
 * - `POST /v1/leases/{id}/webvnc/ticket`: `wvnc_<32 hex>`, 120 s, one use (or a 409 when told to refuse);
 * - `GET /v1/leases/{id}/webvnc/status`, `POST …/reset` (closes agents and viewers with 1012);
 * - `GET /v1/leases/{id}/webvnc/agent` (WebSocket): ticket from `Authorization: Bearer` or `?ticket=`,
 *   426 without upgrade, 401 `webvnc_ticket_required`, 404 when the ticket is another lease's;
 * - the viewer side, driven by the test: `viewer()` claims an idle agent like the portal's viewer
 *   socket (409 `webvnc_bridge_missing` when none is idle); agent bytes are buffered (1 MiB) until then.
 * Viewer gone → its agent closed 1011; agent gone → its viewer closed 1011.
 */
export interface FakeLease {
  id: string
  slug: string
  host: string
  sshPort: number
  sshUser: string
  hostKeys?: string[]
  desktop?: boolean
}

export interface AgentRecord {
  id: string
  socket: WebSocket
  headers: IncomingMessage['headers']
  url: string
  viewer?: WebSocket
  buffer: Buffer[]
  buffered: number
}

export interface FakeViewer {
  /** Every byte the viewer received from its agent, in order. */
  received(): Buffer
  send(data: Buffer | string): void
  close(): void
  closed: Promise<{ code: number; reason: string }>
}

export interface FakeWebVncBroker {
  url: string
  token: string
  lease: FakeLease
  agents(): AgentRecord[]
  /** Agent sockets accepted since the start (reconnects count again). */
  agentConnections(): number
  /** Agent upgrade attempts refused, by status. */
  refusedAgents(): number[]
  /** Ticket requests answered 409 from now on (`desktop: false`) or normally again. */
  refuseTickets(refuse: boolean): void
  /** Closes every agent socket abruptly, as a broker restart would. */
  dropAgents(): void
  viewer(): Promise<FakeViewer>
  events: Array<{ at: string; event: string; reason?: string }>
  close(): Promise<void>
}

const TICKET_TTL_MS = 120_000
const BUFFER_LIMIT = 1024 * 1024

// eslint-disable-next-line max-lines-per-function -- one closure holds the fake's state: routes, sockets and the test's handle
export async function fakeWebVncBroker(options: { token: string; lease: FakeLease }): Promise<FakeWebVncBroker> {
  const { lease, token } = options
  const tickets = new Map<string, { leaseId: string; expiresAt: number }>()
  const agents = new Map<string, AgentRecord>()
  const viewers = new Set<WebSocket>()
  const events: FakeWebVncBroker['events'] = []
  const refused: number[] = []
  let connections = 0
  let refuse = false
  const record = (event: string, reason?: string) => {
    events.push({ at: new Date().toISOString(), event, ...(reason ? { reason } : {}) })
    if (events.length > 12) events.shift()
  }
  const command = `crabbox webvnc --provider static --target linux --id ${lease.slug} --open`
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' })
    res.end(JSON.stringify(body))
  }
  const leaseIdOf = (path: string) => /^\/v1\/leases\/([^/]+)/.exec(path)?.[1]
  const known = (id: string | undefined) =>
    id !== undefined && (decodeURIComponent(id) === lease.id || decodeURIComponent(id) === lease.slug)
  const status = () => {
    const open = [...agents.values()]
    const withViewer = open.filter((a) => a.viewer).length
    return {
      leaseID: lease.id,
      slug: lease.slug,
      bridgeConnected: open.length > 0,
      viewerConnected: withViewer > 0,
      viewerCount: withViewer,
      observerCount: Math.max(0, withViewer - 1),
      availableViewerSlots: open.length - withViewer,
      viewerID: '',
      viewerRole: 'none',
      controllerID: '',
      controllerLabel: '',
      command,
      events: [...events],
      message: open.length ? 'bridge connected' : `WebVNC daemon not running; run: ${command}`,
    }
  }
  const leaseRecord = () => ({
    id: lease.id,
    slug: lease.slug,
    provider: 'static',
    target: 'linux',
    desktop: lease.desktop ?? true,
    owner: 'webvnc@example.com',
    org: 'test',
    host: lease.host,
    sshUser: lease.sshUser,
    sshPort: String(lease.sshPort),
    ...(lease.hostKeys ? { hostKeys: lease.hostKeys } : {}),
    workRoot: '/work/crabbox',
    keep: true,
    ttlSeconds: 3600,
    idleTimeoutSeconds: 1800,
    state: 'active',
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    lastTouchedAt: new Date().toISOString(),
    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
  })

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake')
    if (req.headers.authorization !== `Bearer ${token}`) return json(res, 401, { error: 'unauthorized' })
    const id = leaseIdOf(url.pathname)
    if (!known(id)) return json(res, 404, { error: 'not_found' })
    const rest = url.pathname.replace(/^\/v1\/leases\/[^/]+/, '')
    if (rest === '' && req.method === 'GET') return json(res, 200, { lease: leaseRecord() })
    if (rest === '/webvnc/ticket' && req.method === 'POST') {
      if (refuse || lease.desktop === false)
        return json(res, 409, { error: 'webvnc_unavailable', message: 'lease was not created with desktop=true' })
      const ticket = `wvnc_${randomBytes(16).toString('hex')}`
      const expiresAt = Date.now() + TICKET_TTL_MS
      tickets.set(ticket, { leaseId: lease.id, expiresAt })
      return json(res, 200, { ticket, leaseID: lease.id, expiresAt: new Date(expiresAt).toISOString() })
    }
    if (rest === '/webvnc/status') return json(res, 200, status())
    if (rest === '/webvnc/reset' && req.method === 'POST') {
      const before = status()
      for (const agent of agents.values()) agent.socket.close(1012, 'WebVNC reset requested')
      for (const viewer of viewers) viewer.close(1012, 'WebVNC reset requested')
      record('reset', 'WebVNC reset requested')
      return json(res, 200, {
        leaseID: lease.id,
        slug: lease.slug,
        bridgeWasConnected: before.bridgeConnected,
        viewerWasConnected: before.viewerConnected,
        command,
        events: [...events],
      })
    }
    if (rest === '/webvnc/agent') return json(res, 426, { error: 'upgrade_required', message: 'WebVNC agent requires a websocket upgrade' })
    return json(res, 404, { error: 'not_found' })
  })

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://fake')
    const deny = (statusCode: number, body: unknown) => {
      refused.push(statusCode)
      const text = JSON.stringify(body)
      socket.end(
        `HTTP/1.1 ${statusCode} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
      )
    }
    const id = leaseIdOf(url.pathname)
    if (!url.pathname.endsWith('/webvnc/agent')) return deny(404, { error: 'not_found' })
    const bearer = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1]
    const ticket = bearer ?? url.searchParams.get('ticket') ?? ''
    const entry = tickets.get(ticket)
    tickets.delete(ticket)
    if (!/^wvnc_[a-f0-9]{32}$/.test(ticket) || !entry || entry.expiresAt < Date.now())
      return deny(401, { error: 'webvnc_ticket_required', message: 'valid WebVNC bridge ticket required' })
    if (!known(id) || entry.leaseId !== lease.id) return deny(404, { error: 'not_found' })
    wss.handleUpgrade(req, socket, head, (ws) => {
      connections++
      const agent: AgentRecord = {
        id: `agent_${randomBytes(8).toString('hex')}`,
        socket: ws,
        headers: req.headers,
        url: req.url ?? '',
        buffer: [],
        buffered: 0,
      }
      agents.set(agent.id, agent)
      record('bridge_connected')
      ws.on('message', (data: Buffer, isBinary) => {
        const chunk = isBinary ? data : Buffer.from(data)
        if (agent.viewer) return agent.viewer.send(chunk)
        agent.buffer.push(chunk)
        agent.buffered += chunk.length
        if (agent.buffered > BUFFER_LIMIT) {
          agent.buffer = []
          agent.buffered = 0
        }
      })
      ws.on('close', () => {
        agents.delete(agent.id)
        record('bridge_disconnected')
        agent.viewer?.close(1011, 'WebVNC bridge disconnected')
      })
      ws.on('error', () => undefined)
    })
  })

  // The viewer side: a WebSocket pair inside this process stands in for the portal's viewer socket.
  const viewerWss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
  const viewerServer = createServer()
  viewerServer.on('upgrade', (req, socket, head) => {
    const idle = [...agents.values()].find((a) => !a.viewer)
    if (!idle) {
      const text = JSON.stringify({
        error: 'webvnc_bridge_missing',
        message: `No WebVNC backend is available yet; start or refresh the bridge with: ${command}`,
        command,
      })
      return socket.end(
        `HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
      )
    }
    viewerWss.handleUpgrade(req, socket, head, (ws) => {
      idle.viewer = ws
      viewers.add(ws)
      record('viewer_connected')
      for (const chunk of idle.buffer.splice(0)) ws.send(chunk)
      idle.buffered = 0
      ws.on('message', (data: Buffer, isBinary) => idle.socket.send(isBinary ? data : Buffer.from(data)))
      ws.on('close', () => {
        viewers.delete(ws)
        record('viewer_disconnected')
        if (idle.socket.readyState === WebSocket.OPEN) {
          idle.socket.close(1011, 'WebVNC viewer disconnected')
          record('bridge_reset')
        }
      })
      ws.on('error', () => undefined)
    })
  })

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  await new Promise<void>((resolve) => viewerServer.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const viewerUrl = `ws://127.0.0.1:${(viewerServer.address() as AddressInfo).port}/portal/leases/${lease.id}/vnc/viewer`

  return {
    url,
    token,
    lease,
    events,
    agents: () => [...agents.values()],
    agentConnections: () => connections,
    refusedAgents: () => [...refused],
    refuseTickets: (value) => (refuse = value),
    dropAgents() {
      for (const agent of agents.values()) agent.socket.terminate()
    },
    async viewer() {
      const ws = new WebSocket(`${viewerUrl}?viewer=viewer_${randomBytes(8).toString('hex')}`, { perMessageDeflate: false })
      const chunks: Buffer[] = []
      ws.on('message', (data: Buffer) => chunks.push(Buffer.from(data)))
      const closed = new Promise<{ code: number; reason: string }>((resolve) =>
        ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
      )
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve())
        ws.once('unexpected-response', (_req, res) => reject(new Error(`viewer refused: ${res.statusCode}`)))
        ws.once('error', reject)
      })
      return {
        received: () => Buffer.concat(chunks),
        send: (data) => ws.send(data),
        close: () => ws.close(1000),
        closed,
      }
    },
    async close() {
      for (const agent of agents.values()) agent.socket.terminate()
      for (const viewer of viewers) viewer.terminate()
      wss.close()
      viewerWss.close()
      server.closeAllConnections()
      viewerServer.closeAllConnections()
      await Promise.all([new Promise((r) => server.close(r)), new Promise((r) => viewerServer.close(r))])
    },
  }
}

/**
 * A stand-in for the runner's VNC server: a loopback TCP server on `port` inside a test host
 * that sends the RFB 3.8 banner and echoes what it receives. Run it with the host's `run`
 * (detached); it prints the server's pid, which the test kills to take the VNC away.
 */
export function rfbStandInScript(port = 5900): string {
  const js = `require('net').createServer(s=>{s.write('RFB 003.008\\n');s.pipe(s)}).listen(${port},'127.0.0.1')`
  return `nohup ${process.execPath} -e "${js.replace(/"/g, '\\"')}" crabbox-rfb-stand-in >/dev/null 2>&1 & echo $!`
}
