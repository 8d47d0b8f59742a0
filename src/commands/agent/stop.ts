import { BaseCommand } from '../../base-command.js'
import { agentStopService } from '../../services/agent.js'

export default class AgentStop extends BaseCommand<typeof AgentStop> {
  static override summary = 'Close the connection agent and every SSH connection it holds'
  static override description = 'Safe to repeat: stopping an agent that is not running succeeds. The next SSH command starts a new one.'
  static override examples = ['<%= config.bin %> agent stop']

  async run(): Promise<{ stopped: boolean }> {
    const result = await agentStopService()
    if (!this.jsonEnabled()) this.log(result.stopped ? 'agent stopped' : 'agent was not running')
    return result
  }
}
