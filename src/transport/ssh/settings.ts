/**
 * Process-wide SSH settings the caller passes in once (from its config), so the
 * transport never reads config itself. No imports: cheap for every command.
 */

const DEFAULT_AGENT_IDLE_TIMEOUT_MS = 600_000

let agentIdleTimeoutMs = DEFAULT_AGENT_IDLE_TIMEOUT_MS

/** The idle timeout for an agent started without an explicit `agentIdleTimeoutMs` (config `agent.idleTimeout`). */
export function setDefaultAgentIdleTimeout(ms: number): void {
  agentIdleTimeoutMs = ms
}

export const defaultAgentIdleTimeout = (): number => agentIdleTimeoutMs
