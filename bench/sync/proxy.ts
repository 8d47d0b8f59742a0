/**
 * The latency proxy in a process of its own, so its per-chunk timers do not
 * share an event loop with the crabbox side being measured (rsync's side
 * always ran elsewhere). Prints `{"port":N}`, exits when stdin closes.
 */
import { tcpProxy } from '../../test/support/tcp-proxy.js'

const [host, port, delay] = process.argv.slice(2)
const proxy = await tcpProxy({ host, port: Number(port) }, { delayMs: Number(delay) })
process.stdout.write(`${JSON.stringify({ port: proxy.port })}\n`)
process.stdin.resume()
process.stdin.on('end', () => void proxy.close().then(() => process.exit(0)))
