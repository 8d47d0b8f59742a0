// `npm run bench -- ssh [--runs N] [--no-hog]`: per-command latency of a warm `crabbox ssh --id X -- true`
// and `crabbox run --id X --no-sync -- true` (connection agent holding the connection; the fast path
// of src/fast-path.ts) against a fresh OpenSSH login and an OpenSSH ControlMaster mux client, through
// a TCP proxy at 0 ms and 50 ms round-trip time, quiet and with a CPU hog on the second core. Also the
// same `crabbox ssh` through the full oclif CLI (CRABBOX_NO_FAST_PATH=1), the transport alone, and
// the agent's memory with 20 warm connections.
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { cliHome } from '../../test/support/cli.js'
import { sshHost } from '../../test/support/ssh-host.js'
import { tcpProxy, type TcpProxy } from '../../test/support/tcp-proxy.js'
import { cliSnapshot, cpuHog, loadAverage, measure, runChild, traceProfile, type Timed } from '../common.js'
import { SshPool } from '../../src/transport/ssh/pool.js'
import { remoteCommandFor } from '../../src/services/run/remote-command.js'

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 15
const withHog = !process.argv.includes('--no-hog')
// `--trace N`: only the start-up profile, N runs of each hot command at 0 ms with CRABBOX_TRACE_START=1.
const traceRuns = process.argv.includes('--trace') ? Number(process.argv[process.argv.indexOf('--trace') + 1]) || 9 : 0
// `--rtt MS` with `--trace`: the profile at that round-trip time instead of 0 ms.
const traceRtt = process.argv.includes('--rtt') ? Number(process.argv[process.argv.indexOf('--rtt') + 1]) || 0 : 0
// `--baseline PATH`: another build's bin/run.js (say, a checkout of an earlier commit after `npm run
// build`), timed in the same interleaved runs, so before and after meet the same load.
const baseline = process.argv.includes('--baseline') ? process.argv[process.argv.indexOf('--baseline') + 1] : undefined
// Start-up is part of the figure, so measure the build users get (dist plus the oclif
// manifest), built into a private snapshot: in a shared checkout concurrent rebuilds rewrite
// dist/ and drop the manifest under a running benchmark.
const { scratch, cli } = cliSnapshot('ssh', 'ssh')

const host = await sshHost({ ports: [22] })
const proxy = await tcpProxy({ host: host.address, port: 22 })
const home = cliHome()
const control = join(scratch, 'ctl')
// The CLI side runs without NODE_EXTRA_CA_CERTS (it adds ~115 ms to every Node start here).
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
delete env.NODE_EXTRA_CA_CERTS
// The proxy lives in this process, so children must run asynchronously (never *Sync) or it stalls.
const run = (args: string[], options: { capture?: boolean; cwd?: string } = {}) =>
  runChild(args, env, options.cwd ?? scratch, options.capture)
const extraProxies: TcpProxy[] = []

try {
  const lease = JSON.parse(await run([process.execPath, cli, 'warmup', '--json'], { capture: true })) as { id: string }
  const crabbox = (...args: string[]) => [process.execPath, cli, ...args]
  // Pins the host key and starts the agent; --print then gives the same key, port and known_hosts to OpenSSH.
  await run(crabbox('ssh', '--id', lease.id, '--', 'true'))
  const openssh = (await run(crabbox('ssh', '--id', lease.id, '--print'), { capture: true })).trim().replaceAll('~', home.dir).split(' ')
  const base = [...openssh.slice(0, -1), '-o', 'BatchMode=yes']
  const target = openssh[openssh.length - 1]
  await run([...base, '-o', 'ControlMaster=yes', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=yes', '-f', '-N', target])

  if (traceRuns > 0) {
    proxy.setDelay(traceRtt / 2)
    await traceProfile(
      {
        ssh: { args: crabbox('ssh', '--id', lease.id, '--', 'true') },
        'run --no-sync': { args: crabbox('run', '--id', lease.id, '--no-sync', '--', 'true') },
        // `ssh` running what `run` has the runner do: run's gap to ssh, split into runner and client.
        "ssh, run's runner command": { args: crabbox('ssh', '--id', lease.id, '--', runWrapped()) },
        'ssh, spare worker (CRABBOX_NO_AGENT_LANE=1)': {
          args: crabbox('ssh', '--id', lease.id, '--', 'true'),
          env: { ...env, CRABBOX_NO_AGENT_LANE: '1' },
        },
        'ssh, fast path (CRABBOX_NO_THIN_CLIENT=1)': {
          args: crabbox('ssh', '--id', lease.id, '--', 'true'),
          env: { ...env, CRABBOX_NO_THIN_CLIENT: '1' },
        },
        // What no client of ours can go under here: Node's own start and exit, and OpenSSH's whole command.
        'node -e 0': { args: [process.execPath, '-e', '0'] },
        'ControlMaster `true`': { args: [...base, '-o', `ControlPath=${control}`, target, 'true'] },
      },
      { runs: traceRuns, rtt: traceRtt, env, cwd: scratch },
    )
  } else {
    const commands: Record<string, Timed> = {
      ssh: { args: crabbox('ssh', '--id', lease.id, '--', 'true') },
      run: { args: crabbox('run', '--id', lease.id, '--no-sync', '--', 'true') },
      // Before the agent lane, same runs: the thin client's spare worker runs it.
      'ssh, worker': { args: crabbox('ssh', '--id', lease.id, '--', 'true'), env: { ...env, CRABBOX_NO_AGENT_LANE: '1' } },
      // Before the thin client, same runs: the fast path in the CLI's own process.
      'ssh, fast path': { args: crabbox('ssh', '--id', lease.id, '--', 'true'), env: { ...env, CRABBOX_NO_THIN_CLIENT: '1' } },
      'run, fast path': { args: crabbox('run', '--id', lease.id, '--no-sync', '--', 'true'), env: { ...env, CRABBOX_NO_THIN_CLIENT: '1' } },
      'ssh, full CLI': { args: crabbox('ssh', '--id', lease.id, '--', 'true'), env: { ...env, CRABBOX_NO_FAST_PATH: '1' } },
      fresh: { args: [...base, '-o', 'ControlPath=none', target, 'true'] },
      master: { args: [...base, '-o', `ControlPath=${control}`, target, 'true'] },
      // What `run --no-sync -- true` has the runner do (src/services/run/steps/command.ts and
      // remote-command.ts: the work folder, a login bash, the process-group runner and its pid
      // file), through the same ControlMaster: the remote part of `run` no client can skip.
      'master, run wrapper': { args: [...base, '-o', `ControlPath=${control}`, target, runWrapped()] },
      node: { args: [process.execPath, '-e', '0'] },
      ...(baseline && {
        'ssh, baseline': { args: [process.execPath, baseline, 'ssh', '--id', lease.id, '--', 'true'] },
        'run, baseline': { args: [process.execPath, baseline, 'run', '--id', lease.id, '--no-sync', '--', 'true'] },
      }),
    }
    const conditions = [
      { rtt: 0, hog: false },
      { rtt: 50, hog: false },
      ...(withHog
        ? [
            { rtt: 0, hog: true },
            { rtt: 50, hog: true },
          ]
        : []),
    ]
    const rows: string[] = []
    const baselineRows: string[] = []
    const fastRows: string[] = []
    const wrapperRows: string[] = []
    for (const { rtt, hog } of conditions) {
      proxy.setDelay(rtt / 2)
      const stopHog = hog ? cpuHog() : () => {}
      let r: Record<string, number>
      try {
        r = await measure(commands, { runs, warmup: 3, env, cwd: scratch })
      } finally {
        stopHog()
      }
      const ratio = (name: string, to: string) => `${(r[name] / r[to]).toFixed(2)}×`
      rows.push(
        `| ${rtt} ms${hog ? ' + hog' : ''} | ${r.ssh.toFixed(0)} ms | ${r.run.toFixed(0)} ms | ${r['ssh, full CLI'].toFixed(0)} ms | ` +
          `${r.fresh.toFixed(0)} ms | ${r.master.toFixed(0)} ms | ${r.node.toFixed(0)} ms | ${ratio('ssh', 'master')} / ${ratio('run', 'master')} | ` +
          `${ratio('ssh', 'fresh')} / ${ratio('run', 'fresh')} | ${ratio('ssh, full CLI', 'master')} | ${loadAverage().split(' ')[0]} |`,
      )
      fastRows.push(
        `| ${rtt} ms${hog ? ' + hog' : ''} | ${r['ssh, worker'].toFixed(0)} ms | ${ratio('ssh, worker', 'master')} | ` +
          `${r['ssh, fast path'].toFixed(0)} ms | ${r['run, fast path'].toFixed(0)} ms | ` +
          `${ratio('ssh, fast path', 'master')} / ${ratio('run, fast path', 'master')} | ${ratio('ssh, fast path', 'fresh')} / ${ratio('run, fast path', 'fresh')} |`,
      )
      wrapperRows.push(
        `| ${rtt} ms${hog ? ' + hog' : ''} | ${r.master.toFixed(0)} ms | ${r['master, run wrapper'].toFixed(0)} ms | ` +
          `${(r['master, run wrapper'] - r.master).toFixed(1)} ms | ${r.run.toFixed(0)} ms | ${ratio('run', 'master, run wrapper')} |`,
      )
      if (baseline)
        baselineRows.push(
          `| ${rtt} ms${hog ? ' + hog' : ''} | ${r['ssh, baseline'].toFixed(0)} ms | ${r['run, baseline'].toFixed(0)} ms | ` +
            `${ratio('ssh, baseline', 'master')} / ${ratio('run, baseline', 'master')} | ${ratio('ssh, baseline', 'fresh')} / ${ratio('run, baseline', 'fresh')} |`,
        )
    }

    const transport = await transportOnly()
    const memory = await agentMemory(crabbox)
    const lines = [
      '',
      '| RTT | crabbox ssh | crabbox run --no-sync | ssh, full CLI | OpenSSH fresh | ControlMaster | node -e 0 | ssh / run vs ControlMaster | ssh / run vs fresh | full CLI vs ControlMaster | load |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
      '`ssh` in a spare worker instead of the agent lane (CRABBOX_NO_AGENT_LANE=1), and the fast path in the CLI process (CRABBOX_NO_THIN_CLIENT=1), same runs:',
      '',
      '| RTT | ssh, spare worker | vs ControlMaster | ssh, fast path | run --no-sync, fast path | fast path ssh / run vs ControlMaster | fast path ssh / run vs fresh |',
      '|---|---|---|---|---|---|---|',
      ...fastRows,
      '',
      'ControlMaster running `true` and running what `run --no-sync -- true` has the runner do, same runs:',
      '',
      '| RTT | ControlMaster `true` | ControlMaster, run wrapper | the wrapper costs | crabbox run --no-sync | run vs ControlMaster with the wrapper |',
      '|---|---|---|---|---|---|',
      ...wrapperRows,
      ...(baseline
        ? [
            '',
            `baseline (${baseline}), same runs:`,
            '',
            '| RTT | ssh | run --no-sync | ssh / run vs ControlMaster | ssh / run vs fresh |',
            '|---|---|---|---|---|',
            ...baselineRows,
          ]
        : []),
      '',
      `transport only, warm exec at 50 ms RTT: ${transport.spare.toFixed(0)} ms with the agent's spare channel, ${transport.plain.toFixed(0)} ms without`,
      `agent memory (VmRSS): ${memory.one} MiB with 1 warm connection, ${memory.twenty} MiB with ${memory.count}; its spare worker ${memory.spare} MiB`,
      `medians of ${runs} interleaved runs; load average ${loadAverage()}; targets at 50 ms: ≤ 1.0× ControlMaster, ≤ 0.3× fresh; at 0 ms ≤ 40 ms`,
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
  }
} finally {
  await run(['ssh', '-o', `ControlPath=${control}`, '-O', 'exit', 'x'], { capture: true }).catch(() => {})
  await run([process.execPath, cli, 'agent', 'stop'], { capture: true }).catch(() => {})
  for (const extra of extraProxies) await extra.close()
  await proxy.close()
  await host.stop()
  rmSync(scratch, { recursive: true, force: true })
  rmSync(home.dir, { recursive: true, force: true })
}
// Once, after printing its tables, this bench spun for minutes in Node's own teardown (a handle
// that never closed, seen in a native stack: FreeEnvironment, CleanupHandles), loading every
// bench after it; process.exit does not wait for handles.
process.exit()

/** `run --no-sync -- true`'s command line on the runner, as src/services/run/steps/command.ts builds it. */
function runWrapped(): string {
  const dir = `${host.home}/work/bench-wrapper`
  const { command } = remoteCommandFor(['true'], { pidFile: `/tmp/crabbox-bench-${process.pid}.pid` })
  return `{ cd ${dir} 2>/dev/null || { mkdir -p ${dir} && cd ${dir}; }; } && ${command}`
}

/** A warm exec on a held connection at 50 ms, without any process start: with the agent's spare channel (one round trip) and without it. */
async function transportOnly(): Promise<Record<'spare' | 'plain', number>> {
  proxy.setDelay(25)
  const transport = { spare: 0, plain: 0 }
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
  proxy.setDelay(0)
  return transport
}

/** The agent's resident memory with one warm connection, then with 20 (one per proxy port, each its own pooled target). */
async function agentMemory(
  crabbox: (...args: string[]) => string[],
): Promise<{ one: string; twenty: string; count: number; spare: string }> {
  const rss = async () => {
    const status = JSON.parse(await run(crabbox('agent', 'status', '--json'), { capture: true })) as { pid: number; connections: unknown[] }
    const kib = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${status.pid}/status`, 'utf8'))?.[1])
    return { mib: (kib / 1024).toFixed(1), connections: status.connections.length, pid: status.pid }
  }
  const one = await rss()
  for (let i = 1; i < 20; i++) {
    const extra = await tcpProxy({ host: host.address, port: 22 })
    extraProxies.push(extra)
    // A static host of its own name per port, so each is its own target rather than the lease above.
    const own = { ...env, CRABBOX_STATIC_NAME: `memory-${i}`, CRABBOX_STATIC_PORT: String(extra.port) }
    await runChild(crabbox('ssh', '--', 'true'), own, scratch, true)
  }
  const twenty = await rss()
  return { one: one.mib, twenty: twenty.mib, count: twenty.connections, spare: spareRss(twenty.pid) }
}

/** The resident memory of the agent's spare worker (its child running `warmWorker`), or `none`. */
function spareRss(agent: number): string {
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('warmWorker')) continue
      if (Number(/PPid:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) !== agent) continue
      const kib = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])
      return (kib / 1024).toFixed(1)
    } catch {}
  }
  return 'none'
}
