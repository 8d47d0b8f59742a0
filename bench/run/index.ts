// `npm run bench -- run [--runs N] [--files N] [--no-hog]`: a warm `crabbox run --id X` (agent
// holding the connection) at 50 and 0 ms round-trip time, and at 50 ms with a CPU hog on the second
// core, with --no-sync and with an unchanged 20k-file checkout, against a fresh OpenSSH
// `ssh host true` and an OpenSSH ControlMaster client, all through one TCP proxy.
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cliHome } from '../../test/support/cli.js'
import { sshHost } from '../../test/support/ssh-host.js'
import { tcpProxy } from '../../test/support/tcp-proxy.js'
import { cliSnapshot, cpuHog, loadAverage, measure, runChild, traceProfile, type Timed } from '../common.js'

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 15
const files = Number(process.argv[process.argv.indexOf('--files') + 1]) || 20_000
const withHog = !process.argv.includes('--no-hog')
// `--trace N`: only the profile, N runs of `run --no-sync` and of the unchanged run at 0 ms with CRABBOX_TRACE_START=1,
// then N of the one-file run.
const traceRuns = process.argv.includes('--trace') ? Number(process.argv[process.argv.indexOf('--trace') + 1]) || 9 : 0
// Measure the build users get (dist + oclif manifest) from a private snapshot: others rebuild
// the shared dist/ while we measure.
const { scratch, cli } = cliSnapshot('run', 'run')

// The checkout: `files` small files in 200 folders, committed.
process.stderr.write(`creating a ${files}-file git checkout ...\n`)
const repo = join(scratch, 'repo')
for (let i = 0; i < files; i++) {
  const dir = join(repo, `d${i % 200}`)
  if (i < 200) mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, `f${i}.txt`), `file ${i}\n`)
}
for (const args of [
  ['init', '-q'],
  ['add', '.'],
  ['-c', 'user.email=b@example.com', '-c', 'user.name=b', 'commit', '-qm', 'bench'],
]) {
  spawnSync('git', args, { cwd: repo, stdio: 'ignore' })
}

const host = await sshHost({ ports: [22] })
const proxy = await tcpProxy({ host: host.address, port: 22 })
const home = cliHome()
const control = join(scratch, 'ctl')
const env: NodeJS.ProcessEnv = {
  ...process.env,
  ...home.env,
  CRABBOX_PROVIDER: 'ssh',
  CRABBOX_STATIC_HOST: proxy.host,
  CRABBOX_STATIC_PORT: String(proxy.port),
  CRABBOX_STATIC_USER: host.user,
  CRABBOX_STATIC_WORK_ROOT: `${host.home}/work`,
  CRABBOX_SSH_KEY: host.privateKeyPath,
}
delete env.NODE_EXTRA_CA_CERTS // adds ~115 ms to every Node start here
// The proxy lives in this process, so children run asynchronously (never *Sync) or it stalls.
const run = (args: string[], options: { capture?: boolean; cwd?: string } = {}) =>
  runChild(args, env, options.cwd ?? scratch, options.capture)

try {
  // From the checkout: a lease is claimed by the checkout it was leased from, and the runs below use it there.
  const lease = JSON.parse(await run([process.execPath, cli, 'warmup', '--json'], { capture: true, cwd: repo })) as { id: string }
  const crabbox = (...extra: string[]) => [process.execPath, cli, 'run', '--id', lease.id, ...extra, '--', 'true']
  // First sync of the big checkout is not what we measure: do it without delay.
  await run(crabbox(), { cwd: repo })
  const ssh = [
    'ssh',
    '-i',
    host.privateKeyPath,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-p',
    String(proxy.port),
  ]
  const target = `${host.user}@${proxy.host}`
  await run([...ssh, '-o', 'ControlMaster=yes', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=yes', '-f', '-N', target])

  const inRepo = (args: string[], extra: NodeJS.ProcessEnv = {}): Timed => ({ args, cwd: repo, env: { ...env, ...extra } })
  // The same two with the fast path in the CLI's own process (before the thin client), in the same runs.
  const fastPath = { CRABBOX_NO_THIN_CLIENT: '1' }
  // One changed file, written right before each run (a new size and content every time), then the
  // command: crabbox's `run --id`, against rsync of the tree over the ControlMaster and `ssh true` on it.
  const touch = 'printf "%s\\n" "$$" > d0/f0.txt'
  const quote = (args: string[]) => args.map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`).join(' ')
  const overMaster = [...ssh, '-o', `ControlPath=${control}`]
  const rsyncDest = `${host.home}/work/rsync-one-file`
  await run(['rsync', '-az', '--delete', '--exclude', '.git', '-e', quote(overMaster), `${repo}/`, `${target}:${rsyncDest}/`]).catch(
    () => {},
  )
  const commands: Record<string, Timed> = {
    'crabbox run --id X --no-sync -- true': inRepo(crabbox('--no-sync')),
    'crabbox run --id X -- true (unchanged 20k files)': inRepo(crabbox()),
    '… --no-sync, fast path (CRABBOX_NO_THIN_CLIENT=1)': inRepo(crabbox('--no-sync'), fastPath),
    '… unchanged, fast path (CRABBOX_NO_THIN_CLIENT=1)': inRepo(crabbox(), fastPath),
    'ssh host true (fresh OpenSSH login)': { args: [...ssh, '-o', 'ControlPath=none', target, 'true'] },
    'ssh host true (ControlMaster live)': { args: [...overMaster, target, 'true'] },
  }
  // Timed on their own, after the others: interleaved with them, every "unchanged" run would sync the change.
  const oneFileCommands: Record<string, Timed> = {
    'ssh host true (ControlMaster live)': commands['ssh host true (ControlMaster live)'],
    'one changed file: crabbox run --id X -- true': inRepo(['sh', '-c', `${touch} && exec ${quote(crabbox())}`]),
    'one changed file: rsync -az + ssh true (ControlMaster)': inRepo([
      'sh',
      '-c',
      `${touch} && rsync -az --delete --exclude .git -e ${quote([quote(overMaster)])} ./ ${target}:${rsyncDest}/ && exec ${quote([...overMaster, target, `cd ${rsyncDest} && true`])}`,
    ]),
  }
  if (traceRuns > 0) {
    await traceProfile(
      {
        'run --no-sync': commands['crabbox run --id X --no-sync -- true'],
        'run, unchanged': commands['crabbox run --id X -- true (unchanged 20k files)'],
      },
      { runs: traceRuns, rtt: 0, env, cwd: repo },
    )
    // On its own: interleaved, the unchanged runs would sync the change.
    await traceProfile(
      { 'run, one changed file': oneFileCommands['one changed file: crabbox run --id X -- true'] },
      { runs: traceRuns, rtt: 0, env, cwd: repo },
    )
  } else {
    const [noSync, synced, noSyncFast, syncedFast, fresh, master] = Object.keys(commands)
    const [, oneFile, oneFileRsync] = Object.keys(oneFileCommands)
    /** Puts the changed file back as committed, a minute old (outside the racy window), and syncs it once. */
    const restore = async () => {
      await run(['sh', '-c', 'printf "file 0\\n" > d0/f0.txt && touch -d "1 minute ago" d0/f0.txt'], { cwd: repo })
      await run(crabbox(), { cwd: repo })
    }
    const lines = ['', '| RTT | command | median | / fresh ssh | / ControlMaster | load |', '|---|---|---|---|---|---|']
    for (const { rtt, hog } of [{ rtt: 50, hog: false }, { rtt: 0, hog: false }, ...(withHog ? [{ rtt: 50, hog: true }] : [])]) {
      proxy.setDelay(rtt / 2)
      const stopHog = hog ? cpuHog() : () => {}
      let r: Record<string, number>
      let one: Record<string, number>
      try {
        r = await measure(commands, { runs, warmup: 2, env, cwd: scratch })
        one = await measure(oneFileCommands, { runs, warmup: 2, env, cwd: scratch })
        await restore()
      } finally {
        stopHog()
      }
      const load = loadAverage().split(' ')[0]
      const row = (name: string, ms: number, masterMs: number, freshMs = r[fresh]) =>
        `| ${rtt} ms${hog ? ' + hog' : ''} | ${name} | ${ms.toFixed(0)} ms | ${(ms / freshMs).toFixed(2)}× | ${(ms / masterMs).toFixed(2)}× | ${load} |`
      for (const name of [noSync, synced, noSyncFast, syncedFast, fresh, master]) lines.push(row(name, r[name], r[master]))
      for (const name of [oneFile, oneFileRsync]) lines.push(row(name, one[name], one[master]))
      lines.push(
        `| ${rtt} ms${hog ? ' + hog' : ''} | one changed file: crabbox / rsync | ${(one[oneFile] / one[oneFileRsync]).toFixed(2)}× | | | ${load} |`,
      )
    }
    proxy.setDelay(25) // 50 ms round trip for the timings below
    // Inside the CLI: how much of a warm run is the pipeline itself (the rest is Node + oclif start-up).
    type Timing = { totalMs: number; commandMs: number; syncMs: number; syncPhases: { name: string; ms: number; reason?: string }[] }
    const timings: Timing[] = []
    const syncedTimings: Timing[] = []
    for (let i = 0; i < 10; i++) {
      const synced = i >= 5
      const stderr = await new Promise<string>((resolve) => {
        const [node, ...args] = synced ? crabbox('--timing-json') : crabbox('--no-sync', '--timing-json')
        const child = spawn(node, args, { env, cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] })
        let err = ''
        child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
        child.on('close', () => resolve(err))
      })
      try {
        const timing = JSON.parse(stderr.trim().split('\n').at(-1)!) as Timing
        ;(synced ? syncedTimings : timings).push(timing)
      } catch {
        process.stderr.write(`timing run failed:\n${stderr}\n`)
      }
    }
    const mid = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]
    lines.push(
      '',
      `inside the CLI (--timing-json, --no-sync): total ${mid(timings.map((t) => t.totalMs))} ms, of which the remote command ${mid(timings.map((t) => t.commandMs))} ms`,
    )
    const last = syncedTimings.at(-1)
    if (last) {
      const warm = syncedTimings.filter((t) =>
        t.syncPhases.some((p) => p.name === 'fingerprint_remote' && /same exec as the command/.test(p.reason ?? '')),
      ).length
      // The agent's file watcher proved the checkout unchanged (no git listing): the `manifest` phase says so.
      const watched = syncedTimings.filter((t) =>
        t.syncPhases.some((p) => p.name === 'manifest' && /connection agent/.test(p.reason ?? '')),
      ).length
      const checkMs = syncedTimings.map((t) => t.syncPhases.find((p) => p.name === 'manifest')?.ms ?? 0)
      lines.push(
        `inside the CLI, unchanged ${files} files: total ${mid(syncedTimings.map((t) => t.totalMs))} ms, sync ${mid(syncedTimings.map((t) => t.syncMs))} ms, command ${mid(syncedTimings.map((t) => t.commandMs))} ms; ${warm} of ${syncedTimings.length} runs checked the fingerprint in the command's exec, ${watched} proved unchanged by the agent's watcher, the local check ${mid(checkMs)} ms (last run: ${last.syncPhases.map((p) => `${p.name} ${p.ms}`).join(', ')})`,
      )
    }
    lines.push(
      `medians of ${runs} interleaved runs; load average ${loadAverage()}; targets at 50 ms: ≤ 0.3× fresh ssh, ≤ 1.0× ControlMaster (--no-sync), ≤ 1.1× (unchanged checkout)`,
    )
    process.stdout.write(`${lines.join('\n')}\n`)
  }
} finally {
  proxy.setDelay(0)
  await run(['ssh', '-o', `ControlPath=${control}`, '-O', 'exit', 'x'], { capture: true }).catch(() => {})
  await run([process.execPath, cli, 'stop', 'static_' + proxy.host.replace(/\./g, '_')], { capture: true }).catch(() => {})
  await run([process.execPath, cli, 'agent', 'stop'], { capture: true }).catch(() => {})
  await proxy.close()
  await host.stop()
  rmSync(scratch, { recursive: true, force: true })
  rmSync(home.dir, { recursive: true, force: true })
}
