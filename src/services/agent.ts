import { agentSocket, agentStatus, agentStop } from '../transport/ssh/agent-client.js'

export interface AgentStatusResult {
  running: boolean
  socketPath: string
  pid?: number
  startedAt?: string
  idleTimeoutMs?: number
  connections: Array<{ target: string; port: number; busy: number; idleMs: number }>
}

/** What the connection agent holds right now; `running: false` when none listens. */
export async function agentStatusService(): Promise<AgentStatusResult> {
  const status = await agentStatus()
  if (!status) return { running: false, socketPath: agentSocket(), connections: [] }
  return { running: true, ...status }
}

export function renderAgentStatus(status: AgentStatusResult): string {
  if (!status.running) return `agent not running (socket ${status.socketPath})`
  const lines = [`agent pid ${status.pid} since ${status.startedAt}, idle timeout ${Math.round((status.idleTimeoutMs ?? 0) / 1000)}s, socket ${status.socketPath}`]
  if (status.connections.length === 0) lines.push('no connections')
  for (const c of status.connections) lines.push(`  ${c.target} via port ${c.port}  busy=${c.busy}  idle=${Math.round(c.idleMs / 1000)}s`)
  return lines.join('\n')
}

/** Stops the agent; stopping one that is not running succeeds too. */
export async function agentStopService(): Promise<{ stopped: boolean }> {
  return { stopped: await agentStop() }
}
