import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { repoRoot } from './cli.js'

/**
 * A stand-in for code-server on a test host's loopback (127.0.0.1:8080): HTTP answers that
 * name what the runner saw (method, path, Host, Origin, body) and a WebSocket echo. It runs
 * in the host's network namespace with this machine's node and the repo's `ws` package.
 */
export function codeStandInScript(port = 8080): string {
  const file = join(tmpdir(), `crabbox-code-stand-in-${process.pid}-${Date.now()}.cjs`)
  const source = `
const http = require('http')
const { WebSocketServer } = require(${JSON.stringify(join(repoRoot, 'node_modules', 'ws'))})
const server = http.createServer((req, res) => {
  const parts = []
  req.on('data', (c) => parts.push(c))
  req.on('end', () => {
    const body = Buffer.concat(parts).toString('utf8')
    res.setHeader('content-type', 'text/plain; charset=utf-8')
    res.setHeader('x-runner', 'stand-in')
    res.end(req.method + ' ' + req.url + ' host=' + req.headers.host + (req.headers.origin ? ' origin=' + req.headers.origin : '') + (body ? ' body=' + body : ''))
  })
})
const wss = new WebSocketServer({ server })
wss.on('connection', (ws, req) => {
  ws.send('hello from ' + req.url)
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
})
server.listen(${port}, '127.0.0.1')
`
  writeFileSync(file, source)
  return `nohup ${process.execPath} ${file} crabbox-code-stand-in >/dev/null 2>&1 & echo $!`
}
