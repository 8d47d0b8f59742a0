import { RunEventsResponse, RUN_LIMITS, type RunEventRecord, type RunRecord } from '../protocol/runs.js'
import { BrokerError } from '../transport/broker/client.js'
import { CONTROL_OPEN_BUDGET_MS, openControlChannel } from '../transport/broker/control.js'
import { color } from '../ui/colors.js'
import { fetchRun, requireRunBroker, type HistoryContext } from './history.js'

export interface AttachOptions {
  /** Print events after this sequence number. */
  after: number
  /**
   * HTTP polling interval while the control socket is not available; with the socket open,
   * how often a quiet socket checks whether the run ended unseen (`GET /v1/runs/{id}`).
   */
  pollMs: number
  /** Print nothing (`--json`: the result is the output). */
  quiet?: boolean
  /** Transport diagnostics (`--debug`). */
  debug?: (message: string) => void
}

export interface AttachResult {
  runId: string
  state: string
  exitCode: number
  /** The last event sequence printed; `attach --after` it to continue. */
  lastSeq: number
  /** How the events arrived: over the control socket, HTTP polling, or both (after a fallback). */
  transports: ('socket' | 'http')[]
}

/** While the socket is silent this long, its events are re-read over HTTP (a stalled socket). */
const SOCKET_SILENCE_CHECK_MS = 30_000

/** A short stderr line for events that are not output. */
function eventLine(event: RunEventRecord): string {
  const parts = [event.type]
  if (event.phase) parts.push(`phase=${event.phase}`)
  if (event.slug) parts.push(`slug=${event.slug}`)
  if (event.exitCode !== undefined) parts.push(`exit=${event.exitCode}`)
  if (event.message) parts.push(event.message.length > 200 ? `${event.message.slice(0, 200)}…` : event.message)
  return `${color.dim(`[crabbox] ${parts.join(' ')}`)}\n`
}

const sleep = (ms: number, wake: Promise<unknown>) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    void wake.then(() => {
      clearTimeout(timer)
      resolve()
    })
  })

/** Network trouble while polling is waited out (the broker may be restarting); anything else ends the attach. */
async function tolerant(step: () => Promise<boolean>): Promise<boolean> {
  try {
    return await step()
  } catch (error) {
    if (error instanceof BrokerError && (error.status === 0 || error.status >= 500 || error.status === 429)) return false
    throw error
  }
}

/**
 * `crabbox attach`: follows a run's events from `after`, printing each exactly once and in
 * order: stdout/stderr data to the matching stream, other events as short stderr lines.
 * Events come over the control socket when it opens within 1.5 s, else by HTTP polling from
 * the last printed sequence, switching back to the socket when it (re)opens. Resolves when
 * the run has finished and every event up to `command.finished` is printed.
 */
export async function attachRun(context: HistoryContext, runId: string, options: AttachOptions): Promise<AttachResult> {
  const client = requireRunBroker(context)
  let run: RunRecord = await fetchRun(client, runId)
  let last = options.after
  let lastEventAt = Date.now()
  let finishedAt: number | undefined
  const transports = new Set<'socket' | 'http'>()
  let notifyFinished!: () => void
  const finished = new Promise<void>((resolve) => (notifyFinished = resolve))

  // `crabbox attach … | head`: a closed stdout ends the attach quietly, like `tail -f`.
  let outputClosed = false
  const onOutputError = (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error
    outputClosed = true
    notifyFinished()
  }
  // Left in place: writes still queued when attach returns may fail the same way.
  process.stdout.on('error', onOutputError)

  /** Prints `event` if it is the next one; anything else was printed already or waits its turn. */
  const print = (event: RunEventRecord, via: 'socket' | 'http'): void => {
    if (event.seq !== last + 1 || outputClosed) return
    last = event.seq
    lastEventAt = Date.now()
    transports.add(via)
    if (options.quiet) {
      // nothing printed; the result says where it ended
    } else if (event.type === 'stdout' && event.data !== undefined) process.stdout.write(event.data)
    else if (event.type === 'stderr' && event.data !== undefined) process.stderr.write(event.data)
    else process.stderr.write(eventLine(event))
    if (event.type === 'command.finished') {
      finishedAt = event.seq
      if (event.exitCode !== undefined) run = { ...run, exitCode: event.exitCode }
      notifyFinished()
    }
  }

  /** Every event after `last` over HTTP; then whether the run is over with nothing left to print. */
  const catchUp = async (): Promise<boolean> => {
    for (;;) {
      const { events, nextSeq } = await client.request('GET', `/v1/runs/${runId}/events`, {
        query: { after: last, limit: RUN_LIMITS.eventsPageMax },
        schema: RunEventsResponse,
        timeoutMs: 15_000,
      })
      for (const event of events) print(event, 'http')
      if (finishedAt !== undefined || outputClosed) return true
      // A short page is the end, unless the broker cut it at its byte bound (`nextSeq`).
      if (events.length < RUN_LIMITS.eventsPageMax && nextSeq === undefined) break
    }
    // No command.finished yet: a run that ended without one (or before `after`) ends here.
    run = await fetchRun(client, runId)
    if (run.state === 'running') return false
    const { events } = await client.request('GET', `/v1/runs/${runId}/events`, {
      query: { after: last, limit: 1 },
      schema: RunEventsResponse,
      timeoutMs: 15_000,
    })
    return events.length === 0
  }

  /**
   * The socket was quiet for one poll interval: the run's state is read (one small request);
   * a run that ended is given one more interval for its last events to arrive on the socket,
   * then caught up over HTTP. After a long silence the events themselves are re-read.
   */
  const idleCheck = async (): Promise<boolean> => {
    if (Date.now() - lastEventAt >= SOCKET_SILENCE_CHECK_MS) {
      lastEventAt = Date.now() // the next full re-read after another long silence
      return catchUp()
    }
    run = await fetchRun(client, runId)
    if (run.state === 'running') return false
    await sleep(options.pollMs, finished)
    return finishedAt !== undefined || catchUp()
  }

  const result = (): AttachResult => ({
    runId,
    state: run.state,
    // A closed stdout on an unfinished run ends like a process killed by SIGPIPE.
    exitCode: outputClosed && finishedAt === undefined ? 141 : (run.exitCode ?? (run.state === 'succeeded' ? 0 : 1)),
    lastSeq: last,
    transports: [...transports],
  })

  // A finished run is replayed over HTTP: one or two requests, no socket.
  if (run.state !== 'running' && (await catchUp())) return result()

  const channel = openControlChannel(client)
  let notFound: string | undefined
  // Wakes the wait below: the socket opened or dropped, or the broker refused the subscription.
  let kick!: () => void
  let kicked = new Promise<void>((resolve) => (kick = resolve))
  const wake = () => {
    kick()
    kicked = new Promise<void>((resolve) => (kick = resolve))
  }
  const offChange = channel.onChange((state) => {
    options.debug?.(state === 'open' ? `control socket open; following ${runId} after seq ${last}` : `control socket ${state}`)
    wake()
  })
  const unsubscribe = channel.subscribe(runId, {
    lastSeq: () => last,
    onEvent: (event) => print(event, 'socket'),
    onError: (_code, message) => {
      notFound = message
      wake()
    },
  })
  try {
    let dialBudget = CONTROL_OPEN_BUDGET_MS
    while (finishedAt === undefined && !outputClosed) {
      if (notFound !== undefined)
        throw new BrokerError(`run ${runId}: ${notFound}`, {
          status: 404,
          errorCode: 'not_found',
          exit: 'notFound',
          hint: 'crabbox history lists recent runs',
        })
      if (await channel.whenOpen(dialBudget)) {
        // Events arrive through the subscription; wake on finish, on a drop, or after one quiet poll interval.
        const before = last
        await sleep(options.pollMs, Promise.race([finished, kicked]))
        if (finishedAt !== undefined || notFound !== undefined || outputClosed) continue
        if (last === before && channel.state === 'open' && (await tolerant(idleCheck))) break
        // Dropped: give the reconnect its dial budget before polling.
        dialBudget = CONTROL_OPEN_BUDGET_MS
        continue
      }
      // Poll until the socket (re)opens; its open event cuts the wait short.
      if (dialBudget > 0) options.debug?.(`polling ${runId} over HTTP every ${options.pollMs} ms after seq ${last}`)
      dialBudget = 0
      if ((await tolerant(catchUp)) || outputClosed) break
      await sleep(options.pollMs, Promise.race([finished, kicked]))
    }
  } finally {
    unsubscribe()
    offChange()
    channel.release()
  }
  return result()
}
