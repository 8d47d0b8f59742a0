// Entry point of the detached connection agent: `node agent-main.js <dir> <idleTimeoutMs>`.
import { runAgent } from './agent-server.js'

const [dir, idle] = process.argv.slice(2)
const stamp = () => new Date().toISOString()
await runAgent({
  dir,
  idleTimeoutMs: Number(idle) || 600_000,
  log: (line) => process.stderr.write(`${stamp()} crabbox agent[${process.pid}]: ${line}\n`),
})
process.exit(0)
