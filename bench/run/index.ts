// `npm run bench -- run [--runs N]`: a warm `crabbox run --id X` (agent holding the connection)
// at 50 ms round-trip time, with --no-sync and with an unchanged 20k-file checkout, against a
// fresh OpenSSH `ssh host true` and an OpenSSH ControlMaster client, all through one TCP proxy.
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { cliHome } from '../../test/support/cli.js'
import { sshHost } from '../../test/support/ssh-host.js'
import { tcpProxy } from '../../test/support/tcp-proxy.js'
import { cliSnapshot, runChild, shellQuote } from '../common.js'

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 15
const files = Number(process.argv[process.argv.indexOf('--files') + 1]) || 20_000
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
const q = shellQuote

try {
  const lease = JSON.parse(await run([process.execPath, cli, 'warmup', '--json'], { capture: true })) as { id: string }
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

  proxy.setDelay(25) // 50 ms round trip
  const commands = {
    'crabbox run --id X --no-sync -- true': `cd ${q([repo])} && ${q(crabbox('--no-sync'))}`,
    'crabbox run --id X -- true (unchanged 20k files)': `cd ${q([repo])} && ${q(crabbox())}`,
    'ssh host true (fresh OpenSSH login)': q([...ssh, '-o', 'ControlPath=none', target, 'true']),
    'ssh host true (ControlMaster live)': q([...ssh, '-o', `ControlPath=${control}`, target, 'true']),
  }
  const json = join(scratch, 'run.json')
  await run([
    'hyperfine',
    '-N',
    '--warmup',
    '2',
    '--runs',
    String(runs),
    '--export-json',
    json,
    ...Object.entries(commands).flatMap(([name, cmd]) => ['-n', name, `bash -c ${q([cmd])}`]),
  ])
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
  const parsed = JSON.parse(readFileSync(json, 'utf8')) as { results: Array<{ command: string; median: number }> }
  const r = Object.fromEntries(parsed.results.map((x) => [x.command, x.median * 1000]))
  const [noSync, synced, fresh, master] = Object.keys(commands)
  const lines = ['', '| At 50 ms RTT | median | / fresh ssh | / ControlMaster |', '|---|---|---|---|']
  for (const name of [noSync, synced, fresh, master])
    lines.push(`| ${name} | ${r[name].toFixed(0)} ms | ${(r[name] / r[fresh]).toFixed(2)}× | ${(r[name] / r[master]).toFixed(2)}× |`)
  lines.push(
    '',
    `inside the CLI (--timing-json, --no-sync): total ${mid(timings.map((t) => t.totalMs))} ms, of which the remote command ${mid(timings.map((t) => t.commandMs))} ms`,
  )
  const last = syncedTimings.at(-1)
  if (last) {
    const warm = syncedTimings.filter((t) =>
      t.syncPhases.some((p) => p.name === 'fingerprint_remote' && /same exec as the command/.test(p.reason ?? '')),
    ).length
    lines.push(
      `inside the CLI, unchanged ${files} files: total ${mid(syncedTimings.map((t) => t.totalMs))} ms, sync ${mid(syncedTimings.map((t) => t.syncMs))} ms, command ${mid(syncedTimings.map((t) => t.commandMs))} ms; ${warm} of ${syncedTimings.length} runs checked the fingerprint in the command's exec (last run: ${last.syncPhases.map((p) => `${p.name} ${p.ms}`).join(', ')})`,
    )
  }
  lines.push(
    `medians of ${runs} runs; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}; targets: ≤ 0.60× fresh ssh, ≤ 2.00× ControlMaster`,
  )
  process.stdout.write(`${lines.join('\n')}\n`)
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
