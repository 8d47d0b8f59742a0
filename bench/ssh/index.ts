// `npm run bench -- ssh [--runs N]`: per-command latency of a warm `crabbox ssh -- true`
// (connection agent holding the connection) against a fresh OpenSSH login and an OpenSSH
// ControlMaster mux client, through a TCP proxy at 0 ms and 50 ms round-trip time.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { cliHome, cliPath, repoRoot } from '../../test/support/cli.js'
import { sshHost } from '../../test/support/ssh-host.js'
import { tcpProxy } from '../../test/support/tcp-proxy.js'

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 20
// Start-up is part of the figure: measure the build users get (dist plus the oclif manifest,
// which a plain tsc rebuild drops as stale).
const manifest = join(repoRoot, 'oclif.manifest.json')
if (!existsSync(join(repoRoot, 'dist', 'commands', 'ssh.js')) || !existsSync(manifest)) {
  process.stderr.write('building (npm run build) ...\n')
  const build = spawnSync('npm', ['run', 'build'], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] })
  if (build.status !== 0) process.exit(build.status ?? 1)
}
// In a shared checkout another build can drop the manifest mid-run; say so rather than report skewed figures quietly.
let manifestLost = false

const host = await sshHost({ ports: [22] })
const proxy = await tcpProxy({ host: host.address, port: 22 })
const home = cliHome()
const scratch = mkdtempSync(join(tmpdir(), 'crabbox-bench-ssh-'))
const control = join(scratch, 'ctl')
// The CLI side runs without NODE_EXTRA_CA_CERTS (it adds ~115 ms to every Node start here).
const env: NodeJS.ProcessEnv = { ...process.env, ...home.env, CRABBOX_SSH_KEY: host.privateKeyPath }
delete env.NODE_EXTRA_CA_CERTS
const crabbox = [process.execPath, cliPath, 'ssh', '--provider', 'ssh', '--static-host', proxy.host, '--static-port', String(proxy.port)]
// The proxy lives in this process, so children must run asynchronously (never *Sync) or it stalls.
function run(args: string[], options: { capture?: boolean; cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(args[0], args.slice(1), { env, cwd: options.cwd, stdio: ['ignore', options.capture ? 'pipe' : 'inherit', 'inherit'] })
    let out = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(' ')} exited ${code}`))))
  })
}
const q = (args: string[]) => args.map((a) => (/^[\w@%+=:,./~-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ')

try {
  // Pins the host key and starts the agent; --print then gives the same key, port and known_hosts to OpenSSH.
  await run([...crabbox, '--', 'true'])
  const openssh = (await run([...crabbox, '--print'], { capture: true }))
    .trim()
    .replaceAll('~', home.dir)
    .split(' ')
  const base = [...openssh.slice(0, -1), '-o', 'BatchMode=yes']
  const target = openssh[openssh.length - 1]
  await run([...base, '-o', 'ControlMaster=yes', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=yes', '-f', '-N', target])

  const commands = {
    'crabbox ssh -- true (agent warm)': q([...crabbox, '--', 'true']),
    'ssh host true (fresh OpenSSH login)': q([...base, '-o', 'ControlPath=none', target, 'true']),
    'ssh host true (ControlMaster live)': q([...base, '-o', `ControlPath=${control}`, target, 'true']),
  }
  // Floors that explain the crabbox figure: Node itself, and oclif running a trivial command.
  const floors = {
    'node -e 0 (Node start-up)': q([process.execPath, '-e', '0']),
    'crabbox version (oclif start-up)': q([process.execPath, cliPath, 'version']),
  }
  const results: Record<string, Record<string, number>> = {}
  for (const rtt of [0, 50]) {
    proxy.setDelay(rtt / 2)
    const json = join(scratch, `rtt-${rtt}.json`)
    const measured = rtt === 0 ? { ...commands, ...floors } : commands
    const args = ['-N', '--warmup', '3', '--runs', String(runs), '--export-json', json, ...Object.entries(measured).flatMap(([name, cmd]) => ['-n', name, cmd])]
    if (!existsSync(manifest)) await run([process.execPath, join(repoRoot, 'node_modules', 'oclif', 'bin', 'run.js'), 'manifest'], { capture: true, cwd: repoRoot })
    await run(['hyperfine', ...args])
    if (!existsSync(manifest)) manifestLost = true
    const parsed = JSON.parse(readFileSync(json, 'utf8')) as { results: Array<{ command: string; median: number }> }
    results[`${rtt} ms`] = Object.fromEntries(parsed.results.map((r) => [r.command, r.median * 1000]))
  }

  const [warm, fresh, master] = Object.keys(commands)
  const lines = ['', '| RTT | crabbox ssh (agent warm) | ssh fresh login | ssh ControlMaster | crabbox / fresh | crabbox / ControlMaster |', '|---|---|---|---|---|---|']
  for (const [rtt, r] of Object.entries(results)) {
    lines.push(`| ${rtt} | ${r[warm].toFixed(0)} ms | ${r[fresh].toFixed(0)} ms | ${r[master].toFixed(0)} ms | ${(r[warm] / r[fresh]).toFixed(2)}× | ${(r[warm] / r[master]).toFixed(2)}× |`)
  }
  const zero = results['0 ms']
  lines.push('', `floors at 0 ms: ${Object.keys(floors).map((k) => `${k} ${zero[k].toFixed(0)} ms`).join(', ')}`)
  lines.push(`medians of ${runs} runs; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; targets at 50 ms: ≤ 0.60× fresh login, ≤ 2.00× ControlMaster`)
  if (manifestLost) lines.push('WARNING: oclif.manifest.json was dropped during the run (a concurrent tsc build); start-up figures are inflated')
  process.stdout.write(`${lines.join('\n')}\n`)
} finally {
  await run(['ssh', '-o', `ControlPath=${control}`, '-O', 'exit', 'x']).catch(() => {})
  await run([process.execPath, cliPath, 'agent', 'stop'], { capture: true }).catch(() => {})
  await proxy.close()
  await host.stop()
  rmSync(scratch, { recursive: true, force: true })
  rmSync(home.dir, { recursive: true, force: true })
}
