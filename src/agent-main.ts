// Entry point of the detached connection agent: `node agent-main.js <dir> <idleTimeoutMs>`.
// It lives above the layers so it can hand the agent the run pipeline's lane runner
// (the agent itself is transport and knows no services).
import { runOnLane } from './services/run/on-lane.js'
import { runAgent } from './transport/ssh/agent-server.js'

const [dir, idle] = process.argv.slice(2)
const stamp = () => new Date().toISOString()
await runAgent({
  dir,
  idleTimeoutMs: Number(idle) || 600_000,
  log: (line) => process.stderr.write(`${stamp()} crabbox agent[${process.pid}]: ${line}\n`),
  lanes: { run: runOnLane },
})
process.exit(0)
