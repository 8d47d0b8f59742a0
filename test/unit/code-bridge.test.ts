import { describe, expect, it } from 'vitest'
import { CODE_CHUNK_BYTES, forwardedRequestHeaders } from '../../src/protocol/code.js'
import { backoffMs, codeRescue } from '../../src/services/code/bridge.js'
import { runnerPath } from '../../src/services/code/tunnel.js'

/** The code bridge's pure parts: paths, the header allow-list, chunk size, rescue commands, backoff. */

describe('the code bridge', () => {
  it('strips the portal prefix (ID or slug) so code-server serves from its root', () => {
    expect(runnerPath('/portal/leases/cbx_0000000000aa/code/')).toBe('/')
    expect(runnerPath('/portal/leases/blue-crab/code')).toBe('/')
    expect(runnerPath('/portal/leases/blue-crab/code?folder=/work')).toBe('/?folder=/work')
    expect(runnerPath('/portal/leases/blue-crab/code/static/out/app.js?v=2')).toBe('/static/out/app.js?v=2')
    expect(runnerPath('/elsewhere')).toBe('/elsewhere')
  })

  it('forwards only the allowed request headers, any x-* but the broker own, and only vscode-tkn cookies', () => {
    const headers = new Headers({
      accept: 'text/html',
      'accept-language': 'en',
      authorization: 'Bearer secret',
      cookie: 'crabbox_session=abc; vscode-tkn=t1; other=2',
      'x-requested-with': 'XMLHttpRequest',
      'x-crabbox-owner': 'someone@example.com',
      referer: 'https://broker.test/portal',
      'sec-websocket-protocol': 'vscode',
    })
    expect(forwardedRequestHeaders(headers)).toEqual({
      accept: 'text/html',
      'accept-language': 'en',
      cookie: 'vscode-tkn=t1',
      'x-requested-with': 'XMLHttpRequest',
      'sec-websocket-protocol': 'vscode',
    })
    expect(forwardedRequestHeaders(new Headers({ cookie: 'a=1' }))).toEqual({})
  })

  it('chunks at 15 KiB, a multiple of 3 so base64 pieces join', () => {
    expect(CODE_CHUNK_BYTES).toBe(15 * 1024)
    expect(CODE_CHUNK_BYTES % 3).toBe(0)
  })

  it('names the rescue commands and backs off 0.5 s per attempt up to 5 s', () => {
    expect(codeRescue('cbx_0000000000aa')).toEqual([
      'crabbox code --id cbx_0000000000aa',
      'crabbox ssh --id cbx_0000000000aa -- systemctl status crabbox-code-server',
      "crabbox ssh --id cbx_0000000000aa -- curl -sS -o /dev/null -w '%{http_code}\\n' http://127.0.0.1:8080/",
    ])
    expect([1, 2, 10, 20].map(backoffMs)).toEqual([500, 1000, 5000, 5000])
  })
})
