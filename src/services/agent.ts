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

/** Stops the agent; stopping one that is not running succeeds too. */
export async function agentStopService(): Promise<{ stopped: boolean }> {
  return { stopped: await agentStop() }
}
