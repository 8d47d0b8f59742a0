// `npm run bench -- broker-fairness [--rounds N] [--samples N]`: how much one caller can slow another
// through the broker (`crabbox broker dev`, workerd on loopback), as ratios measured in one run:
// - a caller's run-event append to its own inflated (~2 MB results + telemetry) run vs a small one;
// - a victim's append while six loops of the attacker append to the inflated run vs the small one;
// - a victim's append (its run watched over /v1/control) while the attacker holds as many control
//   sockets as the broker lets it open (asks for 300), all subscribed to the attacker's run, vs quiet.
// Every pair is measured in alternating rounds (a, b, b, a, …) so load that comes and goes, and the
// broker's own drift over a few thousand requests, hit both sides alike. The worker tests hold the
// deterministic side of the same properties (test/worker/security-runs.test.ts and security-sockets).
import WebSocket from 'ws'
import { startBroker } from '../../test/support/broker.js'
import { loadAverage, median } from '../common.js'

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(`--${name}`) + 1]) || fallback
const rounds = arg('rounds', 8)
const samples = arg('samples', 25)
const token = 'bench-fairness'
const broker = await startBroker({ env: { CRABBOX_SHARED_TOKEN: token } })

const headersOf = (owner: string) => ({ authorization: `Bearer ${token}`, 'x-crabbox-owner': owner, 'content-type': 'application/json' })
const attacker = headersOf('attacker@example.com')
const victim = headersOf('victim@example.com')

async function call(headers: Record<string, string>, method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(broker.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await response.text()
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 200)}`)
  return JSON.parse(text)
}

const append = (headers: Record<string, string>, runID: string, data: string) =>
  call(headers, 'POST', `/v1/runs/${runID}/events`, { type: 'stdout', stream: 'stdout', data })

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await fn()
  return performance.now() - started
}

/** Median ms of `count` appends, one at a time. */
async function appendTimes(headers: Record<string, string>, runID: string, count: number): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < count; i++) times.push(await timed(() => append(headers, runID, `line ${i}\n`)))
  return times
}

/** Alternating rounds of `a` and `b` (a, b, b, a, …); the median of each side's samples. */
async function interleaved(a: () => Promise<number[]>, b: () => Promise<number[]>): Promise<{ a: number; b: number }> {
  const times = { a: [] as number[], b: [] as number[] }
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)
    for (const side of order) times[side].push(...(await (side === 'a' ? a() : b())))
  }
  return { a: median(times.a), b: median(times.b) }
}

/** Results inside the broker's bounds (50 files, 70 failures of 4 KiB strings): ~1.9 MB stored. */
function maxedResults() {
  const text = (c: string) => c.repeat(4096)
  const failure = { suite: text('s'), name: text('n'), classname: text('c'), file: text('p'), message: text('m'), type: text('t') }
  return {
    format: 'junit',
    files: Array.from({ length: 50 }, (_, i) => `${i}-${text('f')}`.slice(0, 4096)),
    suites: 1,
    tests: 70,
    failures: 70,
    errors: 0,
    skipped: 0,
    timeSeconds: 1,
    failed: Array.from({ length: 70 }, () => ({ ...failure, kind: 'failure' })),
  }
}

async function inflatedRun(): Promise<string> {
  const { run } = await call(attacker, 'POST', '/v1/runs', { command: ['bench'] })
  await call(attacker, 'POST', `/v1/runs/${run.id}/finish`, { exitCode: 1, log: 'x\n', results: maxedResults() })
  for (let i = 0; i < 60; i++) {
    const capturedAt = new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString()
    await call(attacker, 'POST', `/v1/runs/${run.id}/telemetry`, {
      telemetry: { capturedAt, source: 'ssh-linux', load1: i, memoryPercent: 40 },
    })
  }
  return run.id
}

/** The victim's append times while six attacker loops append to `attackerRun`. */
async function besideAppenders(victimRun: string, attackerRun: string): Promise<number[]> {
  let done = false
  const loops = Array.from({ length: 6 }, async () => {
    while (!done) await append(attacker, attackerRun, '20 bytes of output\n')
  })
  try {
    return await appendTimes(victim, victimRun, samples)
  } finally {
    done = true
    await Promise.all(loops)
  }
}

/**
 * A control socket that asked to subscribe to `runID`, once the answer came back: its first
 * `run_events` frame, or an error frame (a run takes at most 100 subscribers; the socket stays open).
 */
async function subscribed(headers: Record<string, string>, runID: string): Promise<WebSocket | undefined> {
  const ws = new WebSocket(`${broker.url.replace(/^http/, 'ws')}/v1/control`, { headers })
  const opened = await new Promise<boolean>((resolve) => ws.once('open', () => resolve(true)).once('error', () => resolve(false)))
  if (!opened) return undefined
  const first = new Promise<void>((resolve) =>
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data))
      if ((frame.type === 'run_events' && frame.runID === runID) || frame.type === 'error') resolve()
    }),
  )
  ws.send(JSON.stringify({ type: 'subscribe_run', runID, after: 0 }))
  await first
  return ws
}

/** The victim's append times while the attacker holds as many subscribed sockets as it may (asks for `want`). */
async function besideSockets(victimRun: string, attackerRun: string, want: number, held: number[]): Promise<number[]> {
  const sockets: WebSocket[] = []
  try {
    for (let i = 0; i < want; i++) {
      const ws = await subscribed(attacker, attackerRun)
      if (!ws) break
      sockets.push(ws)
    }
    held.push(sockets.length)
    return await appendTimes(victim, victimRun, samples)
  } finally {
    await Promise.all(sockets.map((ws) => new Promise((resolve) => ws.once('close', resolve).close())))
  }
}

try {
  const small = (await call(attacker, 'POST', '/v1/runs', { command: ['bench'] })).run.id
  await call(attacker, 'POST', `/v1/runs/${small}/finish`, { exitCode: 1, log: 'x\n' })
  const inflated = await inflatedRun()
  const recordBytes = (await fetch(`${broker.url}/v1/runs/${inflated}`, { headers: attacker }).then((r) => r.text())).length
  const victimRun = (await call(victim, 'POST', '/v1/runs', { command: ['bench'] })).run.id
  const watcher = await subscribed(victim, victimRun)
  await appendTimes(attacker, small, 20) // warm-up

  const own = await interleaved(
    () => appendTimes(attacker, small, samples),
    () => appendTimes(attacker, inflated, samples),
  )
  const beside = await interleaved(
    () => besideAppenders(victimRun, small),
    () => besideAppenders(victimRun, inflated),
  )
  const attackerRun = (await call(attacker, 'POST', '/v1/runs', { command: ['bench'] })).run.id
  const held: number[] = []
  const sockets = await interleaved(
    () => appendTimes(victim, victimRun, samples),
    () => besideSockets(victimRun, attackerRun, 300, held),
  )
  watcher?.close()

  const ms = (n: number) => `${n.toFixed(1)} ms`
  const row = (what: string, base: number, loaded: number) => `| ${what} | ${ms(base)} | ${ms(loaded)} | ${(loaded / base).toFixed(2)}× |\n`
  process.stdout.write(
    `\nbroker fairness under workerd (crabbox broker dev): medians of ${rounds} alternating rounds of ${samples} appends; ` +
      `inflated record ${(recordBytes / 1e6).toFixed(1)} MB; attacker held ${Math.min(...held)}–${Math.max(...held)} sockets (asked for 300); ` +
      `load average ${loadAverage()}\n\n`,
  )
  process.stdout.write('| What | baseline | under attack | ratio |\n| --- | --- | --- | --- |\n')
  process.stdout.write(row("a caller's append: small record vs its inflated record", own.a, own.b))
  process.stdout.write(row("a victim's append beside 6 appenders: to a small record vs an inflated one", beside.a, beside.b))
  process.stdout.write(row("a victim's (watched) append: quiet vs beside the attacker's subscribed sockets", sockets.a, sockets.b))
} finally {
  await broker.stop()
}
