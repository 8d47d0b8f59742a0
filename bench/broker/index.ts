// `npm run bench -- broker [--seconds N] [--concurrency C]`: request throughput of the broker under
// workerd on this machine (`crabbox broker dev`): heartbeats into one lease, run events appended into
// one run, and static-pool lease creates, next to the floor of the same HTTP stack (`/v1/health`,
// no auth, no Durable Object) and an authenticated no-op through the object (`/v1/whoami`).
import { startBroker } from '../../test/support/broker.js'

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(`--${name}`) + 1]) || fallback
const seconds = arg('seconds', 5)
const concurrency = arg('concurrency', 8)
const poolSize = 400
const broker = await startBroker({
  env: {
    CRABBOX_SHARED_TOKEN: 'bench-shared',
    CRABBOX_ADMIN_TOKEN: 'bench-admin',
    CRABBOX_STATIC_POOL: JSON.stringify(
      Array.from({ length: poolSize }, (_, i) => ({ name: `bench-${i}`, host: `192.0.2.${(i % 250) + 1}` })),
    ),
  },
})
const url = broker.url

const headers = {
  authorization: 'Bearer bench-shared',
  'x-crabbox-owner': 'bench@example.com',
  'x-crabbox-org': 'bench',
  'content-type': 'application/json',
}
async function call(method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await response.text()
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`)
  return JSON.parse(text)
}

interface Result {
  name: string
  ops: number
  perSecond: number
  p50: number
  p99: number
}

/** Runs `op` from `concurrency` loops until the time is up (or `limit` ops are done). */
async function measure(name: string, op: (i: number) => Promise<unknown>, limit = Infinity): Promise<Result> {
  for (let i = 0; i < 20 && i < limit; i++) await op(-1 - i) // warm-up
  const latencies: number[] = []
  let next = 0
  const started = performance.now()
  const deadline = started + seconds * 1000
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline && next < limit) {
        const i = next++
        const t = performance.now()
        await op(i)
        latencies.push(performance.now() - t)
      }
    }),
  )
  const elapsed = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]
  return { name, ops: latencies.length, perSecond: latencies.length / elapsed, p50: at(0.5), p99: at(0.99) }
}

try {
  const results: Result[] = []
  results.push(await measure('GET /v1/health (edge only, floor)', () => fetch(`${url}/v1/health`).then((r) => r.text())))
  results.push(await measure('GET /v1/whoami (auth + Durable Object)', () => call('GET', '/v1/whoami')))
  const lease = (await call('POST', '/v1/leases', { provider: 'static', sshPublicKey: 'ssh-ed25519 AAAA bench', ttlSeconds: 3600 })).lease
  results.push(
    await measure('POST /v1/leases/{id}/heartbeat', () =>
      call('POST', `/v1/leases/${lease.id}/heartbeat`, { telemetry: { load1: 0.5, memoryPercent: 40 } }),
    ),
  )
  const run = (await call('POST', '/v1/runs', { leaseID: lease.id, command: ['npm', 'test'] })).run
  const data = 'ok '.repeat(30) + '\n'
  results.push(
    await measure('POST /v1/runs/{id}/events (one run)', () =>
      call('POST', `/v1/runs/${run.id}/events`, { type: 'stdout', stream: 'stdout', data }),
    ),
  )
  await call('POST', `/v1/leases/${lease.id}/release`, { delete: true })
  const created: string[] = []
  results.push(
    await measure(
      'POST /v1/leases (static pool create)',
      async () => {
        const { lease: l } = await call('POST', '/v1/leases', { provider: 'static', sshPublicKey: 'ssh-ed25519 AAAA bench' })
        created.push(l.id)
      },
      poolSize - 40,
    ),
  )
  const events = await call('GET', `/v1/runs/${run.id}/events?after=0&limit=1`)
  if (!events.events?.length) throw new Error('run events were not recorded')

  const floor = results[0].perSecond
  process.stdout.write(`\nbroker under workerd (crabbox broker dev), ${concurrency} concurrent clients, ${seconds}s per row\n\n`)
  process.stdout.write('| Request | Requests | Per second | p50 | p99 | vs /v1/health |\n| --- | --- | --- | --- | --- | --- |\n')
  for (const r of results) {
    process.stdout.write(
      `| ${r.name} | ${r.ops} | ${r.perSecond.toFixed(0)} | ${r.p50.toFixed(1)} ms | ${r.p99.toFixed(1)} ms | ${(r.perSecond / floor).toFixed(2)} |\n`,
    )
  }
} finally {
  await broker.stop()
}
