/**
 * `npm run bench -- sync [--files N] [--mb M] [--rtt ms] [--runs N] [--cold-only | --warm-only] [--seed] [--random] [--hog]`
 *
 * crabbox's sync engine against `rsync -az --delete` over OpenSSH with a live
 * ControlMaster, both through the same TCP proxy adding latency (default 50 ms
 * RTT), on a generated git repository (default 20,000 files, ~200 MB).
 * crabbox runs through `syncWorkdir()` on one warm ssh2 connection with a spare
 * session channel (what the connection agent holds between CLI runs), the
 * counterpart of a live ControlMaster. Scenarios: cold (empty remote dir),
 * no-change re-sync, one changed file (synced the way `run --id` does: the
 * local check awaited first, then the folded apply alone). Prints medians and crabbox/rsync ratios. `--seed` turns the git
 * seed on (the repository has no origin, so the runner cannot fetch: the seed
 * travels over SSH, which rsync of the tree does not have to do); `--random`
 * fills the files with incompressible bytes; `--hog` keeps a busy loop on the
 * second core for the whole bench.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defaultConfig } from '../../src/config/schema.js'
import { buildManifest, checkUnchanged, syncWorkdir } from '../../src/services/sync/index.js'
import { formatBytes } from '../../src/ui/format.js'
import { cacheDir } from '../../src/services/sync/hash-cache.js'
import { connect } from '../../src/transport/ssh/connection.js'
import type { SshSession } from '../../src/transport/ssh/types.js'
import { createProgress } from '../../src/ui/progress.js'
import { sshHost } from '../../test/support/ssh-host.js'
import { fileURLToPath } from 'node:url'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}
const FILES = arg('files', 20_000)
const MB = arg('mb', 200)
const RTT = arg('rtt', 50)
const RUNS = arg('runs', 5)
const COLD_ONLY = process.argv.includes('--cold-only')
const WARM_ONLY = process.argv.includes('--warm-only')
const SEED = process.argv.includes('--seed')
const RANDOM = process.argv.includes('--random')
const HOG = process.argv.includes('--hog')

const home = mkdtempSync(join(tmpdir(), 'crabbox-bench-sync-'))
Object.assign(process.env, {
  XDG_STATE_HOME: join(home, 'state'),
  XDG_CONFIG_HOME: join(home, 'config'),
  XDG_RUNTIME_DIR: join(home, 'run'),
})

/** Source-like text: words from a small vocabulary, so it compresses roughly like code. */
function generateRepo(root: string): void {
  let seed = 42
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) / 0x7fffffff
  const words = Array.from(
    { length: 4096 },
    (_, i) => `${['const', 'let', 'fn', 'x', 'value', 'result', 'await', 'return'][i % 8]}${Math.floor(rand() * 1e6).toString(36)}`,
  )
  const avg = Math.floor((MB * 1024 * 1024) / FILES)
  for (let i = 0; i < FILES; i++) {
    const dir = join(root, `pkg${i % 40}`, `mod${Math.floor(i / 40) % 25}`)
    if (i < 1000) mkdirSync(dir, { recursive: true })
    const size = Math.max(64, Math.floor(avg * (0.25 + rand() * 1.5)))
    if (RANDOM) {
      writeFileSync(join(dir, `file${i}.bin`), randomBytes(size))
      continue
    }
    const parts: string[] = []
    let length = 0
    while (length < size) {
      const line = `${words[Math.floor(rand() * words.length)]} = ${words[Math.floor(rand() * words.length)]}(${Math.floor(rand() * 1e9)});\n`
      parts.push(line)
      length += line.length
    }
    writeFileSync(join(dir, `file${i}.ts`), parts.join('').slice(0, size))
  }
  const git = (...args: string[]) =>
    execFileSync('git', ['-C', root, ...args], {
      stdio: 'ignore',
      env: { ...process.env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b' },
    })
  git('init', '-q', '-b', 'main')
  git('add', '-A')
  git('commit', '-qm', 'bench')
}

/** bench/sync/proxy.ts in a child process (through tsx, like the bench itself). */
async function proxyProcess(host: string, port: number, delayMs: number): Promise<{ host: string; port: number; close(): Promise<void> }> {
  const tsx = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'node_modules', 'tsx', 'dist', 'cli.mjs')
  const child = spawn(process.execPath, [tsx, fileURLToPath(new URL('./proxy.ts', import.meta.url)), host, String(port), String(delayMs)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const line = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      if (out.includes('\n')) resolve(out.split('\n')[0])
    })
    child.on('exit', (code) => reject(new Error(`proxy exited ${code}`)))
  })
  return {
    host: '127.0.0.1',
    port: (JSON.parse(line) as { port: number }).port,
    close: () =>
      new Promise<void>((resolve) => {
        child.on('exit', () => resolve())
        child.stdin.end()
      }),
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

function time(command: string, args: string[]): Promise<number> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) =>
      code === 0 ? resolve(performance.now() - started) : reject(new Error(`${command} exited ${code}: ${stderr}`)),
    )
  })
}

// eslint-disable-next-line max-lines-per-function -- the benchmark reads top to bottom: setup, each scenario side by side, report
async function main() {
  // The generated repo is kept between bench runs (it takes a while to write).
  const repo = join(tmpdir(), `crabbox-bench-sync-repo-v2-${FILES}-${MB}${RANDOM ? '-random' : ''}`)
  if (!existsSync(join(repo, '.git', 'crabbox-bench-ready'))) {
    rmSync(repo, { recursive: true, force: true })
    process.stderr.write(`generating ${FILES} files / ~${MB} MB in ${repo} ...\n`)
    generateRepo(repo)
    writeFileSync(join(repo, '.git', 'crabbox-bench-ready'), '')
  }
  rmSync(cacheDir(repo), { recursive: true, force: true })
  // The hog: a busy loop pinned to the second core (taskset when present), for the "under load" figures.
  const hasTaskset = spawnSync('taskset', ['-V']).status === 0
  const hog = HOG
    ? spawn(hasTaskset ? 'taskset' : process.execPath, [...(hasTaskset ? ['-c', '1', process.execPath] : []), '-e', 'for (;;) {}'], {
        stdio: 'ignore',
      })
    : undefined
  const host = await sshHost({ name: 'benchsync' })
  const proxy = await proxyProcess(host.address, host.ports[0], RTT / 2)
  const control = join(home, 'cm.sock')
  const ssh = [
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-i',
    host.privateKeyPath,
    '-p',
    String(proxy.port),
    '-o',
    `ControlPath=${control}`,
  ]
  let masterLog = ''
  const startMaster = () => {
    const child = spawn(
      'ssh',
      [...ssh, '-o', 'ControlMaster=yes', '-o', 'ControlPersist=no', '-o', 'ServerAliveInterval=15', '-N', `${host.user}@${proxy.host}`],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    child.stderr.on('data', (d) => (masterLog += d))
    return child
  }
  let master = startMaster()
  let rsyncRetries = 0
  // One warm connection with a session channel opened ahead of time, as the connection agent
  // keeps it (a live ControlMaster's client still opens its channel: one round trip more).
  const connection = await connect(
    {
      host: proxy.host,
      port: proxy.port,
      fallbackPorts: [],
      user: host.user,
      privateKeyPath: host.privateKeyPath,
      knownHostsPath: join(home, 'known_hosts'),
    },
    { spareChannel: true },
  )
  const session: SshSession = {
    exec: (command, options) => connection.exec(command, options),
    shell: (options) => connection.shell(options ?? {}),
    close: async () => connection.close(),
  }
  const config = { ...defaultConfig().sync, gitSeed: SEED }
  const progress = createProgress({ quiet: true })
  const localHead = execFileSync('git', ['-C', repo, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim()
  let n = 0
  const rsyncOnce = (dest: string) =>
    time('rsync', ['-az', '--delete', '--exclude', '.git', '-e', `ssh ${ssh.join(' ')}`, `${repo}/`, `${host.user}@${proxy.host}:${dest}/`])
  // On this loaded machine an rsync run occasionally loses its connection; such a run is
  // retried (and counted) rather than ending the bench, with the master restarted if it died.
  const rsync = async (dest: string) => {
    try {
      return await rsyncOnce(dest)
    } catch (error) {
      rsyncRetries++
      process.stderr.write(
        `rsync failed (${(error as Error).message.split('\n')[0]}); master ${master.exitCode === null ? 'alive' : `exited ${master.exitCode}: ${masterLog.trim()}`}; retrying\n`,
      )
      if (master.exitCode !== null) {
        master = startMaster()
        await time('ssh', [...ssh, `${host.user}@${proxy.host}`, 'true'])
      }
      return rsyncOnce(dest)
    }
  }
  // asRun: the way `run --id` syncs (the warm run's guard waits for the local check first, so a
  // small change goes as the folded apply alone). The time ends when the runner holds the files;
  // the local bookkeeping for the next sync (`saved`, which overlaps the command in a run) is
  // awaited after it and reported on its own.
  const savedMs: number[] = []
  const crabbox = async (dest: string, asRun = false) => {
    const started = performance.now()
    // CRABBOX_SYNC_CHANNELS=1 measures the single-channel transfer, CRABBOX_SYNC_COMPRESS=0 the raw link, for comparison.
    const env = Object.fromEntries(
      ['CRABBOX_SYNC_CHANNELS', 'CRABBOX_SYNC_COMPRESS'].filter((name) => process.env[name]).map((name) => [name, process.env[name]]),
    )
    const check = asRun ? checkUnchanged(repo, config) : undefined
    if (check) await check.unchanged
    const result = await syncWorkdir({ repoRoot: repo, workdir: dest, config, session, progress, env, check, checkAwaited: asRun })
    const elapsed = performance.now() - started
    await result.saved
    if (asRun) savedMs.push(performance.now() - started)
    if (process.env.BENCH_DEBUG) process.stderr.write(`${JSON.stringify(result.phases)}\n`)
    if (result.warnings.length > 0) process.stderr.write(`crabbox warned: ${result.warnings.join('; ')}\n`)
    if (SEED) {
      // The seed must leave a usable checkout: HEAD right and `git status` clean.
      let out = ''
      await session.exec(`cd ${dest} && git rev-parse HEAD && git status --porcelain | head -n 3`, { onStdout: (d) => (out += d) })
      const [head, ...dirty] = out.trim().split('\n')
      if (head !== localHead || dirty.length > 0) throw new Error(`runner git not right after the seed: ${out}`)
    }
    return elapsed
  }
  try {
    // Both transports warm: the master is up, the pooled connection has run a command.
    await time('ssh', [...ssh, `${host.user}@${proxy.host}`, 'true'])
    await session.exec('true')
    const results: { scenario: string; rsync: number; crabbox: number }[] = []
    const coldRuns = Math.max(1, Math.min(RUNS, 3))

    const cold = { rsync: [] as number[], crabbox: [] as number[] }
    // One-file edits below land on this file; restore it so every bench run starts alike.
    execFileSync('git', ['-C', repo, 'checkout', '-q', '--', '.'])
    execFileSync('git', ['-C', repo, 'clean', '-fdq'])
    for (let i = 0; i < (WARM_ONLY ? 0 : coldRuns); i++) {
      cold.rsync.push(await rsync(`${host.home}/rsync-cold-${++n}`))
      rmSync(cacheDir(repo), { recursive: true, force: true }) // cold local hash cache too
      cold.crabbox.push(await crabbox(`${host.home}/crabbox-cold-${++n}`))
    }
    if (!WARM_ONLY) results.push({ scenario: 'cold', rsync: median(cold.rsync), crabbox: median(cold.crabbox) })
    if (!COLD_ONLY) await warmScenarios()
    async function warmScenarios() {
      const rsyncDest = `${host.home}/rsync-warm`
      const crabboxDest = `${host.home}/crabbox-warm`
      await rsync(rsyncDest)
      await crabbox(crabboxDest)
      const same = { rsync: [] as number[], crabbox: [] as number[] }
      for (let i = 0; i < RUNS; i++) {
        same.rsync.push(await rsync(rsyncDest))
        same.crabbox.push(await crabbox(crabboxDest))
      }
      results.push({ scenario: 'no-change', rsync: median(same.rsync), crabbox: median(same.crabbox) })

      const one = { rsync: [] as number[], crabbox: [] as number[] }
      for (let i = 0; i < RUNS; i++) {
        // A tracked file, new content every time.
        writeFileSync(join(repo, 'pkg7/mod7/file287.ts'), `export const edit = '${Date.now()}-${i}'\n`)
        one.rsync.push(await rsync(rsyncDest))
        one.crabbox.push(await crabbox(crabboxDest, true))
      }
      results.push({ scenario: 'one-file', rsync: median(one.rsync), crabbox: median(one.crabbox) })
      process.stdout.write(`one-file: ${median(savedMs).toFixed(0)} ms until the local bookkeeping was written too\n`)
    }

    // Cold with the git seed: <= 1.2x rsync of the tree (which has no .git to build); one file: <= 0.2x.
    const targets: Record<string, number> = { cold: SEED ? 1.2 : 1.0, 'no-change': 0.5, 'one-file': 0.2 }
    const { files, bytes } = await buildManifest(repo, config)
    console.log(
      `sync bench: ${files} files, ${formatBytes(bytes)}${RANDOM ? ' (incompressible)' : ''}, ${RTT} ms RTT${SEED ? ', git seed on (no origin)' : ''}${HOG ? ', CPU hog on core 1' : ''}; medians (cold: ${coldRuns} runs, others: ${RUNS})${rsyncRetries ? `; ${rsyncRetries} rsync run(s) retried` : ''}`,
    )
    console.log('scenario     rsync -az   crabbox   ratio   target')
    for (const r of results) {
      const ratio = r.crabbox / r.rsync
      console.log(
        `${r.scenario.padEnd(12)} ${`${r.rsync.toFixed(0)} ms`.padStart(9)} ${`${r.crabbox.toFixed(0)} ms`.padStart(9)}   ${ratio.toFixed(2)}x   <= ${targets[r.scenario].toFixed(1)}x ${ratio <= targets[r.scenario] ? 'ok' : 'MISSED'}`,
      )
    }
  } finally {
    master.kill()
    hog?.kill()
    await session.close()
    await proxy.close()
    await host.stop()
    rmSync(home, { recursive: true, force: true })
  }
}

await main()
