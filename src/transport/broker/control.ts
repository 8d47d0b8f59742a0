import type { Socket } from 'node:net'
import ReconnectingWebSocket from 'partysocket/ws'
import * as v from 'valibot'
import WebSocket from 'ws'
import { ControlServerMessage, type ControlClientInput } from '../../protocol/control.js'
import { RUN_LIMITS, type RunEventRecord } from '../../protocol/runs.js'
import type { BrokerClient } from './client.js'

/**
 * The control channel: one reconnecting WebSocket to `/v1/control` per CLI
 * process, shared by attach streams and lease heartbeats.
 * HTTPS stays the canonical store: callers ask `whenOpen()` and use the HTTP
 * API when the socket is not there (an older broker answers 404/426).
 */

/** How long a caller waits for the socket before using HTTP instead (the dial budget). */
export const CONTROL_OPEN_BUDGET_MS = 1500
/** A silent socket is pinged this often and dropped when the pong does not come back by the next ping. */
const PING_INTERVAL_MS = 15_000

const RECONNECT_MIN_MS = 100
const RECONNECT_MAX_MS = 5000
const STABLE_UPTIME_MS = 1000
const REFUSED_RETRY_MS = 30_000

export type ControlState = 'connecting' | 'open' | 'unsupported' | 'closed'

/** A run subscription; `lastSeq()` is what the subscriber has already handled (resume point). */
export interface RunSubscriber {
  lastSeq(): number
  /** Events in seq order, each exactly `lastSeq() + 1` when delivered. */
  onEvent(event: RunEventRecord): void
  /** The broker answered the subscription with an error frame (`not_found`, ...). */
  onError?(code: string, message: string): void
}

export interface HeartbeatReply {
  leaseID: string
  expiresAt?: string
}

export interface ControlChannel {
  readonly state: ControlState
  /** Resolves true once the socket is open; false after `timeoutMs`, or at once when the broker has no control socket. */
  whenOpen(timeoutMs: number): Promise<boolean>
  /** Calls `listener` on every (re)open and every close; returns the unsubscribe. */
  onChange(listener: (state: ControlState) => void): () => void
  /** Follows a run; (re)subscribes from `lastSeq()` on every (re)open. Returns the unsubscribe. */
  subscribe(runID: string, subscriber: RunSubscriber): () => void
  /** One heartbeat over the socket; rejects when the socket is not open, the broker says no, or `timeoutMs` passes. */
  heartbeat(
    leaseID: string,
    body: { idleTimeoutSeconds?: number; telemetry?: Record<string, unknown> },
    timeoutMs: number,
  ): Promise<HeartbeatReply>
  /** Drops this holder's reference; the socket closes when the last holder releases it. */
  release(): void
}

class ControlUnavailable extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ControlUnavailable'
  }
}

interface PendingBeat {
  leaseID: string
  resolve(reply: HeartbeatReply): void
  reject(error: Error): void
}

/** The shared socket behind every holder in this process. */
class Channel {
  state: ControlState = 'connecting'
  refs = 0
  private readonly socket: ReconnectingWebSocket
  private readonly listeners = new Set<(state: ControlState) => void>()
  private readonly subscriptions = new Map<string, { subscriber: RunSubscriber; resyncing: boolean }>()
  private readonly beats: PendingBeat[] = []
  private raw?: WebSocket & { netSocket?: Socket }
  private failures = 0
  private openedAt?: number

  constructor(
    client: BrokerClient,
    private readonly onClosed: () => void,
  ) {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the socket subclass below reports back to this channel
    const channel = this
    // partysocket builds `new WebSocket(url)`; this subclass adds the headers (read again on
    // every reconnect, so a refreshed token is used) and a liveness ping.
    class AuthedSocket extends WebSocket {
      netSocket?: Socket
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { headers: client.authHeaders(), handshakeTimeout: 10_000 })
        channel.raw = this
        this.once('upgrade', (response) => (this.netSocket = response.socket as Socket))
        let alive = true
        let timer: NodeJS.Timeout | undefined
        this.on('open', () => {
          timer = setInterval(() => {
            if (!alive) return this.terminate()
            alive = false
            this.ping()
          }, PING_INTERVAL_MS).unref()
        })
        this.on('pong', () => (alive = true))
        this.on('message', () => (alive = true))
        this.on('close', () => clearInterval(timer))
      }
    }

    // Backoff lives in the URL provider on an unref'd timer: partysocket's own delay timer
    // would hold a finished CLI open for up to the maximum delay.
    const url = `${client.url.replace(/^http/, 'ws')}/v1/control`
    this.socket = new ReconnectingWebSocket(
      async () => {
        const backoff = this.failures === 0 ? 0 : Math.min(RECONNECT_MIN_MS * 2 ** (this.failures - 1), RECONNECT_MAX_MS)
        // A broker that refused the upgrade is asked again only now and then.
        const delay = this.state === 'unsupported' ? REFUSED_RETRY_MS : backoff
        this.failures++
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay).unref())
        return url
      },
      undefined,
      { WebSocket: AuthedSocket, minReconnectionDelay: 0, maxReconnectionDelay: 0, connectionTimeout: 10_000 },
    )
    this.socket.addEventListener('open', () => {
      this.openedAt = Date.now()
      this.setState('open')
      for (const [runID, entry] of this.subscriptions) this.sendSubscribe(runID, entry)
    })
    this.socket.addEventListener('close', () => {
      // A socket that stayed up a while resets the backoff; one that flaps keeps growing it.
      if (this.openedAt !== undefined && Date.now() - this.openedAt >= STABLE_UPTIME_MS) this.failures = 0
      this.openedAt = undefined
    })
    this.socket.addEventListener('close', () => this.dropped(this.state === 'unsupported' ? 'unsupported' : 'connecting'))
    this.socket.addEventListener('error', (event) => {
      // ws reports a refused upgrade as "Unexpected server response: <status>". 404/426: a
      // broker without the control socket; 401/403: let HTTP give the real auth error; 429:
      // this caller already holds the broker's limit of sockets. HTTP serves meanwhile;
      // partysocket keeps retrying in the background either way.
      const status = /Unexpected server response: (\d+)/.exec(event.message ?? '')?.[1]
      const refused = status !== undefined && ['401', '403', '404', '426', '429'].includes(status)
      this.dropped(refused || this.state === 'unsupported' ? 'unsupported' : 'connecting')
    })
    this.socket.addEventListener('message', (event) => this.receive((event as MessageEvent).data))
  }

  private setState(state: ControlState): void {
    if (this.state === 'closed') return
    const changed = state !== this.state
    this.state = state
    if (changed || state === 'open') for (const listener of [...this.listeners]) listener(state)
  }

  private dropped(state: 'connecting' | 'unsupported'): void {
    for (const beat of this.beats.splice(0)) beat.reject(new ControlUnavailable('control socket closed'))
    this.setState(state)
  }

  get isOpen(): boolean {
    return this.state === 'open' && this.socket.readyState === ReconnectingWebSocket.OPEN
  }

  onChange(listener: (state: ControlState) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  whenOpen(timeoutMs: number): Promise<boolean> {
    if (this.isOpen) return Promise.resolve(true)
    if (this.state !== 'connecting' || timeoutMs <= 0) return Promise.resolve(false)
    return new Promise((resolve) => {
      const finish = (open: boolean) => {
        clearTimeout(timer)
        off()
        resolve(open)
      }
      const timer = setTimeout(() => finish(false), timeoutMs)
      const off = this.onChange((state) => {
        if (state === 'open') finish(true)
        else if (state !== 'connecting') finish(false)
      })
    })
  }

  private send(message: ControlClientInput): boolean {
    if (!this.isOpen) return false
    this.socket.send(JSON.stringify(message))
    return true
  }

  private sendSubscribe(runID: string, entry: { subscriber: RunSubscriber; resyncing: boolean }): void {
    entry.resyncing = this.send({ type: 'subscribe_run', runID, after: entry.subscriber.lastSeq(), limit: RUN_LIMITS.eventsPageMax })
  }

  subscribe(runID: string, subscriber: RunSubscriber): () => void {
    const entry = { subscriber, resyncing: false }
    this.subscriptions.set(runID, entry)
    this.sendSubscribe(runID, entry)
    // The broker has no unsubscribe; its pushes for this run are ignored from now on.
    return () => {
      if (this.subscriptions.get(runID) === entry) this.subscriptions.delete(runID)
    }
  }

  heartbeat(
    leaseID: string,
    body: { idleTimeoutSeconds?: number; telemetry?: Record<string, unknown> },
    timeoutMs: number,
  ): Promise<HeartbeatReply> {
    return new Promise((resolve, reject) => {
      const pending: PendingBeat = {
        leaseID,
        resolve: (reply) => {
          clearTimeout(timer)
          resolve(reply)
        },
        reject: (error) => {
          clearTimeout(timer)
          reject(error)
        },
      }
      const timer = setTimeout(() => {
        const at = this.beats.indexOf(pending)
        if (at >= 0) this.beats.splice(at, 1)
        reject(new ControlUnavailable(`no heartbeat reply within ${timeoutMs} ms`))
      }, timeoutMs)
      this.beats.push(pending)
      if (!this.send({ type: 'heartbeat', leaseID, ...body })) {
        this.beats.splice(this.beats.indexOf(pending), 1)
        pending.reject(new ControlUnavailable('control socket not open'))
      }
    })
  }

  /** Frames that do not parse or do not match the protocol are ignored: a bad frame never breaks the stream. */
  private receive(data: unknown): void {
    if (typeof data !== 'string') return
    let json: unknown
    try {
      json = JSON.parse(data)
    } catch {
      return
    }
    const parsed = v.safeParse(ControlServerMessage, json)
    if (!parsed.success) return
    const frame = parsed.output
    switch (frame.type) {
      case 'run_events': {
        const entry = this.subscriptions.get(frame.runID)
        if (entry) this.deliver(frame.runID, entry, frame.events)
        return
      }
      case 'heartbeat': {
        const at = Math.max(
          0,
          this.beats.findIndex((beat) => beat.leaseID === frame.leaseID),
        )
        const beat = this.beats.splice(at, 1)[0]
        if (!beat) return
        if (frame.ok) beat.resolve({ leaseID: frame.leaseID, expiresAt: frame.expiresAt })
        else beat.reject(new ControlUnavailable(`heartbeat refused: ${frame.error ?? 'not ok'}`))
        return
      }
      case 'error':
        // Error frames carry no run ID; with one subscription (attach) it is that one's.
        if (frame.code === 'not_found' && this.subscriptions.size === 1) {
          for (const { subscriber } of this.subscriptions.values()) subscriber.onError?.(frame.code, frame.message)
        }
        return
      default:
        return // hello, pong
    }
  }

  /** In order, each event once: older ones are skipped; a gap means resubscribing from the last handled seq. */
  private deliver(runID: string, entry: { subscriber: RunSubscriber; resyncing: boolean }, events: RunEventRecord[]): void {
    const { subscriber } = entry
    for (const event of events) {
      const last = subscriber.lastSeq()
      if (event.seq <= last) continue
      if (event.seq > last + 1) {
        if (!entry.resyncing) this.sendSubscribe(runID, entry)
        return
      }
      entry.resyncing = false
      subscriber.onEvent(event)
    }
    if (events.length === 0) entry.resyncing = false
  }

  close(): void {
    this.setState('closed')
    for (const beat of this.beats.splice(0)) beat.reject(new ControlUnavailable('control channel closed'))
    const raw = this.raw
    this.socket.close(1000, 'bye')
    // Do not let a slow close handshake hold the process open.
    raw?.netSocket?.unref()
    if (raw) setTimeout(() => raw.terminate(), 1000).unref()
    this.onClosed()
  }
}

const channels = new Map<string, Channel>()

/**
 * The process's control channel for this broker and identity, opened on first use.
 * Every holder calls `release()` when done; the last one closes the socket.
 */
export function openControlChannel(client: BrokerClient): ControlChannel {
  const key = `${client.url} ${JSON.stringify(client.authHeaders())}`
  let channel = channels.get(key)
  if (!channel || channel.state === 'closed') {
    const created: Channel = new Channel(client, () => {
      if (channels.get(key) === created) channels.delete(key)
    })
    channel = created
    channels.set(key, channel)
  }
  const shared = channel
  shared.refs++
  let released = false
  return {
    get state() {
      return shared.state
    },
    whenOpen: (timeoutMs) => shared.whenOpen(timeoutMs),
    onChange: (listener) => shared.onChange(listener),
    subscribe: (runID, subscriber) => shared.subscribe(runID, subscriber),
    heartbeat: (leaseID, body, timeoutMs) => shared.heartbeat(leaseID, body, timeoutMs),
    release() {
      if (released) return
      released = true
      if (--shared.refs === 0) shared.close()
    },
  }
}
