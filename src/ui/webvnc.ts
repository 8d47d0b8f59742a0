import type { WebVncResetResponse, WebVncStatus } from '../protocol/webvnc.js'
import { renderRescue } from './rescue.js'

/** The local side of a bridge as `webvnc status` and `webvnc daemon status` show it. */
export interface LocalBridgeView {
  leaseId: string
  running: boolean
  pid?: number
  daemon: boolean
  connected: number
  relaying: number
  slots: number
  localPort?: number
  lastProblem?: string
  logPath?: string
  problem?: string
}

export function renderLocalBridge(local: LocalBridgeView): string {
  if (!local.running && local.pid === undefined) return `bridge: not running on this machine`
  const lines = [
    local.running
      ? `bridge: running (pid ${local.pid}${local.daemon ? ', daemon' : ''}): ${local.connected}/${local.slots} agent sockets open, ${local.relaying} relaying`
      : `bridge: not running (pid ${local.pid} is gone)`,
  ]
  if (local.localPort !== undefined && local.running) lines.push(`local VNC: 127.0.0.1:${local.localPort}`)
  if (local.lastProblem && local.running) lines.push(`last problem: ${local.lastProblem}`)
  if (local.logPath) lines.push(`log: ${local.logPath}`)
  return lines.join('\n')
}

function renderEvents(events: WebVncStatus['events']): string[] {
  return events.map((event) => `  ${event.at}  ${event.event}${event.reason ? ` (${event.reason})` : ''}`)
}

export interface WebVncStatusView {
  leaseId: string
  local: LocalBridgeView
  broker?: WebVncStatus
  brokerError?: string
  rescue: string[]
}

/** `webvnc status`: local bridge, the broker's view, recent events; problem/rescue when something is down. */
export function renderWebVncStatus(status: WebVncStatusView): string {
  const lines = [
    `lease: ${status.broker?.slug ? `${status.broker.slug} (${status.leaseId})` : status.leaseId}`,
    renderLocalBridge(status.local),
  ]
  if (status.broker) {
    const b = status.broker
    lines.push(
      `broker: bridge ${b.bridgeConnected ? 'connected' : 'not connected'}, viewer ${b.viewerConnected ? 'connected' : 'not connected'}` +
        (b.availableViewerSlots !== undefined ? `, ${b.availableViewerSlots} free viewer slots` : ''),
      `message: ${b.message}`,
    )
    if (b.events.length) lines.push('events:', ...renderEvents(b.events))
  }
  const problem =
    status.local.problem ??
    (status.brokerError
      ? `broker: ${status.brokerError}`
      : status.broker && !status.broker.bridgeConnected
        ? `bridge: the broker has no WebVNC bridge for this lease`
        : undefined)
  if (problem) lines.push(renderRescue({ problem, rescue: status.rescue }).trimEnd())
  return lines.join('\n')
}

export function renderWebVncReset(result: {
  leaseId: string
  reset: WebVncResetResponse
  daemon?: { restarted: boolean; pid?: number }
}): string {
  const r = result.reset
  const lines = [
    `reset WebVNC for ${r.slug ? `${r.slug} (${r.leaseID})` : r.leaseID}: bridge was ${r.bridgeWasConnected ? 'connected' : 'not connected'}, viewer was ${r.viewerWasConnected ? 'connected' : 'not connected'}`,
  ]
  if (result.daemon?.restarted) lines.push(`daemon restarted (pid ${result.daemon.pid})`)
  else lines.push(`start the bridge with: ${r.command}`)
  return lines.join('\n')
}

export function renderDaemons(daemons: LocalBridgeView[], rescueFor: (leaseId: string) => string[]): string {
  if (!daemons.length) return 'no WebVNC daemon on this machine'
  return daemons
    .map((d) => {
      const text = `${d.leaseId}: ${renderLocalBridge(d)}`
      return d.problem ? `${text}\n${renderRescue({ problem: d.problem, rescue: rescueFor(d.leaseId) }).trimEnd()}` : text
    })
    .join('\n')
}
