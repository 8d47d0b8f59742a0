// `npm run bench -- egress [--mb N] [--requests N]`: mediated egress through the broker's bridge
// (`crabbox broker dev` on this machine, the two CLI halves in this process: the lease-side CONNECT
// proxy and the host side) against a direct connection to the same local HTTPS site. Throughput:
// one N MB download. Latency: N sequential requests, each on a fresh connection (CONNECT + TLS
// handshake + GET), median and p90; the difference is what the bridge adds per request.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { createServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { startClientProxy } from '../../src/services/egress/client-proxy.js'
import { startHostSide } from '../../src/services/egress/host-side.js'
import { startBroker } from '../../test/support/broker.js'

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(`--${name}`) + 1]) || fallback
const MB = arg('mb', 64)
const REQUESTS = arg('requests', 40)

const dir = mkdtempSync(join(tmpdir(), 'crabbox-bench-egress-'))
execFileSync(
  'openssl',
  ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost'].concat([
    '-addext',
    'subjectAltName=DNS:localhost',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
  ]),
  { stdio: 'ignore' },
)
const ca = readFileSync(join(dir, 'cert.pem'))
const chunk = Buffer.alloc(256 * 1024, 97)
const site = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: ca }, (req, res) => {
  if (req.url === '/big') {
    res.writeHead(200, { 'content-length': String(MB * 1024 * 1024) })
    let left = MB * 4
    const pump = () => {
      while (left > 0) {
        left--
        if (!res.write(chunk)) return res.once('drain', pump)
      }
      res.end()
    }
    return pump()
  }
  res.end('ok\n')
})
await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', () => resolve()))
const port = (site.address() as AddressInfo).port

const broker = await startBroker({
  env: { CRABBOX_SHARED_TOKEN: 'bench-egress', CRABBOX_STATIC_POOL: JSON.stringify([{ name: 'bench', host: '192.0.2.1' }]) },
})
const headers = { authorization: 'Bearer bench-egress', 'x-crabbox-owner': 'bench@example.com', 'content-type': 'application/json' }
const call = async (path: string, body: unknown) => {
  const response = await fetch(broker.url + path, { method: 'POST', headers, body: JSON.stringify(body) })
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`)
  return (await response.json()) as any
}
const { lease } = await call('/v1/leases', { provider: 'static', sshPublicKey: 'ssh-ed25519 AAAAC3NzaBench bench' })
const sessionID = 'egress_bench0001'
const ticket = (role: string) => () =>
  call(`/v1/leases/${lease.id}/egress/ticket`, { role, sessionID, allow: ['localhost'] }).then((r) => r.ticket)
// Refusals and reconnects show; the per-connection `egress open` lines do not.
const log = (line: string) => void (line.startsWith('egress open') || process.stderr.write(`${line}\n`))
const common = { brokerUrl: broker.url, leaseId: lease.id, headers: {}, log }
const host = startHostSide({ ...common, allow: ['localhost'], nextTicket: ticket('host') })
const client = await startClientProxy({ ...common, listen: { host: '127.0.0.1', port: 0 }, nextTicket: ticket('client') })
while (!host.link.connected || !client.link.connected) await new Promise((resolve) => setTimeout(resolve, 50))

/** A TLS socket to the site: direct, or through the CONNECT proxy. */
function open(via: 'direct' | 'bridge'): Promise<Socket> {
  const tls = (socket?: Socket) =>
    new Promise<Socket>((resolve, reject) => {
      const s = tlsConnect({ host: 'localhost', port, servername: 'localhost', ca, ...(socket ? { socket } : {}) }, () => resolve(s))
      s.once('error', reject)
    })
  if (via === 'direct') return tls()
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.address.port, method: 'CONNECT', path: `localhost:${port}` })
    req.once('connect', (res, socket) => (res.statusCode === 200 ? resolve(tls(socket)) : reject(new Error(`CONNECT ${res.statusCode}`))))
    req.once('error', reject)
    req.end()
  })
}

/** GET `path` on a fresh connection; resolves with the body's size. */
async function get(via: 'direct' | 'bridge', path: string): Promise<number> {
  const socket = await open(via)
  return new Promise((resolve, reject) => {
    let bytes = 0
    let head = true
    socket.on('data', (data: Buffer) => {
      if (head) {
        const end = data.indexOf('\r\n\r\n')
        if (end < 0) return
        head = false
        bytes += data.length - end - 4
      } else bytes += data.length
    })
    socket.once('end', () => resolve(bytes))
    socket.once('close', () => resolve(bytes))
    socket.once('error', reject)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`)
  })
}

const quantile = (values: number[], q: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * q))]!

const results: Record<string, { mbps: number; p50: number; p90: number }> = {}
for (const via of ['direct', 'bridge'] as const) {
  await get(via, '/small')
  const latencies: number[] = []
  for (let i = 0; i < REQUESTS; i++) {
    const started = performance.now()
    await get(via, '/small')
    latencies.push(performance.now() - started)
  }
  const started = performance.now()
  const bytes = await get(via, '/big')
  if (bytes < MB * 1024 * 1024) process.stderr.write(`${via}: the download stopped short (${bytes} bytes)\n`)
  const seconds = (performance.now() - started) / 1000
  results[via] = { mbps: bytes / 1024 / 1024 / seconds, p50: quantile(latencies, 0.5), p90: quantile(latencies, 0.9) }
}
host.stop()
await client.close()
await broker.stop()
site.close()
rmSync(dir, { recursive: true, force: true })

const d = results.direct!
const b = results.bridge!
console.log(`| Path | Download ${MB} MB (MB/s) | Request p50 (ms) | Request p90 (ms) |`)
console.log('| --- | --- | --- | --- |')
console.log(`| direct | ${d.mbps.toFixed(1)} | ${d.p50.toFixed(1)} | ${d.p90.toFixed(1)} |`)
console.log(`| through the bridge | ${b.mbps.toFixed(1)} | ${b.p50.toFixed(1)} | ${b.p90.toFixed(1)} |`)
console.log(`\nadded per request: ${(b.p50 - d.p50).toFixed(1)} ms (p50); throughput ratio bridge/direct: ${(b.mbps / d.mbps).toFixed(3)}`)
process.exit(0)
