import { SELF } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { MAX_AGENT_BUFFER_BYTES, MAX_AGENTS } from '../../worker/bridge/relay.js'
import { api, shared, type Who } from './broker-support.js'
import { browserFor, ORIGIN } from './portal-support.js'
import {
  agentUpgrade,
  desktopLease,
  eventually,
  openAgent,
  openViewer,
  relayState,
  sendPaced,
  text,
  ticketFor,
  viewerUpgrade,
} from './webvnc-support.js'

/** The relay: bytes both ways, buffering, viewers and control, disconnects, reset, status. */

const peter = shared('peter@example.com')
const stranger = shared('mallory@example.com', 'elsewhere')

const status = (ref: string, viewer = '', who: Who = peter) =>
  api(who, 'GET', `/v1/leases/${ref}/webvnc/status${viewer ? `?viewer=${viewer}` : ''}`).then((r) => r.body)

describe('WebVNC status without a bridge', () => {
  it('says the daemon is not running and names the bridge command', async () => {
    const lease = await desktopLease(peter)
    const command = `crabbox webvnc --provider static --target linux --id ${lease.slug} --open`
    expect(await status(lease.id)).toEqual({
      leaseID: lease.id,
      slug: lease.slug,
      bridgeConnected: false,
      viewerConnected: false,
      viewerCount: 0,
      observerCount: 0,
      availableViewerSlots: 0,
      viewerID: '',
      viewerRole: 'none',
      controllerID: '',
      controllerLabel: '',
      command,
      events: [],
      message: `WebVNC daemon not running; run: ${command}`,
    })
  })

  it('answers the viewer socket 409 webvnc_bridge_missing with the command, and 426 without an upgrade', async () => {
    const lease = await desktopLease(peter)
    const command = `crabbox webvnc --provider static --target linux --id ${lease.slug} --open`
    const response = await viewerUpgrade(peter, lease.id)
    expect(response.status).toBe(409)
    expect(await response.json()).toEqual({
      error: 'webvnc_bridge_missing',
      message: `No WebVNC backend is available yet; start or refresh the bridge with: ${command}`,
      command,
    })
    const plain = await SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/vnc/viewer`, {
      headers: { authorization: 'Bearer test-shared-token', 'x-crabbox-owner': 'peter@example.com', 'x-crabbox-org': 'openclaw' },
    })
    expect(plain.status).toBe(426)
    expect(await plain.json()).toEqual({ error: 'upgrade_required', message: 'WebVNC viewer requires a websocket upgrade' })
  })
})

describe('the WebVNC relay', () => {
  it('relays bytes both ways in order, flushing what the agent sent before the viewer came', async () => {
    const lease = await desktopLease(peter)
    const agent = await openAgent(peter, lease.id)
    const buffered = (n: number) => async () => (await relayState(lease.id)).agents[0]?.buffered === n
    await sendPaced(agent, 'RFB 003.008\n', buffered(12))
    await sendPaced(agent, new Uint8Array([1, 2, 3]).buffer, buffered(15))
    const viewer = await openViewer(peter, lease.id, 'viewer_test0001')
    expect(viewer.id).toBe('viewer_test0001')
    const early = await viewer.received(2)
    expect(text(early[0])).toBe('RFB 003.008\n')
    expect([...new Uint8Array(early[1] as ArrayBuffer)]).toEqual([1, 2, 3])
    for (let i = 0; i < 20; i++) await sendPaced(agent, `frame ${i}`, async () => viewer.frames.length >= 3 + i)
    for (let i = 0; i < 20; i++)
      await sendPaced(viewer, new TextEncoder().encode(`input ${i}`).buffer as ArrayBuffer, async () => agent.frames.length >= 1 + i)
    expect(viewer.frames.slice(2).map(text)).toEqual(Array.from({ length: 20 }, (_, i) => `frame ${i}`))
    expect(agent.frames.map(text)).toEqual(Array.from({ length: 20 }, (_, i) => `input ${i}`))
    expect(agent.frames.every((frame) => frame instanceof ArrayBuffer)).toBe(true)
    const s = await status(lease.id, 'viewer_test0001')
    expect(s).toMatchObject({
      bridgeConnected: true,
      viewerConnected: true,
      viewerCount: 1,
      observerCount: 0,
      availableViewerSlots: 0,
      viewerID: 'viewer_test0001',
      viewerRole: 'controller',
      controllerID: 'viewer_test0001',
      controllerLabel: 'peter',
      message: 'you are controlling',
    })
    expect(s.events.map((e: { event: string }) => e.event)).toEqual(['bridge_connected', 'viewer_connected'])
    viewer.ws.close(1000)
    agent.ws.close(1000)
  })

  it('drops an agent buffer that outgrows its bound', async () => {
    const lease = await desktopLease(peter)
    const agent = await openAgent(peter, lease.id)
    const held = async () => (await relayState(lease.id)).agents[0]?.buffered
    const chunk = 256 * 1024
    // Up to the bound the bytes are kept; one more chunk drops them all.
    for (let i = 1; i <= MAX_AGENT_BUFFER_BYTES / chunk; i++)
      await sendPaced(agent, new Uint8Array(chunk).buffer, async () => (await held()) === i * chunk)
    expect(await held()).toBe(MAX_AGENT_BUFFER_BYTES)
    await sendPaced(agent, new Uint8Array(chunk).buffer, async () => (await held()) === 0)
    expect(await held()).toBe(0)
    await sendPaced(agent, 'after the overflow', async () => (await held()) === 18)
    const viewer = await openViewer(peter, lease.id)
    const frames = await viewer.received(1)
    expect(frames.map(text)).toEqual(['after the overflow'])
    viewer.ws.close(1000)
    agent.ws.close(1000)
  })

  it('makes the first viewer the controller and later ones observers; take control moves it', async () => {
    // GitHub users (verified identities): sharing applies within one namespace.
    const peterBrowser = await browserFor('peter@example.com')
    const owner: Who = { kind: 'user', token: peterBrowser.token }
    const lease = await desktopLease(owner)
    const octo = await browserFor('octo@example.com')
    expect((await api(owner, 'PUT', `/v1/leases/${lease.id}/share`, { users: { 'octo@example.com': 'use' } })).status).toBe(200)
    await openAgent(owner, lease.id)
    await openAgent(owner, lease.id)
    await eventually(
      () => status(lease.id, '', owner),
      (s) => s.availableViewerSlots === 2,
    )
    const first = await openViewer(peterBrowser, lease.id, 'viewer_first01')
    const second = await openViewer(octo, lease.id, 'viewer_second1')
    const seen = await status(lease.id, second.id, owner)
    expect(seen).toMatchObject({
      viewerCount: 2,
      observerCount: 1,
      viewerRole: 'observer',
      controllerID: first.id,
      message: 'peter is controlling',
    })

    const take = (body: unknown, extra: Record<string, string> = {}) =>
      SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/vnc/control`, {
        method: 'POST',
        headers: { cookie: octo.cookie, origin: ORIGIN, 'content-type': 'application/json', ...extra },
        body: JSON.stringify(body),
      })
    const bad = await take({ viewerID: 'nope' })
    expect(bad.status).toBe(400)
    expect((await bad.json()) as object).toMatchObject({ error: 'invalid_viewer' })
    const gone = await take({ viewerID: 'viewer_notconnected' })
    expect(gone.status).toBe(409)
    expect((await gone.json()) as object).toMatchObject({ error: 'viewer_not_connected' })
    expect((await take({ viewerID: second.id }, { origin: 'https://evil.test' })).status).toBe(403)
    const taken = await take({ viewerID: second.id })
    expect(taken.status).toBe(200)
    expect(await taken.json()).toMatchObject({
      viewerRole: 'controller',
      controllerID: second.id,
      controllerLabel: 'octo',
      message: 'you are controlling',
    })
    const after = await status(lease.id, first.id, owner)
    expect(after).toMatchObject({ viewerRole: 'observer', message: 'octo is controlling' })
    expect(after.events.at(-1).event).toBe('control_taken')

    // The portal status endpoint answers the same for the viewer page.
    const portal = await SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/vnc/status?viewer=${second.id}`, {
      headers: { cookie: octo.cookie },
    })
    expect(await portal.json()).toMatchObject({ viewerRole: 'controller', viewerCount: 2 })
    first.ws.close(1000)
    second.ws.close(1000)
  })

  it('closes the agent (1011) when its viewer leaves, and the viewer (1011) when its agent leaves', async () => {
    const lease = await desktopLease(peter)
    const agentA = await openAgent(peter, lease.id)
    const viewerA = await openViewer(peter, lease.id)
    viewerA.ws.close(1000)
    expect(await agentA.closed).toEqual({ code: 1011, reason: 'WebVNC viewer disconnected' })
    const agentB = await openAgent(peter, lease.id)
    const viewerB = await openViewer(peter, lease.id)
    agentB.ws.close(1000)
    expect(await viewerB.closed).toEqual({ code: 1011, reason: 'WebVNC bridge disconnected' })
    const s = await eventually(
      () => status(lease.id),
      (v) => v.events.some((e: { event: string }) => e.event === 'bridge_disconnected'),
    )
    const events = s.events.map((e: { event: string }) => e.event)
    expect(events).toEqual(expect.arrayContaining(['viewer_disconnected', 'bridge_reset', 'bridge_disconnected']))
  })

  it('reset closes every viewer and agent with 1012 and records reset', async () => {
    const lease = await desktopLease(peter)
    const agent = await openAgent(peter, lease.id)
    const idle = await openAgent(peter, lease.id)
    const viewer = await openViewer(peter, lease.id)
    const result = await api(peter, 'POST', `/v1/leases/${lease.id}/webvnc/reset`)
    expect(result.status).toBe(200)
    expect(result.body).toMatchObject({
      leaseID: lease.id,
      slug: lease.slug,
      bridgeWasConnected: true,
      viewerWasConnected: true,
      command: `crabbox webvnc --provider static --target linux --id ${lease.slug} --open`,
    })
    expect(result.body.events.at(-1)).toMatchObject({ event: 'reset', reason: 'WebVNC reset requested' })
    for (const peer of [agent, idle, viewer]) expect(await peer.closed).toEqual({ code: 1012, reason: 'WebVNC reset requested' })
    const after = await status(lease.id)
    expect(after).toMatchObject({ bridgeConnected: false, viewerConnected: false, controllerID: '' })
    expect(after.events.at(-1).event).toBe('reset')
  })

  it('keeps viewers and sockets to those who can see the lease', async () => {
    const lease = await desktopLease(peter)
    await openAgent(peter, lease.id)
    expect((await viewerUpgrade(stranger, lease.id)).status).toBe(404)
    const mallory = await browserFor('mallory@example.com', 'elsewhere')
    expect((await viewerUpgrade(mallory, lease.id)).status).toBe(404)
    const portalStatus = await SELF.fetch(`${ORIGIN}/portal/leases/${lease.id}/vnc/status`, { headers: { cookie: mallory.cookie } })
    expect(portalStatus.status).toBe(404)
    // A cookie from another site's page is refused before anything is looked up.
    const peterBrowser = await browserFor('peter@example.com')
    const crossSite = await viewerUpgrade(peterBrowser, lease.id, undefined, { origin: 'https://evil.test' })
    expect(crossSite.status).toBe(403)
    expect((await status(lease.id)).viewerConnected).toBe(false)
  })

  it('bounds the agents a lease holds (429 too_many_sockets)', async () => {
    const lease = await desktopLease(peter)
    const agents = []
    for (let i = 0; i < MAX_AGENTS; i++) agents.push(await openAgent(peter, lease.id))
    const refused = await agentUpgrade(lease.id, await ticketFor(peter, lease.id))
    expect(refused.status).toBe(429)
    expect(await refused.json()).toMatchObject({ error: 'too_many_sockets' })
    expect((await status(lease.id)).availableViewerSlots).toBe(MAX_AGENTS)
    for (const agent of agents) agent.ws.close(1000)
  })
})

describe('a viewer that reconnects with its ID', () => {
  it('replaces its old socket (1012) and frees the old agent (1011)', async () => {
    const lease = await desktopLease(peter)
    const agentA = await openAgent(peter, lease.id)
    const agentB = await openAgent(peter, lease.id)
    await eventually(
      () => status(lease.id),
      (s) => s.availableViewerSlots === 2,
    )
    const first = await openViewer(peter, lease.id, 'viewer_again01')
    const second = await openViewer(peter, lease.id, 'viewer_again01')
    expect(await first.closed).toEqual({ code: 1012, reason: 'WebVNC viewer replaced' })
    const freed = await Promise.race([agentA.closed, agentB.closed])
    expect(freed).toEqual({ code: 1011, reason: 'WebVNC viewer disconnected' })
    expect(await status(lease.id, second.id)).toMatchObject({ viewerCount: 1, viewerRole: 'controller' })
    second.ws.close(1000)
  })
})
