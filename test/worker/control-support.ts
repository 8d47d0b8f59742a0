import { SELF } from 'cloudflare:test'
import { expect } from 'vitest'
import { headersFor, type Who } from './broker-support.js'

/** A control WebSocket opened through the edge, with an inbox the test can wait on. */
export interface ControlClient {
  ws: WebSocket
  hello: any
  send(message: unknown): void
  /** The next frame matching `match` (frames before it that do not match stay queued). */
  next(match?: (frame: any) => boolean, timeoutMs?: number): Promise<any>
  /** Frames received so far and not yet taken. */
  pending(): any[]
  close(): void
}

export async function openControl(who: Who): Promise<ControlClient> {
  const response = await SELF.fetch('https://broker.test/v1/control', { headers: { ...headersFor(who), upgrade: 'websocket' } })
  if (response.status !== 101 || !response.webSocket) throw new Error(`control upgrade: ${response.status} ${await response.text()}`)
  const ws = response.webSocket
  const inbox: any[] = []
  let wake: (() => void) | undefined
  ws.addEventListener('message', (event) => {
    inbox.push(typeof event.data === 'string' ? JSON.parse(event.data) : { binary: true })
    wake?.()
  })
  ws.addEventListener('close', () => wake?.())
  ws.accept()

  async function next(match: (frame: any) => boolean = () => true, timeoutMs = 5_000): Promise<any> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const index = inbox.findIndex(match)
      if (index >= 0) return inbox.splice(index, 1)[0]
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no matching control frame within ${timeoutMs} ms; queued: ${JSON.stringify(inbox).slice(0, 400)}`)
      await new Promise<void>((resolve) => {
        wake = resolve
        setTimeout(resolve, Math.min(left, 250))
      })
    }
  }

  const hello = await next((frame) => frame.type === 'hello')
  return {
    ws,
    hello,
    send: (message) => ws.send(typeof message === 'string' ? message : JSON.stringify(message)),
    next,
    pending: () => [...inbox],
    close: () => ws.close(1000, 'test done'),
  }
}

/** Collects `run_events` for one run until `lastSeq` arrives; returns the seqs in arrival order. */
export async function collectSeqs(client: ControlClient, runID: string, lastSeq: number): Promise<number[]> {
  const seqs: number[] = []
  while (!seqs.includes(lastSeq)) {
    const frame = await client.next((f) => f.type === 'run_events' && f.runID === runID)
    for (const event of frame.events) seqs.push(event.seq)
    expect(frame.nextSeq).toBe(frame.events.at(-1)?.seq ?? frame.nextSeq)
  }
  return seqs
}
