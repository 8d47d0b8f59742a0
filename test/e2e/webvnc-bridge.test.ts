import { connect } from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { fakeWebVncBroker, rfbStandInScript, type FakeViewer, type FakeWebVncBroker } from '../support/fake-webvnc-broker.js'
import { collectOutput, until } from '../support/fixtures.js'
import { pidAlive } from '../support/processes.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'

// The CLI bridge against a fake broker that speaks the WebVNC API (tickets, the agent socket, a viewer
// side this test drives) and a stand-in RFB server on a real sshd host's loopback.
describe('crabbox webvnc (fake broker, stand-in RFB server)', () => {
  let host: SshHost
  let broker: FakeWebVncBroker
  let rfbPid: number | undefined
  const homes: CliHome[] = []
  const viewers: FakeViewer[] = []

  const startRfb = async () => {
    const started = await host.run(rfbStandInScript())
    rfbPid = Number(started.stdout.trim())
    await until('the stand-in RFB server listens', async () => (await host.run('ss -ltn')).stdout.includes('127.0.0.1:5900'), 20_000)
  }
  const home = () => {
    const made = cliHome()
    made.env = {
      ...made.env,
      CRABBOX_COORDINATOR: broker.url,
      CRABBOX_COORDINATOR_TOKEN: broker.token,
      CRABBOX_ACCESS_CLIENT_ID: 'access-id.access',
      CRABBOX_ACCESS_CLIENT_SECRET: 'access-secret',
      CRABBOX_SSH_KEY: host.privateKeyPath,
      CRABBOX_NO_AGENT: '1',
    }
    homes.push(made)
    return made
  }
  const viewer = async () => {
    const made = await broker.viewer()
    viewers.push(made)
    return made
  }
  /** Sends numbered chunks and waits until the stand-in echoed all of them back, in order. */
  const roundTrip = async (v: FakeViewer, tag: string) => {
    await until('the RFB banner', () => v.received().toString('latin1').startsWith('RFB 003.008\n'), 20_000)
    let sent = ''
    for (let i = 0; i < 200; i++) {
      const chunk = `${tag}-${i};`
      sent += chunk
      v.send(Buffer.from(chunk))
    }
    const big = Buffer.alloc(256 * 1024, 7)
    v.send(big)
    const expected = Buffer.concat([Buffer.from('RFB 003.008\n'), Buffer.from(sent), big])
    await until('the echo of every chunk', () => v.received().length >= expected.length, 30_000)
    expect(v.received().equals(expected)).toBe(true)
  }

  beforeAll(async () => {
    host = await sshHost({ ports: [22] })
    broker = await fakeWebVncBroker({
      token: 'webvnc-test-token',
      lease: {
        id: 'cbx_0000000000aa',
        slug: 'blue-lobster',
        host: host.address,
        sshPort: 22,
        sshUser: host.user,
        hostKeys: [host.hostPublicKey],
      },
    })
    await startRfb()
  })
  afterEach(async () => {
    for (const v of viewers.splice(0)) v.close()
    await Promise.all(homes.splice(0).map((h) => runCli(['webvnc', 'daemon', 'stop'], { home: h })))
    broker.refuseTickets(false)
  })
  afterAll(async () => {
    await broker?.close()
    await host?.stop()
  })

  it('relays RFB bytes both ways in order, with a one-use ticket and the Access headers on each agent socket', async () => {
    const h = home()
    const bridge = spawnCli(['webvnc', '--id', 'blue-lobster', '--local-port', '0'], { home: h })
    const out = collectOutput(bridge)
    try {
      await until('four agent sockets', () => broker.agents().length === 4, 30_000)
      await until('the portal line', () => out.stdout().includes('portal: '), 30_000)
      expect(out.stdout()).toContain(`portal: ${broker.url}/portal/leases/cbx_0000000000aa/vnc`)
      // --local-port: the runner's VNC on a local port too, for a native viewer.
      const localPort = Number(/local VNC: 127\.0\.0\.1:(\d+)/.exec(out.stdout())?.[1])
      const native = connect(localPort, '127.0.0.1')
      let nativeSeen = ''
      native.setEncoding('latin1').on('data', (d: string) => (nativeSeen += d))
      native.write('native-hello')
      await until('the native echo', () => nativeSeen === 'RFB 003.008\nnative-hello', 20_000)
      native.destroy()
      for (const agent of broker.agents()) {
        expect(agent.headers.authorization).toMatch(/^Bearer wvnc_[a-f0-9]{32}$/)
        expect(agent.headers['cf-access-client-id']).toBe('access-id.access')
        expect(agent.headers['cf-access-client-secret']).toBe('access-secret')
      }
      const first = await viewer()
      await roundTrip(first, 'one')
      // A second viewer takes another agent socket and its own VNC stream.
      const second = await viewer()
      await roundTrip(second, 'two')
      // The viewer leaving closes its agent (1011); the slot dials again with a new ticket.
      const before = broker.agentConnections()
      first.close()
      await until('the pool refilled', () => broker.agentConnections() > before && broker.agents().length === 4, 30_000)
      expect(broker.refusedAgents()).toEqual([])
    } finally {
      bridge.kill('SIGTERM')
      await out.done
    }
    // Stopped mid-session: the layer and the way back, not a silent exit.
    expect(out.stderr()).toContain('problem: bridge: the WebVNC bridge was stopped (SIGTERM)')
    expect(out.stderr()).toContain('rescue: crabbox webvnc reset --id cbx_0000000000aa')
    expect(out.stderr()).toContain('rescue: crabbox vnc --id cbx_0000000000aa')
    expect(out.stderr()).toContain('rescue: crabbox desktop doctor --id cbx_0000000000aa')
  })

  it('reconnects with backoff after the broker drops every agent socket', async () => {
    const h = home()
    const bridge = spawnCli(['webvnc', '--id', 'cbx_0000000000aa'], { home: h })
    const out = collectOutput(bridge)
    try {
      await until('four agent sockets', () => broker.agents().length === 4, 30_000)
      const before = broker.agentConnections()
      broker.dropAgents()
      await until('four agent sockets again', () => broker.agents().length === 4 && broker.agentConnections() >= before + 4, 30_000)
      await roundTrip(await viewer(), 'after-drop')
    } finally {
      bridge.kill('SIGINT')
      await out.done
    }
  })

  it('keeps retrying when the VNC goes away mid-session, says so within a bounded time, and recovers', async () => {
    const h = home()
    const bridge = spawnCli(['webvnc', '--id', 'blue-lobster'], { home: h })
    const out = collectOutput(bridge)
    try {
      await until('four agent sockets', () => broker.agents().length === 4, 30_000)
      process.kill(rfbPid!, 'SIGKILL')
      broker.dropAgents()
      // Each slot needs a VNC stream before it dials: the bridge holds no socket and says why.
      await until(
        'the problem line',
        () => /^problem: vnc: the runner's VNC on 127\.0\.0\.1:5900 did not answer/m.test(out.stderr()),
        45_000,
      )
      expect(out.stderr()).toContain('rescue: crabbox vnc --id cbx_0000000000aa')
      expect(broker.agents()).toHaveLength(0)
      await startRfb()
      await until('four agent sockets again', () => broker.agents().length === 4, 30_000)
      expect(out.stderr()).toMatch(/slot \d: reconnected/)
      await roundTrip(await viewer(), 'vnc-back')
    } finally {
      bridge.kill('SIGTERM')
      await out.done
    }
  })

  it('a refused ticket prints problem and rescue lines and exits with the usage code', async () => {
    broker.refuseTickets(true)
    const result = await runCli(['webvnc', '--id', 'blue-lobster'], { home: home(), timeoutMs: 60_000 })
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/^problem: ticket: the broker refused a WebVNC ticket: .*lease was not created with desktop=true/m)
    expect(result.stderr).toContain('rescue: crabbox webvnc reset --id cbx_0000000000aa')
    expect(result.stderr).toContain('rescue: crabbox vnc --id cbx_0000000000aa')
    const json = await runCli(['webvnc', 'status', '--id', 'blue-lobster', '--json'], { home: home() })
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toMatchObject({
      leaseId: 'cbx_0000000000aa',
      local: { running: false },
      broker: { bridgeConnected: false },
    })
  })

  it('an unreachable broker and a silent VNC each name their layer', async () => {
    const unreachable = await runCli(['webvnc', '--id', 'blue-lobster'], {
      home: home(),
      env: { CRABBOX_COORDINATOR: 'http://127.0.0.1:9' },
      timeoutMs: 60_000,
    })
    expect(unreachable.code).not.toBe(0)
    expect(unreachable.stderr).toMatch(/^problem: broker: /m)
    expect(unreachable.stderr).toContain('rescue: crabbox')

    process.kill(rfbPid!, 'SIGKILL')
    try {
      const noVnc = await runCli(['webvnc', '--id', 'blue-lobster'], { home: home(), timeoutMs: 60_000 })
      expect(noVnc.code).toBe(1)
      expect(noVnc.stderr).toMatch(/^problem: vnc: the runner's VNC on 127\.0\.0\.1:5900 /m)
      expect(noVnc.stderr).toContain('rescue: crabbox desktop doctor --id cbx_0000000000aa')
    } finally {
      await startRfb()
    }
  })

  it('daemon start/status/stop; a killed daemon is reported with rescue lines and webvnc reset recovers', async () => {
    const h = home()
    const started = await runCli(['webvnc', 'daemon', 'start', '--id', 'blue-lobster', '--json'], { home: h, timeoutMs: 60_000 })
    expect(started.code, started.stderr).toBe(0)
    const { pid } = JSON.parse(started.stdout) as { pid: number }
    expect(pidAlive(pid)).toBe(true)
    await until('four agent sockets', () => broker.agents().length === 4, 30_000)

    const again = await runCli(['webvnc', 'daemon', 'start', '--id', 'cbx_0000000000aa', '--json'], { home: h, timeoutMs: 60_000 })
    expect(JSON.parse(again.stdout)).toMatchObject({ pid, alreadyRunning: true })
    const status = await runCli(['webvnc', 'daemon', 'status', '--json'], { home: h })
    expect(status.code).toBe(0)
    expect(JSON.parse(status.stdout).daemons).toMatchObject([{ leaseId: 'cbx_0000000000aa', running: true, pid, daemon: true }])
    const shown = await runCli(['webvnc', 'status', '--id', 'blue-lobster'], { home: h })
    expect(shown.stdout).toContain(`bridge: running (pid ${pid}, daemon)`)
    expect(shown.stdout).toContain('broker: bridge connected')

    const v = await viewer()
    await roundTrip(v, 'daemon')
    // Killed mid-session (no chance to say goodbye): the broker closes the viewer, status names the problem.
    process.kill(pid, 'SIGKILL')
    expect((await v.closed).code).toBe(1011)
    const killed = await runCli(['webvnc', 'daemon', 'status'], { home: h })
    expect(killed.code).toBe(1)
    expect(killed.stdout).toContain(`problem: bridge: the WebVNC bridge (pid ${pid}) is not running; it was killed or crashed`)
    expect(killed.stdout).toContain('rescue: crabbox webvnc reset --id cbx_0000000000aa')

    const reset = await runCli(['webvnc', 'reset', '--id', 'blue-lobster'], { home: h, timeoutMs: 60_000 })
    expect(reset.code, reset.stderr).toBe(0)
    expect(reset.stdout).toMatch(/daemon restarted \(pid \d+\)/)
    expect(broker.events.some((e) => e.event === 'reset')).toBe(true)
    await until('four agent sockets after the reset', () => broker.agents().length === 4, 30_000)
    await roundTrip(await viewer(), 'after-reset')

    const stopped = await runCli(['webvnc', 'daemon', 'stop', '--id', 'blue-lobster'], { home: h })
    expect(stopped.stdout).toContain('stopped: cbx_0000000000aa')
    await until('the agent sockets closed', () => broker.agents().length === 0, 30_000)
    const after = await runCli(['webvnc', 'daemon', 'status'], { home: h })
    expect(after.stdout).toContain('no WebVNC daemon on this machine')
  })
})
