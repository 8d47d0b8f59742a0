/**
 * The run page's one client script: a running run streams live over the control WebSocket
 * (`/v1/control`, authenticated by the portal session cookie), with the same gapless resume
 * as the CLI's `attach` (src/transport/broker/control.ts):
 *
 * - the page renders the output of events 1..N and says N in `data-after`; the script
 *   subscribes with `after: N` and appends only the event numbered `last + 1`;
 * - an event at or below `last` was shown already and is skipped; one above `last + 1`
 *   means a gap, so the script subscribes again from `last` (once, until it catches up);
 * - a dropped socket reconnects with backoff (100 ms doubling to 5 s, reset after a
 *   connection that stayed up 1 s) and subscribes from `last`: nothing lost, nothing twice;
 * - `command.finished` (or `run.failed`) sets the state pill and exit code, and the script stops.
 *
 * The markup it needs (worker/portal's run page renders it for a running run):
 * `[data-live-run][data-run-id][data-after]` around `[data-live-log]` (a fixed-height box,
 * so arriving lines never move the page), `[data-live-status]` (role=status: Live,
 * Reconnecting…, Finished), and any `[data-live-state]` / `[data-live-exit]` to update.
 * The script also writes `data-last-seq`, `data-socket` and `data-connections` on the
 * root, which the browser tests read.
 *
 * Plain ES2020 with no imports, served as a static asset with a nonce'd `<script src>`.
 * It only ever sets `textContent` (never HTML), so log text shows as text.
 */
export const LIVE_RUN_SCRIPT = `(() => {
  'use strict'
  const root = document.querySelector('[data-live-run]')
  if (!root || typeof WebSocket !== 'function') return
  const runID = root.getAttribute('data-run-id') || ''
  const log = root.querySelector('[data-live-log]')
  const status = root.querySelector('[data-live-status]')
  if (!runID || !log) return
  let last = Number(root.getAttribute('data-after')) || 0
  let socket = null
  let finished = false
  let resyncing = false
  let failures = 0
  let openedAt = 0
  let connections = 0
  let timer = 0
  let heard = 0

  const say = (text) => { if (status && status.textContent !== text) status.textContent = text }
  const mark = (name, value) => root.setAttribute('data-' + name, String(value))

  const write = (text) => {
    if (!text) return
    const pinned = log.scrollHeight - log.scrollTop - log.clientHeight < 8
    log.appendChild(document.createTextNode(text))
    if (pinned) log.scrollTop = log.scrollHeight
  }

  const finish = (event) => {
    finished = true
    const state = event.type === 'run.failed' ? 'failed' : event.phase || (event.exitCode === 0 ? 'succeeded' : 'failed')
    for (const el of document.querySelectorAll('[data-live-state]')) {
      el.textContent = state
      el.classList.remove('info', 'ok', 'bad', 'warn')
      el.classList.add(state === 'succeeded' ? 'ok' : 'bad')
    }
    if (typeof event.exitCode === 'number') for (const el of document.querySelectorAll('[data-live-exit]')) el.textContent = String(event.exitCode)
    mark('state', state)
    say('Finished: ' + state + (typeof event.exitCode === 'number' ? ', exit code ' + event.exitCode : ''))
    clearTimeout(timer)
    if (socket) socket.close(1000, 'run finished')
  }

  const subscribe = () => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return
    socket.send(JSON.stringify({ type: 'subscribe_run', runID, after: last, limit: 500 }))
    resyncing = true
  }

  const deliver = (events) => {
    let text = ''
    let end = null
    for (const event of events) {
      if (typeof event.seq !== 'number' || event.seq <= last) continue
      if (event.seq > last + 1) {
        if (!resyncing) subscribe()
        break
      }
      resyncing = false
      last = event.seq
      if ((event.type === 'stdout' || event.type === 'stderr') && typeof event.data === 'string') text += event.data
      else if (event.type === 'command.finished' || event.type === 'run.failed') { end = event; break }
    }
    if (events.length === 0) resyncing = false
    write(text)
    mark('last-seq', last)
    if (end) finish(end)
  }

  const later = () => {
    if (finished) return
    if (openedAt && Date.now() - openedAt >= 1000) failures = 0
    openedAt = 0
    const delay = Math.min(100 * 2 ** failures, 5000)
    failures++
    say('Reconnecting…')
    clearTimeout(timer)
    timer = setTimeout(connect, delay)
  }

  const connect = () => {
    if (finished) return
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1/control')
    socket = ws
    ws.onopen = () => {
      openedAt = Date.now()
      mark('socket', 'open')
      mark('connections', ++connections)
      say('Live')
      subscribe()
    }
    ws.onmessage = (message) => {
      heard = Date.now()
      if (socket !== ws || typeof message.data !== 'string') return
      let frame
      try { frame = JSON.parse(message.data) } catch { return }
      if (!frame || typeof frame !== 'object') return
      if (frame.type === 'run_events' && frame.runID === runID && Array.isArray(frame.events)) deliver(frame.events)
      else if (frame.type === 'error' && frame.code === 'not_found') { finished = true; say('This run is no longer visible'); ws.close(1000) }
    }
    ws.onclose = () => {
      if (socket !== ws) return
      socket = null
      mark('socket', 'closed')
      later()
    }
  }

  // A socket that hears nothing (not even the pong) for two pings is dead: drop it and resume.
  setInterval(() => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return
    if (Date.now() - Math.max(heard, openedAt) > 65000) return socket.close(4000, 'silent')
    socket.send('{"type":"ping"}')
  }, 30000)

  mark('last-seq', last)
  say('Connecting…')
  connect()
})()
`

/** `GET /portal/assets/live-run.js`: the script, cacheable for a few minutes, never sniffed as anything else. */
export function liveRunScriptResponse(): Response {
  return new Response(LIVE_RUN_SCRIPT, {
    headers: {
      'content-type': 'text/javascript; charset=utf-8',
      'cache-control': 'public, max-age=300',
      'x-content-type-options': 'nosniff',
    },
  })
}

/** Where the page loads the script from. */
export const LIVE_RUN_SCRIPT_PATH = '/portal/assets/live-run.js'
