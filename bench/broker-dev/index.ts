// `npm run bench -- broker-dev [runs]`: time from launch until /v1/health answers, for
// `crabbox broker dev` (what the e2e tests' startBroker() runs) next to plain `wrangler dev`
// on the same wrangler.toml (what a user would run instead), plus the time to stop each.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cliPath, repoRoot } from '../../test/support/cli.js'
import { freePort } from '../../test/support/broker.js'

const runs = Number(process.argv[2]) || 5
const env: NodeJS.ProcessEnv = { ...process.env, WRANGLER_SEND_METRICS: 'false' }
delete env.NODE_EXTRA_CA_CERTS

interface Sample {
  ready: number
  stop: number
}

async function healthy(url: string, child: ChildProcess, log: () => string): Promise<void> {
  while (child.exitCode === null) {
    try {
      if ((await fetch(`${url}/v1/health`)).ok) return
    } catch {}
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`exited ${child.exitCode} before /v1/health answered:\n${log().slice(-3000)}`)
}

async function sample(kind: 'crabbox' | 'wrangler'): Promise<Sample> {
  const port = await freePort()
  const state = mkdtempSync(join(tmpdir(), 'crabbox-bench-broker-dev-'))
  const args =
    kind === 'crabbox'
      ? [cliPath, 'broker', 'dev', '--port', String(port), '--state', state]
      : [
          join(repoRoot, 'node_modules', 'wrangler', 'bin', 'wrangler.js'),
          'dev',
          '--port',
          String(port),
          '--ip',
          '127.0.0.1',
          '--persist-to',
          state,
          '--show-interactive-dev-session=false',
        ]
  const start = performance.now()
  const child = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let log = ''
  for (const stream of [child.stdout!, child.stderr!]) stream.setEncoding('utf8').on('data', (d: string) => (log += d))
  const exited = new Promise((resolve) => child.once('exit', resolve))
  await healthy(`http://127.0.0.1:${port}`, child, () => log)
  const ready = performance.now() - start
  const stopStart = performance.now()
  // crabbox is signalled alone (it takes its wrangler group down); wrangler gets its whole group, as Ctrl-C would.
  if (kind === 'crabbox') child.kill('SIGTERM')
  else process.kill(-child.pid!, 'SIGTERM')
  await exited
  const stop = performance.now() - stopStart
  try {
    process.kill(-child.pid!, 'SIGKILL')
  } catch {}
  rmSync(state, { recursive: true, force: true })
  return { ready, stop }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const results: Record<string, Sample[]> = { crabbox: [], wrangler: [] }
await sample('crabbox') // warm caches (esbuild, workerd binary) before measuring
for (let i = 0; i < runs; i++) {
  for (const kind of ['wrangler', 'crabbox'] as const) results[kind].push(await sample(kind))
}
const row = (name: string, samples: Sample[]) =>
  `| ${name} | ${median(samples.map((s) => s.ready)).toFixed(0)} ms | ${median(samples.map((s) => s.stop)).toFixed(0)} ms |`
console.log(`broker start-up to first /v1/health answer, median of ${runs} runs`)
console.log('| Command | Ready | Stop |\n| --- | --- | --- |')
console.log(row('`wrangler dev` (plain)', results.wrangler))
console.log(row('`crabbox broker dev`', results.crabbox))
const ratio = median(results.crabbox.map((s) => s.ready)) / median(results.wrangler.map((s) => s.ready))
console.log(`crabbox broker dev / wrangler dev (ready): ${ratio.toFixed(2)}x`)
