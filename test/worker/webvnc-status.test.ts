import { describe, expect, it } from 'vitest'
import type { LeaseRecord } from '../../src/protocol/leases.js'
import type { RelayState } from '../../worker/bridge/handoff.js'
import { bridgeCommand, composeStatus } from '../../worker/fleet/webvnc.js'

/** WebVNC status from the relay's state: roles, counts, messages, the bridge command (pure; runs with the worker tests for the workers types). */

const lease = {
  id: 'cbx_000000000001',
  slug: 'blue-lobster',
  provider: 'hetzner',
  target: 'linux',
  owner: 'peter@example.com',
  org: 'openclaw',
  state: 'active',
  desktop: true,
  host: '192.0.2.1',
} as unknown as LeaseRecord

const state = (patch: Partial<RelayState> = {}): RelayState => ({
  agents: [],
  viewers: [],
  controllerID: '',
  controllerLabel: '',
  events: [],
  ...patch,
})
const command = 'crabbox webvnc --provider hetzner --target linux --id blue-lobster --open'

describe('WebVNC status', () => {
  it('names the bridge command, quoting only what needs it', () => {
    expect(bridgeCommand(lease)).toBe(command)
    expect(bridgeCommand({ ...lease, slug: '', id: 'cbx_000000000002' })).toContain('--id cbx_000000000002 --open')
    expect(bridgeCommand({ ...lease, provider: "it's odd" })).toContain(`--provider 'it'\\''s odd'`)
    expect(bridgeCommand({ ...lease, target: 'windows', windowsMode: 'wsl2' })).toContain(
      '--target windows --id blue-lobster --windows-mode wsl2 --open',
    )
  })

  it('says what the viewer can do, case by case', () => {
    expect(composeStatus(lease, state(), undefined).message).toBe(`WebVNC daemon not running; run: ${command}`)
    const idle = state({ agents: [{ id: 'agent_a', buffered: 0 }] })
    expect(composeStatus(lease, idle, undefined)).toMatchObject({
      bridgeConnected: true,
      availableViewerSlots: 1,
      message: 'bridge connected',
    })
    const busy = state({
      agents: [{ id: 'agent_a', viewer: 'viewer_one111', buffered: 0 }],
      viewers: [{ id: 'viewer_one111', agent: 'agent_a', label: '' }],
    })
    expect(composeStatus(lease, busy, 'viewer_two222')).toMatchObject({
      availableViewerSlots: 0,
      viewerRole: 'none',
      message: 'waiting for an available WebVNC observer slot',
    })
    const spare = state({ ...busy, agents: [...busy.agents, { id: 'agent_b', buffered: 0 }] })
    expect(composeStatus(lease, spare, undefined).message).toBe('observer slots available')
    const controlled = state({ ...spare, controllerID: 'viewer_one111', controllerLabel: 'peter' })
    expect(composeStatus(lease, controlled, 'viewer_one111')).toMatchObject({
      viewerRole: 'controller',
      message: 'you are controlling',
      observerCount: 0,
    })
    expect(composeStatus(lease, controlled, 'viewer_two222')).toMatchObject({ viewerRole: 'none', message: 'peter is controlling' })
    expect(composeStatus(lease, { ...controlled, controllerLabel: '' }, undefined).message).toBe('another viewer is controlling')
    // A malformed viewer query reads as none.
    expect(composeStatus(lease, controlled, 'nope').viewerID).toBe('')
  })
})
