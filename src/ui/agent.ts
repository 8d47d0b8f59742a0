import type { AgentStatusResult } from '../services/agent.js'

/** `crabbox agent status`: the agent, then one line per held connection. */
export function renderAgentStatus(status: AgentStatusResult): string {
  if (!status.running) return `agent not running (socket ${status.socketPath})`
  const lines = [
    `agent pid ${status.pid} since ${status.startedAt}, idle timeout ${Math.round((status.idleTimeoutMs ?? 0) / 1000)}s, socket ${status.socketPath}`,
  ]
  if (status.connections.length === 0) lines.push('no connections')
  for (const c of status.connections) lines.push(`  ${c.target} via port ${c.port}  busy=${c.busy}  idle=${Math.round(c.idleMs / 1000)}s`)
  return lines.join('\n')
}
