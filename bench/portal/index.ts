// `npm run bench -- portal [leases] [runs] [samples]`: the portal under `crabbox broker dev` with
// 2,000 leases and 50,000 runs in the Fleet object (defaults). Measures, next to the JSON API
// that answers the same question in the same run:
// - server render time of the lease grid and of a run page (time to the whole body, p50/p95);
// - page weight before compression (HTML plus the live script);
// - live latency: from the moment the CLI's recorder sends a run event until its line is in
//   the open run page in Chromium, against a bare control-socket subscriber in Node.
//
// Seeding: 100,000 API calls take about half an hour on a loaded two-core machine, so the
// bench makes templates through the API (TEMPLATE_LEASES leases, TEMPLATE_RUNS runs with
// their events, logs and command blobs), stops the broker, clones the template rows in the
// object's SQLite file (the `sqlite3` shell) up to the wanted counts, and starts the broker
// again on the same state. The clones are older than an hour (outside the run quotas' window).
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { signUserToken } from '../../worker/auth/tokens.js'
import { startBroker } from '../../test/support/broker.js'
import { launchBrowser, newContext } from '../../test/support/browser.js'

const LEASES = Number(process.argv[2]) || 2000
const RUNS = Number(process.argv[3]) || 50_000
const SAMPLES = Number(process.argv[4]) || 30
const ADMIN = 'bench-admin-token'
const SHARED = 'bench-shared-token'
const SECRET = 'bench-session-secret'
const POOL = 64
const TEMPLATE_LEASES = Math.min(LEASES, 200)
const TEMPLATE_RUNS = Math.min(RUNS, 500)

const log = (text: string) => process.stderr.write(`${text}\n`)
const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))]
const ms = (value: number) => `${value.toFixed(1)} ms`

const stateDir = mkdtempSync(join(tmpdir(), 'crabbox-bench-portal-'))
// Removed however the bench ends (its seeded object is ~80 MB).
process.once('exit', () => rmSync(stateDir, { recursive: true, force: true }))
const brokerOptions = {
  stateDir,
  env: {
    CRABBOX_ADMIN_TOKEN: ADMIN,
    CRABBOX_SHARED_TOKEN: SHARED,
    CRABBOX_SESSION_SECRET: SECRET,
    CRABBOX_DEFAULT_ORG: 'bench',
    CRABBOX_MIN_LEASE_SECONDS: '1',
    CRABBOX_MAX_ACTIVE_LEASES: '100000',
    CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER: '100000',
    CRABBOX_MAX_ACTIVE_LEASES_PER_ORG: '100000',
    CRABBOX_STATIC_POOL: JSON.stringify(
      Array.from({ length: POOL }, (_, i) => ({
        name: `bench-${i}`,
        host: `192.0.2.${i + 1}`,
        port: 22,
        user: 'crabbox',
        workRoot: '/work',
      })),
    ),
  },
}
let broker = await startBroker(brokerOptions)

async function call(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<any> {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(`${broker.url}${path}`, {
      method,
      headers: { ...headers, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    if (response.ok) return response.json()
    const text = await response.text()
    if (attempt < 3 && response.status >= 500) continue
    throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 300)}`)
  }
}

/** Runs `task(i)` for i in [0, count) with `width` in flight. */
async function pool(what: string, count: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let i = next++; i < count; i = next++) await task(i)
    }),
  )
  log(`${what}: ${count} through the API in ${((performance.now() - started) / 1000).toFixed(1)} s`)
}

const claimed = (owner: string) => ({ authorization: `Bearer ${SHARED}`, 'x-crabbox-owner': owner, 'x-crabbox-org': 'bench' })
const admin = { authorization: `Bearer ${ADMIN}` }
const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBenchBenchBenchBenchBenchBench bench'

// ---- seed ----------------------------------------------------------------------
// Template leases: all but the last POOL released (the pool has POOL machines), over 40 owners.
await pool('template leases', TEMPLATE_LEASES, 8, async (i) => {
  const who = claimed(`owner-${i % 40}@bench.test`)
  const { lease } = await call('POST', '/v1/leases', who, { provider: 'static', sshPublicKey: key })
  if (i < TEMPLATE_LEASES - POOL) await call('POST', `/v1/leases/${lease.id}/release`, who, { delete: true })
})
// Template runs over 100 owners, each started, given a line of output and finished with a short log.
await pool('template runs', TEMPLATE_RUNS, 8, async (i) => {
  const who = claimed(`runner-${i % 100}@bench.test`)
  const { run } = await call('POST', '/v1/runs', who, { command: ['npm', 'test', `--shard=${i % 8}`] })
  await call('POST', `/v1/runs/${run.id}/events`, who, { type: 'stdout', stream: 'stdout', data: `run ${i}\nok\n` })
  await call('POST', `/v1/runs/${run.id}/finish`, who, { exitCode: i % 9 === 0 ? 1 : 0, log: `run ${i}\nok\n` })
})

/** Clones every template row (leases released, runs with their events, logs and blobs), `copies` times each, older than the templates. */
function cloneSql(leaseCopies: number, runCopies: number): string {
  const series = (n: number) => `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${n})`
  const when = (column: string) => `strftime('%Y-%m-%dT%H:%M:%fZ', ${column}, '-' || (60 + n.i * 7) || ' minutes')`
  const leaseId = "printf('cbx_%012x', 1099511627776 + l.rowid * 65536 + n.i)"
  const runId = "printf('run_%012x', 1099511627776 + r.rowid * 65536 + n.i)"
  return `
BEGIN;
CREATE TEMP TABLE lease_templates AS SELECT rowid AS rowid, * FROM leases;
CREATE TEMP TABLE run_templates AS SELECT rowid AS rowid, * FROM runs;
${series(leaseCopies)}
INSERT INTO leases (id, owner, org, state, slug, provider, created_at, expires_at, month, reserved_usd, machine, cleanup_at, cleanup_attempts, cleanup_error, record, claimed, credential)
SELECT ${leaseId}, l.owner, l.org, 'released', l.slug || '-' || n.i, l.provider, ${when('l.created_at')}, ${when('l.expires_at')}, l.month, l.reserved_usd, l.machine, NULL, 0, NULL,
  json_set(l.record, '$.id', ${leaseId}, '$.slug', l.slug || '-' || n.i, '$.state', 'released', '$.createdAt', ${when('l.created_at')}, '$.endedAt', ${when('l.expires_at')}), l.claimed, l.credential
FROM lease_templates l, n;
${series(runCopies)}
INSERT INTO runs (id, owner, org, lease_id, state, started_at, record, claimed, stored_bytes)
SELECT ${runId}, r.owner, r.org, r.lease_id, r.state, ${when('r.started_at')},
  json_set(r.record, '$.id', ${runId}, '$.startedAt', ${when('r.started_at')}), r.claimed, r.stored_bytes
FROM run_templates r, n;
${series(runCopies)}
INSERT INTO run_events (run_id, seq, record, message, data)
SELECT ${runId}, e.seq, json_set(e.record, '$.runID', ${runId}), e.message, e.data FROM run_templates r JOIN run_events e ON e.run_id = r.id, n;
${series(runCopies)}
INSERT INTO run_logs (run_id, idx, chunk) SELECT ${runId}, g.idx, g.chunk FROM run_templates r JOIN run_logs g ON g.run_id = r.id, n;
${series(runCopies)}
INSERT INTO run_blobs (run_id, kind, idx, chunk) SELECT ${runId}, b.kind, b.idx, b.chunk FROM run_templates r JOIN run_blobs b ON b.run_id = r.id, n;
COMMIT;
SELECT (SELECT COUNT(*) FROM leases) || ' leases, ' || (SELECT COUNT(*) FROM runs) || ' runs, ' || (SELECT COUNT(*) FROM run_events) || ' run events';
`
}

await broker.stop()
const objectDir = join(
  stateDir,
  'v3',
  'do',
  readdirSync(join(stateDir, 'v3', 'do')).find((name) => name.endsWith('FleetDurableObject'))!,
)
const database = join(
  objectDir,
  readdirSync(objectDir).find((name) => /^[0-9a-f]{64}\.sqlite$/.test(name))!,
)
const cloneStart = performance.now()
const counts = execFileSync('sqlite3', [database], {
  input: cloneSql(Math.ceil((LEASES - TEMPLATE_LEASES) / TEMPLATE_LEASES), Math.ceil((RUNS - TEMPLATE_RUNS) / TEMPLATE_RUNS)),
  encoding: 'utf8',
})
log(`cloned in ${((performance.now() - cloneStart) / 1000).toFixed(1)} s: ${counts.trim()}`)
broker = await startBroker(brokerOptions)

// The viewer: a GitHub-login identity (a user token, as the portal's session cookie holds).
const viewer = { owner: 'viewer@bench.test', org: 'bench', login: 'viewer' }
const userToken = await signUserToken(viewer, SECRET)
const asViewer = { authorization: `Bearer ${userToken}` }
// The run page's run: 400 lines of output over 40 events, finished.
const { run: shown } = await call('POST', '/v1/runs', asViewer, { command: ['sh', '-c', 'for i in $(seq 400); do echo line $i; done'] })
for (let e = 0; e < 40; e++) {
  const data = Array.from({ length: 10 }, (_, k) => `line ${e * 10 + k + 1} ${randomBytes(12).toString('hex')}\n`).join('')
  await call('POST', `/v1/runs/${shown.id}/events`, asViewer, { type: 'stdout', stream: 'stdout', data })
}
await call('POST', `/v1/runs/${shown.id}/finish`, asViewer, { exitCode: 0, log: 'x'.repeat(12_000) })

// ---- render times and weights ------------------------------------------------------
async function timed(path: string, headers: Record<string, string>): Promise<{ ms: number[]; bytes: number }> {
  const times: number[] = []
  let bytes = 0
  for (let i = 0; i < SAMPLES + 3; i++) {
    const start = performance.now()
    const response = await fetch(`${broker.url}${path}`, { headers })
    const body = new Uint8Array(await response.arrayBuffer())
    const elapsed = performance.now() - start
    if (!response.ok) throw new Error(`GET ${path}: ${response.status}`)
    if (i >= 3) times.push(elapsed) // the first three warm the object and the isolate
    bytes = body.byteLength
  }
  return { ms: times, bytes }
}

const rows: [string, string, Record<string, string>][] = [
  ['lease grid, admin (`/portal?state=all`)', '/portal?filter=all', admin],
  ['  JSON: `GET /v1/admin/leases`', '/v1/admin/leases', admin],
  ['lease grid, one owner (`/portal`)', '/portal', claimed('owner-1@bench.test')],
  ['  JSON: `GET /v1/leases`', '/v1/leases', claimed('owner-1@bench.test')],
  ['run page (`/portal/runs/{id}`)', `/portal/runs/${shown.id}`, asViewer],
  ['  JSON: `GET /v1/runs/{id}`', `/v1/runs/${shown.id}`, asViewer],
]
const results: { name: string; p50: number; p95: number; bytes: number }[] = []
for (const [name, path, headers] of rows) {
  const { ms: times, bytes } = await timed(path, headers)
  results.push({ name, p50: percentile(times, 0.5), p95: percentile(times, 0.95), bytes })
}
const script = await fetch(`${broker.url}/portal/assets/live-run.js`, { headers: asViewer })
const scriptBytes = (await script.arrayBuffer()).byteLength

console.log(`portal under \`crabbox broker dev\`, ${LEASES} leases and ${RUNS} runs in the object, ${SAMPLES} samples each`)
console.log('| Page | p50 | p95 | Body (uncompressed) |\n| --- | --- | --- | --- |')
for (const r of results) console.log(`| ${r.name} | ${ms(r.p50)} | ${ms(r.p95)} | ${(r.bytes / 1024).toFixed(1)} KiB |`)
console.log(`| live script (\`/portal/assets/live-run.js\`) | | | ${(scriptBytes / 1024).toFixed(1)} KiB |`)

// ---- live latency -------------------------------------------------------------------
async function liveLatency(): Promise<{ page: number[]; socket: number[] }> {
  const { run } = await call('POST', '/v1/runs', asViewer, { command: ['live'] })
  const browser = await launchBrowser()
  const { context } = await newContext(browser)
  const origin = new URL(broker.url)
  await context.addCookies([
    { name: 'crabbox_session', value: userToken, domain: origin.hostname, path: '/', httpOnly: true, secure: true, sameSite: 'Lax' },
  ])
  const page = await context.newPage()
  await page.goto(`${broker.url}/portal/runs/${run.id}`)
  await page.waitForSelector('#run-live[data-socket="open"]', { state: 'attached' })
  // Page side: the wall-clock time each probe line was first in the log.
  await page.evaluate(() => {
    const g = globalThis as any
    g.__seen = {}
    const logEl = g.document.getElementById('run-log')
    new g.MutationObserver(() => {
      const now = g.performance.timeOrigin + g.performance.now()
      for (const m of logEl.textContent.matchAll(/probe (\d+)\n/g)) g.__seen[m[1]] ??= now
    }).observe(logEl, { childList: true, characterData: true, subtree: true })
  })
  // Node side: a bare control-socket subscriber, the CLI's transport without the CLI.
  const seenBySocket: Record<string, number> = {}
  const ws = new WebSocket(`${broker.url.replace(/^http/, 'ws')}/v1/control`, { headers: asViewer })
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
  ws.on('message', (data) => {
    const now = performance.timeOrigin + performance.now()
    const frame = JSON.parse(String(data))
    for (const event of frame.events ?? []) for (const m of String(event.data ?? '').matchAll(/probe (\d+)\n/g)) seenBySocket[m[1]!] ??= now
  })
  ws.send(JSON.stringify({ type: 'subscribe_run', runID: run.id, after: 0 }))
  const page50: number[] = []
  const socket50: number[] = []
  for (let k = 1; k <= SAMPLES; k++) {
    const sent = performance.timeOrigin + performance.now()
    await call('POST', `/v1/runs/${run.id}/events`, asViewer, { type: 'stdout', stream: 'stdout', data: `probe ${k}\n` })
    let arrived: number | undefined
    for (let wait = 0; wait < 400 && (arrived === undefined || seenBySocket[k] === undefined); wait++) {
      arrived = await page.evaluate((n) => (globalThis as any).__seen[n] as number | undefined, String(k))
      if (arrived === undefined || seenBySocket[k] === undefined) await new Promise((r) => setTimeout(r, 5))
    }
    if (arrived === undefined || seenBySocket[k] === undefined) throw new Error(`probe ${k} never arrived`)
    page50.push(arrived - sent)
    socket50.push(seenBySocket[k]! - sent)
    await new Promise((r) => setTimeout(r, 50))
  }
  ws.close()
  await browser.close()
  return { page: page50, socket: socket50 }
}
const live = await liveLatency()
await broker.stop()

console.log('\nlive line: from the recorder sending the event to the line being shown')
console.log('| Reader | p50 | p95 |\n| --- | --- | --- |')
console.log(`| run page in Chromium | ${ms(percentile(live.page, 0.5))} | ${ms(percentile(live.page, 0.95))} |`)
console.log(`| bare control socket (Node \`ws\`) | ${ms(percentile(live.socket, 0.5))} | ${ms(percentile(live.socket, 0.95))} |`)
