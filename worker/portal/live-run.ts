/**
 * The run page's one client script: a running run streams live over the control WebSocket
 * (`/v1/control`, authenticated by the portal session cookie), with the same gapless resume
 * as the CLI's `attach` (src/transport/broker/control.ts):
 *
 * - the page renders the output of events 1..N and says N in `data-after-seq`; the script
 *   subscribes with `after: N` and takes only the event numbered `last + 1`;
 * - an event at or below `last` was shown already and is skipped; one above `last + 1`
 *   means a gap, so the script subscribes again from `last` (once, until it catches up);
 * - a dropped socket reconnects with backoff (100 ms doubling to 5 s, reset after a
 *   connection that stayed up 1 s) and subscribes from `last`: nothing lost, nothing twice;
 * - `command.finished` (or `run.failed`) sets the state pill and the status line, and the
 *   script stops.
 *
 * The markup (worker/portal/run-page.tsx): `#run-live[data-run-id][data-after-seq]
 * [data-state=running]` holds `#run-live-status` (role=status); output goes to `#run-log`
 * (a fixed-height box while running, so arriving lines never move the page), event rows to
 * `#run-events` up to `data-events-shown` … 100, the state to `#run-state`. The script writes
 * `data-last-seq`, `data-socket` and `data-connections` on `#run-live` for the browser tests.
 *
 * Plain ES2020 with no imports, served as a static asset with a nonce'd `<script src>`.
 * It only ever sets `textContent` (never HTML), so log text shows as text.
 */
export const LIVE_RUN_SCRIPT = `(() => {
  'use strict'
  const root = document.getElementById('run-live')
  if (!root || root.getAttribute('data-state') !== 'running' || typeof WebSocket !== 'function') return
  const runID = root.getAttribute('data-run-id') || ''
  const log = document.getElementById('run-log')
  const rows = document.getElementById('run-events')
  const status = document.getElementById('run-live-status')
  if (!runID || !log) return
  const ROWS_MAX = 100
  let rowsShown = Number(root.getAttribute('data-events-shown')) || 0
  let last = Number(root.getAttribute('data-after-seq')) || 0
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

  const row = (event) => {
    if (!rows || rowsShown >= ROWS_MAX) return
    rowsShown++
    const tr = document.createElement('tr')
    const text = typeof event.message === 'string' ? event.message : typeof event.data === 'string' ? event.data.slice(0, 200) : ''
    const cells = [String(event.seq), event.type || '', event.phase || '', text, 'just now']
    cells.forEach((value, i) => {
      const td = document.createElement('td')
      if (i === 3) td.className = 'mono'
      if (i === 4) td.className = 'wide'
      td.textContent = value
      tr.appendChild(td)
    })
    rows.appendChild(tr)
  }

  const phase = (name) => {
    const cell = document.getElementById('run-phase')
    if (cell && name && cell.textContent !== name) cell.textContent = name
  }

  const finish = (event) => {
    finished = true
    const state = event.type === 'run.failed' ? 'failed' : event.phase || (event.exitCode === 0 ? 'succeeded' : 'failed')
    phase(state)
    const pill = document.getElementById('run-state')
    if (pill) {
      pill.textContent = state
      pill.classList.remove('info', 'ok', 'bad', 'warn')
      pill.classList.add(state === 'succeeded' ? 'ok' : 'bad')
    }
    mark('state', state)
    say('Finished: ' + state + (typeof event.exitCode === 'number' ? ', exit code ' + event.exitCode : '') + '. Reload for the full summary.')
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
      if (!event || typeof event.seq !== 'number' || event.seq <= last) continue
      if (event.seq > last + 1) {
        if (!resyncing) subscribe()
        break
      }
      resyncing = false
      last = event.seq
      row(event)
      if (typeof event.phase === 'string') phase(event.phase)
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
      else if (frame.type === 'error' && frame.code === 'not_found') { finished = true; say('This run is no longer visible.'); ws.close(1000) }
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

/** `GET /portal/assets/live-run.js`: the script, never sniffed as anything else. */
export function liveRunScriptResponse(): Response {
  return new Response(LIVE_RUN_SCRIPT, {
    headers: { 'content-type': 'text/javascript; charset=utf-8', 'x-content-type-options': 'nosniff' },
  })
}

/** Where the page loads the script from. */
export const LIVE_RUN_SCRIPT_PATH = '/portal/assets/live-run.js'
