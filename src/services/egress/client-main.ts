import { createInterface } from 'node:readline'
import { startClientProxy } from './client-proxy.js'

/**
 * The lease-side egress client as one file (dist/egress-client.cjs), run with the runner's
 * own `node` over an SSH channel that `crabbox egress start` holds open. Everything it needs
 * comes on stdin, never on the command line: the first line is
 * `{"brokerUrl","leaseId","ticket","listen":{host,port},"headers"}`; each later line is
 * `{"ticket"}`, the answer to a `{"need":"ticket"}` line it writes on stdout when it must dial
 * the broker again. stdout also gets `{"listening":"host:port"}`; logs go to stderr. stdin
 * closing (the operator's side went away) stops it.
 */

interface Setup {
  brokerUrl: string
  leaseId: string
  ticket: string
  listen: { host: string; port: number }
  headers?: Record<string, string>
}

const lines = createInterface({ input: process.stdin })
const waiting: Array<(ticket: string) => void> = []
let setup: ((value: Setup) => void) | undefined
const ready = new Promise<Setup>((resolve) => (setup = resolve))
const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`)

lines.on('line', (line) => {
  let message: Record<string, unknown>
  try {
    message = JSON.parse(line) as Record<string, unknown>
  } catch {
    return
  }
  if (setup) {
    setup(message as unknown as Setup)
    setup = undefined
  } else if (typeof message.ticket === 'string') waiting.shift()?.(message.ticket)
})
lines.on('close', () => {
  log('egress client: stdin closed; stopping')
  process.exit(0)
})

/** Top-level await is not available in the CommonJS bundle. */
async function main(): Promise<void> {
  const config = await ready
  let first: string | undefined = config.ticket
  const proxy = await startClientProxy({
    brokerUrl: config.brokerUrl,
    leaseId: config.leaseId,
    headers: config.headers ?? {},
    listen: config.listen,
    log,
    nextTicket: () => {
      if (first) {
        const ticket = first
        first = undefined
        return Promise.resolve(ticket)
      }
      process.stdout.write(`${JSON.stringify({ need: 'ticket' })}\n`)
      return new Promise((resolve) => waiting.push(resolve))
    },
  }).catch((error: Error) => {
    process.stdout.write(
      `${JSON.stringify({ error: `egress client: cannot listen on ${config.listen.host}:${config.listen.port}: ${error.message}` })}\n`,
    )
    process.exit(3)
  })
  process.stdout.write(`${JSON.stringify({ listening: `${proxy.address.host}:${proxy.address.port}` })}\n`)
  const reason = await proxy.link.done
  log(`egress client: ${reason}`)
  process.stdout.write(`${JSON.stringify({ ended: reason })}\n`)
  process.exit(0)
}

void main()
