import { BaseCommand } from '../../base-command.js'
import { agentStatusService, type AgentStatusResult } from '../../services/agent.js'
import { renderAgentStatus } from '../../ui/agent.js'

export default class AgentStatus extends BaseCommand<typeof AgentStatus> {
  static override summary = 'Show the connection agent and the SSH connections it keeps warm'
  static override examples = ['<%= config.bin %> agent status', '<%= config.bin %> agent status --json']

  async run(): Promise<AgentStatusResult> {
    const status = await agentStatusService()
    if (!this.jsonEnabled()) this.log(renderAgentStatus(status))
    return status
  }
}
