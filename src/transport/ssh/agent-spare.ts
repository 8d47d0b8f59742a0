import { type ChildProcess, spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { buildStamp } from './agent-frames.js'

/** dist/fast-path.js, beside this module's folder dist/transport/ssh/. */
const fastPathFile = () => fileURLToPath(new URL('../../fast-path.js', import.meta.url))

// `node -e` gets the file's URL, its socket and its build: load the fast path, run its worker entry.
const WORKER_MAIN = 'const m = await import(process.argv[1]); await m.warmWorker(process.argv[2], process.argv[3])'

/**
 * A spare's environment: the agent's, with the NODE_EXTRA_CA_CERTS of the CLI that started the
 * agent put back (the agent itself runs without it, see agent-client.ts): a worker may talk to
 * the broker, and it serves clients started with that same value.
 */
function spareEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  if (env.CRABBOX_AGENT_EXTRA_CA_CERTS) env.NODE_EXTRA_CA_CERTS = env.CRABBOX_AGENT_EXTRA_CA_CERTS
  delete env.CRABBOX_AGENT_EXTRA_CA_CERTS
  return env
}

/** Spares kept ready: two, so a second command right after the first (ssh, then run) still finds one. */
const SPARES = 2

/** How long after a command ended (and none came) the spares taken are replaced. */
const QUIET_MS = 100

/**
 * The agent's spare workers (src/warm-worker.ts): Node processes with the fast path's modules
 * loaded, each listening on its own socket in the agent's folder for one thin client's command
 * (src/thin-client.ts). A worker that took a command leaves (it disconnects from the agent).
 * A replacement spends ≈ 50 ms of CPU loading modules, so it starts `QUIET_MS` after a command
 * ended, unless another command came meanwhile: one that follows at once (an agent's next call,
 * `ssh` then `run`) starts its Node process without a loading spare beside it, which on a busy
 * machine would share its core; a command on the agent lane holds a replacement back the same
 * way until it ended. Only a command that took the last spare starts one at once.
 * Not built (running from src/): no spares, thin clients fall back.
 */
export class SpareWorkers {
  private readonly waiting = new Set<ChildProcess>()
  private stopped = false
  private next = 0
  /** Spares in a row that ended before they were ready: after three, no more (a broken build). */
  private failed = 0
  private refill: NodeJS.Timeout | undefined
  /** Commands on the agent lane now, which take no spare but want the CPU as much. */
  private lanes = 0
  /** A replacement came due while a lane command ran: it waits for the end. */
  private due = false

  constructor(
    private readonly dir: string,
    private readonly log: (line: string) => void = () => {},
    private readonly file = fastPathFile(),
  ) {}

  /** Starts spares until `SPARES` wait for a command. */
  warm(): void {
    while (!this.stopped && this.waiting.size < SPARES && this.startOne());
  }

  /** A spare took a command: nothing starts beside it, unless it was the last spare. */
  private taken(): void {
    clearTimeout(this.refill)
    this.refill = undefined
    if (!this.stopped && this.waiting.size === 0) this.startOne()
  }

  /** A command ended: the spares taken are replaced once the next command had time to come. */
  private finished(): void {
    clearTimeout(this.refill)
    this.refill = setTimeout(() => {
      this.refill = undefined
      if (this.lanes > 0) this.due = true
      else this.warm()
    }, QUIET_MS)
  }

  /** The agent runs a lane command: a replacement about to start waits until it ended. */
  laneStarted(): void {
    this.lanes++
    if (this.refill === undefined) return
    clearTimeout(this.refill)
    this.refill = undefined
    this.due = true
  }

  laneEnded(): void {
    if (--this.lanes > 0 || !this.due) return
    this.due = false
    this.finished()
  }

  private startOne(): boolean {
    const env = spareEnv()
    const build = buildStamp(this.file, env)
    if (!build) return false
    const socket = join(this.dir, `spare-${this.next++}.sock`)
    rmSync(socket, { force: true })
    let child: ChildProcess
    try {
      // --expose-gc: a spare that read ahead collects before a command comes (warm-files.ts).
      child = spawn(
        process.execPath,
        ['--expose-gc', '--input-type=module', '-e', WORKER_MAIN, pathToFileURL(this.file).href, socket, build],
        {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          env,
        },
      )
    } catch (error) {
      this.log(`spare worker did not start: ${(error as Error).message}`)
      return false
    }
    this.waiting.add(child)
    let ready = false
    child.once('message', () => {
      ready = true
      this.failed = 0
    })
    child.on('error', () => {})
    // It took a command (or its build is stale): no longer ours to count.
    let took = false
    child.once('disconnect', () => {
      took = this.waiting.delete(child) && ready
      if (took) this.taken()
    })
    child.once('exit', (code, signal) => {
      this.waiting.delete(child)
      rmSync(socket, { force: true })
      if (!ready && !this.stopped && ++this.failed >= 3) {
        this.log(`spare workers end before they are ready (last: ${signal ?? code}); none are started again`)
        this.stopped = true
      }
      if (took) this.finished()
      else this.warm()
    })
    return true
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.refill)
    for (const child of this.waiting) child.kill()
    this.waiting.clear()
  }
}
