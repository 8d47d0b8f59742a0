import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import { LIVE_RUN_SCRIPT } from '../../worker/portal/live-run.js'

/**
 * The run page's live script in a scripted page: a fake DOM and WebSocket, and timers the
 * test fires by hand. The browser tests (test/e2e/portal-*.test.ts) prove it in Chromium
 * against the real broker; this pins the resume rules frame by frame.
 */

class FakeElement {
  attributes: Record<string, string> = {}
  text = ''
  classes = new Set<string>()
  scrollTop = 0
  clientHeight = 100
  children: Record<string, FakeElement> = {}
  get scrollHeight() {
    return 100
  }
  getAttribute(name: string) {
    return this.attributes[name] ?? null
  }
  setAttribute(name: string, value: string) {
    this.attributes[name] = value
  }
  querySelector(selector: string) {
    return this.children[selector] ?? null
  }
  appended: unknown[] = []
  appendChild(node: { text: string } | FakeElement) {
    this.appended.push(node)
    if (!(node instanceof FakeElement)) this.text += node.text
  }
  set textContent(value: string) {
    this.text = value
  }
  get textContent() {
    return this.text
  }
  classList = {
    add: (...names: string[]) => names.forEach((n) => this.classes.add(n)),
    remove: (...names: string[]) => names.forEach((n) => this.classes.delete(n)),
  }
}

interface FakeSocket {
  url: string
  readyState: number
  sent: any[]
  closed?: number
  onopen?: () => void
  onmessage?: (message: { data: unknown }) => void
  onclose?: () => void
  close(code?: number): void
  send(text: string): void
}

function page(after = 0, state = 'running', shown = 0) {
  const root = new FakeElement()
  root.attributes = { 'data-run-id': 'run_1', 'data-after-seq': String(after), 'data-state': state, 'data-events-shown': String(shown) }
  const log = new FakeElement()
  const status = new FakeElement()
  const rows = new FakeElement()
  const pill = new FakeElement()
  pill.classes.add('info')
  const phase = new FakeElement()
  const byId: Record<string, FakeElement> = {
    'run-live': root,
    'run-log': log,
    'run-live-status': status,
    'run-events': rows,
    'run-state': pill,
    'run-phase': phase,
  }
  const sockets: FakeSocket[] = []
  const timers: { fn: () => void; ms: number }[] = []
  class WebSocket {
    static OPEN = 1
    constructor(url: string) {
      const socket: FakeSocket = {
        url,
        readyState: 0,
        sent: [],
        close(code) {
          socket.closed = code
          socket.readyState = 3
        },
        send(text) {
          socket.sent.push(JSON.parse(text))
        },
      }
      sockets.push(socket)
      return socket as unknown as WebSocket
    }
  }
  const document = {
    getElementById: (id: string) => byId[id] ?? null,
    createTextNode: (text: string) => ({ text }),
    createElement: () => new FakeElement(),
  }
  runInNewContext(LIVE_RUN_SCRIPT, {
    document,
    WebSocket,
    location: { protocol: 'https:', host: 'broker.example' },
    setTimeout: (fn: () => void, ms: number) => timers.push({ fn, ms }),
    clearTimeout: () => undefined,
    setInterval: () => 0,
    Date,
    JSON,
    Number,
    String,
    Array,
  })
  const socket = () => sockets.at(-1)!
  const open = () => {
    socket().readyState = 1
    socket().onopen!()
  }
  const frame = (events: object[]) =>
    socket().onmessage!({ data: JSON.stringify({ type: 'run_events', runID: 'run_1', events, nextSeq: 0 }) })
  const drop = () => {
    socket().readyState = 3
    socket().onclose!()
  }
  return { root, log, status, pill, phase, rows, sockets, timers, socket, open, frame, drop }
}

const out = (seq: number, data = `line ${seq}\n`) => ({ runID: 'run_1', seq, type: 'stdout', data, createdAt: 'now' })

describe('the live run script', () => {
  it('subscribes after the rendered seq and appends events in order, skipping ones already shown', () => {
    const p = page(3)
    expect(p.socket().url).toBe('wss://broker.example/v1/control')
    p.open()
    expect(p.socket().sent).toEqual([{ type: 'subscribe_run', runID: 'run_1', after: 3, limit: 500 }])
    expect(p.status.text).toBe('Live')
    p.frame([out(2), out(3), out(4), out(5)])
    p.frame([out(5), out(6)])
    expect(p.log.text).toBe('line 4\nline 5\nline 6\n')
    expect(p.root.attributes['data-last-seq']).toBe('6')
  })

  it('resubscribes once from the last shown event on a gap, then takes the backfill', () => {
    const p = page()
    p.open()
    p.frame([out(1)])
    p.frame([out(3)])
    p.frame([out(4)])
    expect(p.socket().sent).toEqual([
      { type: 'subscribe_run', runID: 'run_1', after: 0, limit: 500 },
      { type: 'subscribe_run', runID: 'run_1', after: 1, limit: 500 },
    ])
    p.frame([out(2), out(3), out(4)])
    expect(p.log.text).toBe('line 1\nline 2\nline 3\nline 4\n')
  })

  it('reconnects after a dropped socket with backoff and resumes from the last event, losing and repeating nothing', () => {
    const p = page()
    p.open()
    p.frame([out(1), out(2)])
    p.drop()
    expect(p.status.text).toBe('Reconnecting…')
    expect(p.timers.map((t) => t.ms)).toEqual([100])
    p.timers.shift()!.fn()
    expect(p.sockets).toHaveLength(2)
    p.drop() // refused before it opened: the next wait doubles
    expect(p.timers.map((t) => t.ms)).toEqual([200])
    p.timers.shift()!.fn()
    p.open()
    expect(p.socket().sent).toEqual([{ type: 'subscribe_run', runID: 'run_1', after: 2, limit: 500 }])
    p.frame([out(2), out(3)])
    expect(p.log.text).toBe('line 1\nline 2\nline 3\n')
    expect(p.root.attributes['data-connections']).toBe('2')
  })

  it('shows the finish: state pill, status with the exit code; closes and does not reconnect', () => {
    const p = page()
    p.open()
    p.frame([out(1), { runID: 'run_1', seq: 2, type: 'command.finished', phase: 'failed', exitCode: 3, createdAt: 'now' }])
    expect(p.pill.text).toBe('failed')
    expect([...p.pill.classes]).toEqual(['bad'])
    expect(p.status.text).toBe('Finished: failed, exit code 3. Reload for the full summary.')
    expect(p.root.attributes['data-state']).toBe('failed')
    expect(p.socket().closed).toBe(1000)
    p.drop()
    expect(p.timers).toEqual([])
  })

  it('keeps the summary’s phase with the events as they arrive, then the final state', () => {
    const p = page()
    p.open()
    p.frame([{ runID: 'run_1', seq: 1, type: 'command.started', phase: 'command', createdAt: 'now' }, out(2)])
    expect(p.phase.text).toBe('command')
    p.frame([{ runID: 'run_1', seq: 3, type: 'command.finished', phase: 'succeeded', exitCode: 0, createdAt: 'now' }])
    expect(p.phase.text).toBe('succeeded')
  })

  it('adds a row per event to the events table, up to 100 rows', () => {
    const p = page(0, 'running', 98)
    p.open()
    p.frame([out(1), out(2), out(3)])
    expect(p.rows.appended).toHaveLength(2)
    const cells = (p.rows.appended[0] as FakeElement).appended as FakeElement[]
    expect(cells.map((cell) => cell.text)).toEqual(['1', 'stdout', '', 'line 1\n', 'just now'])
  })

  it('does nothing on a finished run’s page', () => {
    const p = page(5, 'succeeded')
    expect(p.sockets).toEqual([])
  })

  it('ignores frames that are not its run events, and log text stays text', () => {
    const p = page()
    p.open()
    p.socket().onmessage!({ data: 'not json' })
    p.socket().onmessage!({ data: JSON.stringify({ type: 'run_events', runID: 'run_other', events: [out(1)] }) })
    p.socket().onmessage!({ data: JSON.stringify({ type: 'pong' }) })
    p.frame([out(1, '<script>alert(1)</script>\n')])
    expect(p.log.text).toBe('<script>alert(1)</script>\n')
  })
})
