import { describe, expect, it } from 'vitest'
import { CrabboxError } from '../../src/errors.js'
import { backoffMs, BridgeFailure, describeFailure, refusal, VncUnavailable } from '../../src/services/webvnc/bridge.js'
import { BrokerError } from '../../src/transport/broker/client.js'
import { AgentDialError, agentSocketUrl } from '../../src/transport/broker/webvnc.js'
import { desktopRescue, renderRescue } from '../../src/ui/rescue.js'
import { renderWebVncStatus } from '../../src/ui/webvnc.js'

const brokerError = (status: number, errorCode: string) =>
  new BrokerError(`broker: http ${status}: ${errorCode}`, { status, errorCode, exit: 'error' })

describe('rescue-first output', () => {
  it('prints the problem, then one rescue line per command', () => {
    expect(renderRescue({ problem: 'vnc: the runner did not answer', rescue: desktopRescue('cbx_0123456789ab') })).toBe(
      'problem: vnc: the runner did not answer\n' +
        'rescue: crabbox webvnc reset --id cbx_0123456789ab\n' +
        'rescue: crabbox vnc --id cbx_0123456789ab\n' +
        'rescue: crabbox desktop doctor --id cbx_0123456789ab\n',
    )
  })

  it('quotes a lease word that a shell would split', () => {
    expect(desktopRescue("a b'c")[0]).toBe(`crabbox webvnc reset --id 'a b'\\''c'`)
  })

  it('status shows a killed bridge with its rescue lines', () => {
    const text = renderWebVncStatus({
      leaseId: 'cbx_0123456789ab',
      local: {
        leaseId: 'cbx_0123456789ab',
        running: false,
        pid: 4242,
        daemon: true,
        connected: 0,
        relaying: 0,
        slots: 4,
        problem: 'bridge: pid 4242 is gone',
      },
      rescue: desktopRescue('cbx_0123456789ab'),
    })
    expect(text).toContain('bridge: not running (pid 4242 is gone)')
    expect(text).toContain('problem: bridge: pid 4242 is gone\nrescue: crabbox webvnc reset --id cbx_0123456789ab')
  })
})

describe('the bridge', () => {
  it('backs off 0.5 s per failed attempt, at most 5 s', () => {
    expect([1, 2, 3, 10, 50].map(backoffMs)).toEqual([500, 1000, 1500, 5000, 5000])
  })

  it('stops on a refusal and retries what may pass', () => {
    const refusedTicket = refusal(brokerError(409, 'webvnc_unavailable'), 'cbx_0123456789ab')
    expect(refusedTicket).toBeInstanceOf(BridgeFailure)
    expect(refusedTicket).toMatchObject({ exitCode: 2, code: 'webvnc_ticket_refused' })
    expect(refusedTicket!.rescue.problem).toMatch(/^ticket: /)
    expect(refusal(brokerError(404, 'not_found'), 'x')?.exitCode).toBe(4)
    expect(refusal(new AgentDialError('refused', 401, '{"error":"webvnc_ticket_required"}'), 'x')).toMatchObject({ exitCode: 3 })
    for (const retry of [
      brokerError(0, 'network'),
      brokerError(503, 'x'),
      brokerError(429, 'x'),
      new AgentDialError('reset', 0),
      new AgentDialError('bad gateway', 502),
    ])
      expect(refusal(retry, 'x')).toBeUndefined()
  })

  it('names the layer of a failure it keeps retrying', () => {
    expect(describeFailure(new VncUnavailable('no banner'))).toBe('vnc: no banner')
    expect(describeFailure(new AgentDialError('ECONNREFUSED', 0))).toMatch(/^broker: cannot reach the broker/)
    expect(describeFailure(new CrabboxError('cannot reach 10.0.0.2 over SSH', { exit: 'ssh' }))).toBe('ssh: cannot reach 10.0.0.2 over SSH')
    expect(describeFailure(new Error('boom'))).toBe('bridge: boom')
  })

  it('dials the agent socket on the broker origin, ws or wss', () => {
    expect(agentSocketUrl('https://broker.example.com/', 'blue crab')).toBe('wss://broker.example.com/v1/leases/blue%20crab/webvnc/agent')
    expect(agentSocketUrl('http://127.0.0.1:8787', 'cbx_0123456789ab', 'wvnc_00')).toBe(
      'ws://127.0.0.1:8787/v1/leases/cbx_0123456789ab/webvnc/agent?ticket=wvnc_00',
    )
  })
})
