// `npm run bench -- attach [--events N]`: how long after a run event is appended `crabbox attach`
// prints it, p50 and p95, over the control WebSocket and over HTTP polling at the default 1 s (what
// the CLI does against a broker without /v1/control, and what the reference CLI falls back to).
// The broker runs under workerd (`crabbox broker dev`) on loopback; the HTTP case goes through a
// proxy that answers 404 for /v1/control. Latency runs from just before the event's POST is sent
// to the moment its line arrives on attach's stdout, so it includes the append itself.
import { spawn } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { startBroker } from '../../test/support/broker.js'
import { cliHome, cliPath, repoRoot } from '../../test/support/cli.js'
import { oldBrokerProxy } from '../../test/support/old-broker-proxy.js'

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(`--${name}`) + 1]) || fallback
const socketEvents = arg('events', 200)
const pollEvents = Math.max(30, Math.round(socketEvents / 4))

if (!existsSync(join(repoRoot, 'dist', 'commands', 'attach.js'))) {
  process.stderr.write('dist/ has no attach command: run `npm run build` first\n')
  process.exit(2)
}

const token = 'bench-attach'
const headers = { authorization: `Bearer ${token}`, 'x-crabbox-owner': 'bench@example.com', 'content-type': 'application/json' }
const broker = await startBroker({ env: { CRABBOX_SHARED_TOKEN: token } })
const home = cliHome()

async function call(method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(broker.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await response.text()
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`)
  return JSON.parse(text)
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const percentile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]

/** Follows a fresh run through `url` and appends `count` events `gap()` ms apart; returns each event's latency. */
async function measure(url: string, count: number, gap: () => number): Promise<number[]> {
  const { run } = await call('POST', '/v1/runs', { command: ['bench'] })
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...home.env,
    CRABBOX_COORDINATOR: url,
    CRABBOX_COORDINATOR_TOKEN: token,
    CRABBOX_OWNER: 'bench@example.com',
  }
  delete env.NODE_EXTRA_CA_CERTS
  const child = spawn(process.execPath, [cliPath, 'attach', run.id], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const sentAt = new Map<number, number>()
  const latencies: number[] = []
  let started = false
  let buffer = ''
  child.stderr.setEncoding('utf8').on('data', (text: string) => (started ||= text.includes('run.started')))
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    const now = performance.now()
    buffer += text
    let end: number
    while ((end = buffer.indexOf('\n')) >= 0) {
      const i = Number(buffer.slice(3, end))
      buffer = buffer.slice(end + 1)
      const at = sentAt.get(i)
      if (at !== undefined) latencies.push(now - at)
    }
  })
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()))
  while (!started) await sleep(20)
  for (let i = -5; i < count; i++) {
    // Negative indexes warm the path and are not counted.
    if (i >= 0) sentAt.set(i, performance.now())
    await call('POST', `/v1/runs/${run.id}/events`, { type: 'stdout', stream: 'stdout', data: `ev ${i}\n` })
    await sleep(gap())
  }
  await call('POST', `/v1/runs/${run.id}/finish`, { exitCode: 0 })
  await exited
  if (latencies.length !== count) throw new Error(`attach printed ${latencies.length} of ${count} events`)
  return latencies.sort((a, b) => a - b)
}

try {
  const socket = await measure(broker.url, socketEvents, () => 20 + Math.random() * 30)
  const old = await oldBrokerProxy(broker.url, { control: false })
  // Random gaps spread the appends over the 1 s polling phase, as real output would be.
  const polling = await measure(old.url, pollEvents, () => 100 + Math.random() * 400).finally(() => old.close())
  const row = (name: string, values: number[]) =>
    `| ${name} | ${values.length} | ${percentile(values, 0.5).toFixed(1)} | ${percentile(values, 0.95).toFixed(1)} | ${values.at(-1)!.toFixed(1)} |`
  console.log(
    `node ${process.version}, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  )
  console.log('| path | events | p50 ms | p95 ms | max ms |')
  console.log('|---|---|---|---|---|')
  console.log(row('control WebSocket', socket))
  console.log(row('HTTP polling, --poll 1s (no /v1/control)', polling))
  console.log(
    `\nsocket p50 is ${(percentile(polling, 0.5) / percentile(socket, 0.5)).toFixed(0)}x lower than polling p50 (target: socket p50 <= 50 ms)`,
  )
} finally {
  await broker.stop()
  rmSync(home.dir, { recursive: true, force: true })
}
