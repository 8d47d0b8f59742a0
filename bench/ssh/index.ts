// `npm run bench -- ssh [--runs N]`: per-command latency of a warm `crabbox ssh -- true`
// (connection agent holding the connection) against a fresh OpenSSH login and an OpenSSH
// ControlMaster mux client, through a TCP proxy at 0 ms and 50 ms round-trip time.
import { readFileSync, rmSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { cliHome } from '../../test/support/cli.js'
import { sshHost } from '../../test/support/ssh-host.js'
import { tcpProxy } from '../../test/support/tcp-proxy.js'
import { cliSnapshot, runChild, shellQuote } from '../common.js'
import { SshPool } from '../../src/transport/ssh/pool.js'

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 20
// Start-up is part of the figure, so measure the build users get (dist plus the oclif
// manifest), built into a private snapshot: in a shared checkout concurrent rebuilds rewrite
// dist/ and drop the manifest under a running benchmark.
const { scratch, cli } = cliSnapshot('ssh', 'ssh')

const host = await sshHost({ ports: [22] })
const proxy = await tcpProxy({ host: host.address, port: 22 })
const home = cliHome()
const control = join(scratch, 'ctl')
// The CLI side runs without NODE_EXTRA_CA_CERTS (it adds ~115 ms to every Node start here).
const env: NodeJS.ProcessEnv = { ...process.env, ...home.env, CRABBOX_SSH_KEY: host.privateKeyPath }
delete env.NODE_EXTRA_CA_CERTS
const crabbox = [process.execPath, cli, 'ssh', '--provider', 'ssh', '--static-host', proxy.host, '--static-port', String(proxy.port)]
// The proxy lives in this process, so children must run asynchronously (never *Sync) or it stalls.
const run = (args: string[], options: { capture?: boolean; cwd?: string } = {}) =>
  runChild(args, env, options.cwd ?? scratch, options.capture)
const q = shellQuote

try {
  // Pins the host key and starts the agent; --print then gives the same key, port and known_hosts to OpenSSH.
  await run([...crabbox, '--', 'true'])
  const openssh = (await run([...crabbox, '--print'], { capture: true })).trim().replaceAll('~', home.dir).split(' ')
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
    'crabbox version (oclif start-up)': q([process.execPath, cli, 'version']),
  }
  const results: Record<string, Record<string, number>> = {}
  for (const rtt of [0, 50]) {
    proxy.setDelay(rtt / 2)
    const json = join(scratch, `rtt-${rtt}.json`)
    const measured = rtt === 0 ? { ...commands, ...floors } : commands
    const args = [
      '-N',
      '--warmup',
      '3',
      '--runs',
      String(runs),
      '--export-json',
      json,
      ...Object.entries(measured).flatMap(([name, cmd]) => ['-n', name, cmd]),
    ]
    await run(['hyperfine', ...args])
    const parsed = JSON.parse(readFileSync(json, 'utf8')) as { results: Array<{ command: string; median: number }> }
    results[`${rtt} ms`] = Object.fromEntries(parsed.results.map((r) => [r.command, r.median * 1000]))
  }

  // The transport alone, without any process start: a warm exec on a held connection at 50 ms,
  // with the agent's spare channel (one round trip) and without it (channel open + exec).
  proxy.setDelay(25)
  const transport: Record<string, number> = {}
  for (const spareChannel of [true, false]) {
    const pool = new SshPool({ spareChannel })
    const target = {
      host: proxy.host,
      port: proxy.port,
      fallbackPorts: [],
      user: host.user,
      privateKeyPath: host.privateKeyPath,
      knownHostsPath: join(scratch, 'known_hosts'),
    }
    await pool.exec(target, 'true')
    const times: number[] = []
    for (let i = 0; i < runs; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100)) // let the spare channel reopen, as between CLI runs
      const start = performance.now()
      await pool.exec(target, 'true')
      times.push(performance.now() - start)
    }
    await pool.closeAll()
    transport[spareChannel ? 'spare' : 'plain'] = times.sort((a, b) => a - b)[Math.floor(times.length / 2)]
  }

  const [warm, fresh, master] = Object.keys(commands)
  const lines = [
    '',
    '| RTT | crabbox ssh (agent warm) | ssh fresh login | ssh ControlMaster | crabbox / fresh | crabbox / ControlMaster |',
    '|---|---|---|---|---|---|',
  ]
  for (const [rtt, r] of Object.entries(results)) {
    lines.push(
      `| ${rtt} | ${r[warm].toFixed(0)} ms | ${r[fresh].toFixed(0)} ms | ${r[master].toFixed(0)} ms | ${(r[warm] / r[fresh]).toFixed(2)}× | ${(r[warm] / r[master]).toFixed(2)}× |`,
    )
  }
  lines.push(
    '',
    `transport only, warm exec at 50 ms RTT: ${transport.spare.toFixed(0)} ms with the agent's spare channel, ${transport.plain.toFixed(0)} ms without`,
  )
  const zero = results['0 ms']
  lines.push(
    '',
    `floors at 0 ms: ${Object.keys(floors)
      .map((k) => `${k} ${zero[k].toFixed(0)} ms`)
      .join(', ')}`,
  )
  lines.push(
    `medians of ${runs} runs; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}; targets at 50 ms: ≤ 0.60× fresh login, ≤ 2.00× ControlMaster`,
  )
  process.stdout.write(`${lines.join('\n')}\n`)
} finally {
  await run(['ssh', '-o', `ControlPath=${control}`, '-O', 'exit', 'x']).catch(() => {})
  await run([process.execPath, cli, 'agent', 'stop'], { capture: true }).catch(() => {})
  await proxy.close()
  await host.stop()
  rmSync(scratch, { recursive: true, force: true })
  rmSync(home.dir, { recursive: true, force: true })
}
