import type { LeaseTelemetry } from '../../protocol/leases.js'
import type { RunTelemetry } from '../../protocol/runs.js'
import { shellQuote } from '../../transport/ssh/exec.js'
import type { SshSession } from '../../transport/ssh/types.js'

/**
 * Runner telemetry while a run goes: load, memory, disk of the work root and
 * uptime, read in one cheap exec (`/proc` and `df`) on the heartbeat cadence.
 * Samples go to the run record and ride on the lease heartbeats. A sample that
 * fails or is slow is dropped quietly: telemetry never slows or fails a run.
 */

const SAMPLE_BUDGET_MS = 5000
const SEPARATOR = '@@crabbox-telemetry@@'

/** `$1` is the work root; `/` when it does not exist yet. */
export const TELEMETRY_SCRIPT = [
  'cat /proc/loadavg 2>/dev/null',
  `echo ${SEPARATOR}`,
  'cat /proc/meminfo 2>/dev/null',
  `echo ${SEPARATOR}`,
  '{ df -Pk "$1" 2>/dev/null || df -Pk / 2>/dev/null; } | tail -n 1',
  `echo ${SEPARATOR}`,
  'cat /proc/uptime 2>/dev/null',
].join('\n')

const num = (text: string | undefined) => {
  const value = text === undefined || text.trim() === '' ? Number.NaN : Number(text)
  return Number.isFinite(value) && value >= 0 ? value : undefined
}
const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits

/** The script's output → a sample; undefined when no metric could be read. */
export function parseTelemetry(output: string, now: Date = new Date()): LeaseTelemetry | undefined {
  const [loadavg = '', meminfo = '', df = '', uptime = ''] = output.split(`${SEPARATOR}\n`)
  const sample: LeaseTelemetry = { capturedAt: now.toISOString(), source: 'ssh-linux' }
  const [load1, load5, load15] = loadavg.trim().split(/\s+/).map(num)
  if (load1 !== undefined) sample.load1 = load1
  if (load5 !== undefined) sample.load5 = load5
  if (load15 !== undefined) sample.load15 = load15

  const kib = (key: string) => num(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1])
  const memTotal = kib('MemTotal')
  const memAvailable = kib('MemAvailable') ?? kib('MemFree')
  if (memTotal !== undefined && memTotal > 0 && memAvailable !== undefined) {
    const used = Math.max(0, memTotal - memAvailable)
    sample.memoryTotalBytes = memTotal * 1024
    sample.memoryUsedBytes = used * 1024
    sample.memoryPercent = round((used / memTotal) * 100, 1)
  }

  // `df -Pk`: filesystem, 1024-blocks, used, available, capacity, mount point.
  const fields = df.trim().split(/\s+/)
  const blocks = num(fields[1])
  const used = num(fields[2])
  const available = num(fields[3])
  if (blocks !== undefined && used !== undefined && available !== undefined && blocks > 0) {
    sample.diskTotalBytes = blocks * 1024
    sample.diskUsedBytes = used * 1024
    if (used + available > 0) sample.diskPercent = round((used / (used + available)) * 100, 1)
  }

  const up = num(uptime.trim().split(/\s+/)[0])
  if (up !== undefined) sample.uptimeSeconds = Math.trunc(up)
  return Object.keys(sample).length > 2 ? sample : undefined
}

/** One sample from the runner; undefined on any failure. */
export async function sampleTelemetry(session: SshSession, workRoot: string): Promise<LeaseTelemetry | undefined> {
  const chunks: Buffer[] = []
  try {
    const result = await session.exec(`sh -c ${shellQuote(TELEMETRY_SCRIPT)} sh ${shellQuote(workRoot)}`, {
      onStdout: (chunk) => chunks.push(chunk),
      signal: AbortSignal.timeout(SAMPLE_BUDGET_MS),
    })
    if (result.code !== 0 && chunks.length === 0) return undefined
  } catch {
    return undefined
  }
  return parseTelemetry(Buffer.concat(chunks).toString('utf8'))
}

export interface TelemetrySampler {
  /** The latest sample, for the lease heartbeat. */
  latest(): LeaseTelemetry | undefined
  /** Stops sampling; what the finish request carries (first and latest sample). */
  stop(): RunTelemetry | undefined
}

export const noTelemetry: TelemetrySampler = { latest: () => undefined, stop: () => undefined }

/**
 * Samples after `firstAfterMs`, then every `intervalMs` until stopped; each sample goes
 * to `send` (the run's telemetry route). A sample still in flight is not doubled.
 */
export function startTelemetry(
  sample: () => Promise<LeaseTelemetry | undefined>,
  send: (sample: LeaseTelemetry) => Promise<void>,
  intervalMs: number,
  debug: (message: string) => void = () => {},
  firstAfterMs = 0,
): TelemetrySampler {
  let first: LeaseTelemetry | undefined
  let last: LeaseTelemetry | undefined
  let stopped = false
  let inFlight = false
  const tick = async () => {
    if (stopped || inFlight) return
    inFlight = true
    try {
      const taken = await sample()
      if (!taken) {
        debug('telemetry: no sample from the runner')
        return
      }
      if (stopped) return
      first ??= taken
      last = taken
      await send(taken)
    } catch (error) {
      debug(`telemetry: ${(error as Error).message}`)
    } finally {
      inFlight = false
    }
  }
  const firstTimer = setTimeout(() => void tick(), firstAfterMs)
  firstTimer.unref()
  const timer = setInterval(() => void tick(), intervalMs)
  timer.unref()
  return {
    latest: () => last,
    stop() {
      stopped = true
      clearTimeout(firstTimer)
      clearInterval(timer)
      if (!first || !last) return undefined
      return { start: first, end: last }
    },
  }
}
