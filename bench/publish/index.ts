// `npm run bench -- publish [MiB] [runs]`: `crabbox artifacts publish` throughput into the broker's
// R2 bucket under `crabbox broker dev` (workerd's local R2 simulation), for one large file and for
// many small ones, next to the same bytes PUT straight to granted URLs from this process (the
// floor: what the broker itself takes) and to local storage (the CLI's own cost).
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startBroker } from '../../test/support/broker.js'
import { cliHome, runCli } from '../../test/support/cli.js'

const mib = Number(process.argv[2]) || 64
const runs = Number(process.argv[3]) || 3
const TOKEN = 'bench-publish-token'
const broker = await startBroker({ env: { CRABBOX_SHARED_TOKEN: TOKEN } })
const home = cliHome()
const scratch = mkdtempSync(join(tmpdir(), 'crabbox-bench-publish-'))
const headers = { authorization: `Bearer ${TOKEN}`, 'x-crabbox-owner': 'bench@example.com', 'content-type': 'application/json' }

function folder(name: string, files: number, bytes: number): string {
  const dir = join(scratch, name)
  mkdirSync(dir, { recursive: true })
  for (let i = 0; i < files; i++) writeFileSync(join(dir, `f${String(i).padStart(4, '0')}.bin`), randomBytes(bytes))
  return dir
}

const sets = [
  { label: `1 file of ${mib} MiB`, dir: folder('large', 1, mib * 1024 * 1024) },
  { label: `200 files of 64 KiB`, dir: folder('small', 200, 64 * 1024) },
]

const total = (dir: string) => readdirSync(dir).reduce((n, f) => n + (f.endsWith('.bin') ? readFileSync(join(dir, f)).byteLength : 0), 0)

async function cli(dir: string, storage: 'broker' | 'local', n: number): Promise<number> {
  const start = performance.now()
  const args = ['artifacts', 'publish', '--dir', dir, '--storage', storage, '--prefix', `bench/${n}`, '--json']
  if (storage === 'local') args.push('--bucket', join(scratch, 'local-copy'))
  const result = await runCli(args, {
    home,
    env: { CRABBOX_COORDINATOR: broker.url, CRABBOX_COORDINATOR_TOKEN: TOKEN, CRABBOX_OWNER: 'bench@example.com' },
    timeoutMs: 600_000,
  })
  if (result.code !== 0) throw new Error(result.stderr)
  return performance.now() - start
}

/** The same bytes through the grant API and parallel PUTs from this process (no CLI start, no file reads). */
async function direct(dir: string, n: number): Promise<number> {
  const names = readdirSync(dir).filter((f) => f.endsWith('.bin'))
  const bodies = names.map((f) => readFileSync(join(dir, f)))
  const start = performance.now()
  const files: { upload: { url: string; headers: Record<string, string> } }[] = []
  // The broker grants at most 100 files per request, as the CLI batches them.
  for (let from = 0; from < names.length; from += 100) {
    const batch = names.slice(from, from + 100).map((name, i) => ({ name, size: bodies[from + i]!.byteLength }))
    const grant = await fetch(`${broker.url}/v1/artifacts/uploads`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ prefix: `direct/${n}`, files: batch }),
    })
    if (grant.status !== 201) throw new Error(`grant: ${grant.status} ${await grant.text()}`)
    files.push(...((await grant.json()) as { files: typeof files }).files)
  }
  let next = 0
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < files.length) {
        const i = next++
        const put = await fetch(files[i]!.upload.url, { method: 'PUT', headers: files[i]!.upload.headers, body: bodies[i] })
        if (!put.ok) throw new Error(`PUT ${put.status}`)
      }
    }),
  )
  return performance.now() - start
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
try {
  console.log(`artifacts publish under broker dev (local R2), median of ${runs} runs`)
  console.log('| Set | `publish --storage broker` | PUTs to grants (no CLI) | `publish --storage local` | CLI / PUTs |')
  console.log('| --- | --- | --- | --- | --- |')
  for (const set of sets) {
    const bytes = total(set.dir)
    await cli(set.dir, 'broker', -1) // warm the Worker, R2 and the CLI's caches
    const samples = { broker: [] as number[], direct: [] as number[], local: [] as number[] }
    for (let i = 0; i < runs; i++) {
      samples.direct.push(await direct(set.dir, i))
      samples.broker.push(await cli(set.dir, 'broker', i))
      samples.local.push(await cli(set.dir, 'local', i))
    }
    const rate = (ms: number) => `${(bytes / 1024 / 1024 / (ms / 1000)).toFixed(1)} MiB/s (${ms.toFixed(0)} ms)`
    const [b, d, l] = [median(samples.broker), median(samples.direct), median(samples.local)]
    console.log(`| ${set.label} | ${rate(b)} | ${rate(d)} | ${rate(l)} | ${(b / d).toFixed(2)}x |`)
  }
} finally {
  await broker.stop()
  rmSync(scratch, { recursive: true, force: true })
  rmSync(home.dir, { recursive: true, force: true })
}
