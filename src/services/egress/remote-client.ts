import { readFileSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import { CrabboxError } from '../../errors.js'
import type { SshPool } from '../../transport/ssh/pool.js'
import type { SshTarget } from '../../transport/ssh/types.js'

/**
 * Gets the lease-side client onto the runner and keeps it running: dist/egress-client.cjs (one
 * file, `ws` inside) is copied over SSH to /tmp/crabbox-egress-client.cjs and run with the
 * runner's own `node` (18 or newer; on a runner without one, `nodejs` is installed from the
 * distribution's packages when passwordless sudo and apt-get are there). The SSH channel stays
 * open while egress runs: the client's setup and every later ticket go over its stdin (never
 * the command line), and the client stops when the channel closes. Its log is
 * /tmp/crabbox-egress-client.log on the runner.
 */

export const REMOTE_CLIENT = '/tmp/crabbox-egress-client.cjs'
export const REMOTE_LOG = '/tmp/crabbox-egress-client.log'

export const clientBundle = () => readFileSync(new URL('../../egress-client.cjs', import.meta.url))

const NO_NODE = 20
const OLD_NODE = 21

export const installScript = `set -e
if ! command -v node >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs >/dev/null 2>&1 ||
    { sudo -n apt-get update >/dev/null 2>&1 && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs >/dev/null 2>&1; } || true
fi
command -v node >/dev/null 2>&1 || exit ${NO_NODE}
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' || exit ${OLD_NODE}
umask 077
cat > ${REMOTE_CLIENT}.tmp && mv ${REMOTE_CLIENT}.tmp ${REMOTE_CLIENT}
`

export interface ClientSetup {
  brokerUrl: string
  leaseId: string
  ticket: string
  listen: { host: string; port: number }
  headers: Record<string, string>
}

export interface RemoteClient {
  /** Resolves with `host:port` once the proxy listens on the runner; rejects if it cannot. */
  listening: Promise<string>
  /** Settles when the client process ends: its reason. */
  ended: Promise<string>
  stop(): void
}

export async function installClient(pool: SshPool, target: SshTarget): Promise<void> {
  const result = await pool.exec(target, installScript, { stdin: clientBundle() })
  if (result.code === NO_NODE)
    throw new CrabboxError('egress: the lease has no node (18 or newer) and it could not be installed', {
      exit: 'error',
      code: 'egress_client_node',
      hint: 'Install Node.js 18+ on the runner (e.g. `sudo apt-get install -y nodejs`), then run egress start again.',
    })
  if (result.code === OLD_NODE)
    throw new CrabboxError('egress: the lease has node older than 18; the egress client needs 18 or newer', {
      exit: 'error',
      code: 'egress_client_node',
    })
  if (result.code !== 0) throw new CrabboxError(`egress: copying the client to the lease failed (exit ${result.code})`, { exit: 'error' })
}

/** Runs the client on the runner; `mint` answers each later ticket it asks for. */
export function runClient(
  pool: SshPool,
  target: SshTarget,
  setup: ClientSetup,
  mint: () => Promise<string>,
  log: (line: string) => void,
): RemoteClient {
  const stdin = new PassThrough()
  const abort = new AbortController()
  let resolveListening!: (value: string) => void
  let rejectListening!: (error: Error) => void
  const listening = new Promise<string>((resolve, reject) => ((resolveListening = resolve), (rejectListening = reject)))
  listening.catch(() => undefined)
  let ended = 'the egress client stopped'
  let pending = ''
  const onLine = (line: string) => {
    let message: Record<string, unknown>
    try {
      message = JSON.parse(line) as Record<string, unknown>
    } catch {
      return
    }
    if (typeof message.listening === 'string') resolveListening(message.listening)
    if (typeof message.error === 'string') rejectListening(new CrabboxError(message.error, { exit: 'error', code: 'egress_client_listen' }))
    if (typeof message.ended === 'string') ended = `egress client: ${message.ended}`
    if (message.need === 'ticket') {
      mint().then(
        (ticket) => stdin.write(`${JSON.stringify({ ticket })}\n`),
        (error: Error) => {
          log(`egress client: no new ticket (${error.message}); stopping it`)
          stdin.end()
        },
      )
    }
  }
  stdin.write(`${JSON.stringify(setup)}\n`)
  const done = pool
    .exec(target, `exec node ${REMOTE_CLIENT} 2>>${REMOTE_LOG}`, {
      stdin,
      signal: abort.signal,
      onStdout: (chunk) => {
        pending += chunk.toString('utf8')
        const lines = pending.split('\n')
        pending = lines.pop() ?? ''
        for (const line of lines) onLine(line)
      },
    })
    .then(
      (result) => {
        rejectListening(
          new CrabboxError(`egress: the client on the lease exited (${result.code}); see ${REMOTE_LOG} there`, { exit: 'error' }),
        )
        return ended
      },
      (error: Error) => {
        rejectListening(error)
        return `egress client: the SSH channel failed: ${error.message}`
      },
    )
  return {
    listening,
    ended: done,
    stop: () => {
      stdin.end()
      abort.abort()
    },
  }
}
