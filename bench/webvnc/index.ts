// `npm run bench -- webvnc [samples] [MiB]`: the WebVNC relay under `crabbox broker dev` on
// loopback. One desktop lease (a static pool entry that declares a desktop; no machine is
// reached), one agent socket as the `crabbox webvnc` bridge opens it (a one-use ticket) and one
// portal viewer socket (`/portal/leases/{id}/vnc/viewer`, bearer token), paired by the lease's
// relay object. Measures:
// - frame latency: a 64-byte frame sent on the agent socket (where the bridge writes the
//   runner's RFB bytes) until it arrives on the viewer socket, one frame in flight (p50/p95);
// - relay throughput: MiB of 64 KiB frames from the agent socket to the viewer socket, the
//   sender kept under 4 MiB buffered (MB/s, first byte sent to last byte received).
// Both ends live in this process, so one clock times both.
import { randomBytes } from 'node:crypto'
import WebSocket from 'ws'
import { startBroker } from '../../test/support/broker.js'

const SAMPLES = Number(process.argv[2]) || 300
const MIB = Number(process.argv[3]) || 64
const SHARED = 'bench-shared-token'
const OWNER = 'bench@example.com'
const FRAME = 64 * 1024

const log = (text: string) => process.stderr.write(`${text}\n`)
const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))]
const auth = { authorization: `Bearer ${SHARED}`, 'x-crabbox-owner': OWNER }

const broker = await startBroker({
  env: {
    CRABBOX_SHARED_TOKEN: SHARED,
    CRABBOX_MIN_LEASE_SECONDS: '1',
    CRABBOX_STATIC_POOL: JSON.stringify([
      { name: 'bench-desk', host: '192.0.2.1', port: 22, user: 'crabbox', workRoot: '/work', desktop: true },
    ]),
  },
})

async function call(method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(`${broker.url}${path}`, {
    method,
    headers: { ...auth, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${(await response.text()).slice(0, 300)}`)
  return response.json()
}

function open(path: string, headers: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${broker.url.replace(/^http/, 'ws')}${path}`, { headers })
    ws.binaryType = 'nodebuffer'
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
    ws.once('unexpected-response', (_request, response) => reject(new Error(`${path}: ${response.statusCode}`)))
  })
}

try {
  const { lease } = await call('POST', '/v1/leases', {
    provider: 'static',
    desktop: true,
    sshPublicKey: 'ssh-ed25519 AAAAC3NzaBench bench',
  })
  const { ticket } = await call('POST', `/v1/leases/${lease.id}/webvnc/ticket`)
  const agent = await open(`/v1/leases/${lease.id}/webvnc/agent`, { authorization: `Bearer ${ticket}` })
  const viewer = await open(`/portal/leases/${lease.id}/vnc/viewer?viewer=viewer_bench0001`, auth)
  let onFrame: (data: Buffer) => void = () => undefined
  viewer.on('message', (data: Buffer) => onFrame(data))

  // Latency: one frame in flight; the first 20 warm the path up and are not counted.
  const latencies: number[] = []
  for (let i = 0; i < SAMPLES + 20; i++) {
    const frame = randomBytes(64)
    const arrived = new Promise<void>((resolve) => (onFrame = () => resolve()))
    const sent = performance.now()
    agent.send(frame)
    await arrived
    if (i >= 20) latencies.push(performance.now() - sent)
  }

  // Throughput: MIB MiB in 64 KiB frames, the sender paused above 4 MiB buffered.
  const total = MIB * 1024 * 1024
  let received = 0
  const done = new Promise<void>((resolve) => {
    onFrame = (data) => {
      received += data.length
      if (received >= total) resolve()
    }
  })
  const chunk = randomBytes(FRAME)
  const started = performance.now()
  for (let sent = 0; sent < total; sent += FRAME) {
    while (agent.bufferedAmount > 4 * 1024 * 1024) await new Promise((resolve) => setTimeout(resolve, 1))
    agent.send(chunk)
  }
  await done
  const seconds = (performance.now() - started) / 1000
  agent.close()
  viewer.close()

  const p50 = percentile(latencies, 0.5)
  const p95 = percentile(latencies, 0.95)
  log(`WebVNC relay under broker dev on loopback (${SAMPLES} frames, ${MIB} MiB)`)
  log(`frame latency agent -> viewer: p50 ${p50.toFixed(2)} ms, p95 ${p95.toFixed(2)} ms`)
  log(`relay throughput agent -> viewer: ${(total / 1e6 / seconds).toFixed(1)} MB/s (${MIB} MiB in ${seconds.toFixed(2)} s)`)
  process.stdout.write(
    `${JSON.stringify({ samples: SAMPLES, latencyMs: { p50, p95 }, throughputMBps: total / 1e6 / seconds, mebibytes: MIB })}\n`,
  )
} finally {
  await broker.stop()
}
