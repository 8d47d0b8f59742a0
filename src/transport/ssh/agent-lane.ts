import { rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { PassThrough, Writable } from 'node:stream'
import type { FastCommand } from '../../fast-argv.js'
import { laneMarkerName } from './agent-folder.js'
import type { ExecOptions, ExecResult, SshTarget } from './types.js'

/**
 * The agent lane: a warm `crabbox ssh --id X -- <cmd>` or `crabbox run --id X [--no-sync] -- <cmd>`
 * that the connection agent runs itself, without a spare worker. A spare worker that ran such a
 * command from this machine's own records
 * (a static host, provider `ssh`) tells the agent where it went: a **route**, under a key made of
 * the build, the flags, the working folder and the whole environment, with the stamp of every
 * file the answer came from (config files, the git root, the lease's claims). The next thin
 * client with the same key gets the command run on that route at once, while every stamp still
 * matches; anything else (another key, a changed or new file, a broker or cloud lease, whose
 * answer is not in local files) is declined before anything ran and takes the spare worker.
 */

/** What a route is filed under: the same build, command line (the remote words aside), folder and environment. */
export interface LaneAsk {
  build: string
  fast: Pick<FastCommand, 'command' | 'flags' | 'lease'>
  cwd: string
  env: Record<string, string>
}

const byName = ([a]: [string, unknown], [b]: [string, unknown]) => (a < b ? -1 : a > b ? 1 : 0)

export function laneKey(ask: LaneAsk): string {
  // `_` is the shell's last argument: it differs between otherwise identical calls and nothing reads it.
  const env = Object.entries(ask.env)
    .filter(([name]) => name !== '_')
    .sort(byName)
  const flags = Object.entries(ask.fast.flags).sort(byName)
  return JSON.stringify([ask.build, ask.fast.command, ask.fast.lease ?? null, flags, ask.cwd, env])
}

/**
 * A file as the route saw it: `absent`, or its inode, size and change times (nanoseconds); a
 * path whose presence alone counts, `present:<inode>`.
 */
export type PathStamp = [path: string, stamp: string]

const PRESENT = 'present:'

function stampOf(path: string, presenceOnly = false): { stamp: string; changedMs?: number } {
  const stat = statSync(path, { bigint: true, throwIfNoEntry: false })
  if (!stat) return { stamp: 'absent' }
  if (presenceOnly) return { stamp: `${PRESENT}${stat.ino}` }
  return {
    stamp: `${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`,
    changedMs: Number((stat.mtimeNs > stat.ctimeNs ? stat.mtimeNs : stat.ctimeNs) / 1_000_000n),
  }
}

/** Whether `path` is still as `stamp` saw it. */
const unchanged = ([path, stamp]: PathStamp) => stampOf(path, stamp.startsWith(PRESENT)).stamp === stamp

/**
 * A file changed this recently may change again within the same clock tick of its file system,
 * leaving its stamp as it was (git calls such an index entry racily clean): a route that rests
 * on one is not kept.
 */
const RACY_MS = 1000

/**
 * Stamps `paths` before they are read: undefined when one of them changed too recently to trust
 * its stamp. Of `present`, only whether each is there counts: the `.git` a checkout's root is
 * found by, whose folder changes with every git command that writes the index.
 */
export function stampPaths(paths: string[], present: string[] = [], now = Date.now()): PathStamp[] | undefined {
  const stamps: PathStamp[] = []
  const presenceOnly = new Set(present)
  for (const path of new Set([...paths, ...present])) {
    const { stamp, changedMs } = stampOf(path, presenceOnly.has(path))
    if (changedMs !== undefined && changedMs > now - RACY_MS) return undefined
    stamps.push([path, stamp])
  }
  return stamps
}

/** What a `run` route adds: what the run pipeline had resolved, for its runner command and its lines. */
export interface RunFacts {
  /** The environment `env.allow` forwards, taken from the command's environment (part of the key). */
  env: Record<string, string>
  leaseId: string
  slug: string
  provider: string
  /** A run that syncs: what its unchanged check and guard need (absent: `run --no-sync`). */
  sync?: SyncFacts
}

/** What a syncing run's route carries for the unchanged check and the runner's fingerprint guard. */
export interface SyncFacts {
  repoRoot: string
  workdir: string
  /** The state folder as the command saw it (its snapshot and caches live there). */
  stateDir: string
  /** The run's `sync` settings (the config's shape; the service reads them). */
  config: Record<string, unknown>
}

export interface LaneRoute {
  key: string
  target: SshTarget
  /**
   * What goes before the command's words: `cd -- <workdir> 2>/dev/null; ` as the ssh service
   * builds it, or the run's `--no-sync` cd-or-make of its workdir.
   */
  prefix: string
  stamps: PathStamp[]
  /** A `run` route: the run's own facts (an `ssh` route has none). */
  run?: RunFacts
}

/** One command on the lane, for the code that runs it: its words, flags and the client's streams. */
export interface LaneCall {
  route: LaneRoute
  fast: FastCommand
  /** The thin client's environment. */
  env: Record<string, string>
  /** An exec on the route's pooled connection. */
  exec(command: string, options: ExecOptions): Promise<ExecResult>
  stdout: Writable
  stderr: Writable
  stdin: PassThrough | undefined
  /** Aborted by the client's first signal (its reason: the signal's name) or a closed stdout/stderr. */
  stop: AbortSignal
  /** Aborted by a second signal: the CLI would exit at once. */
  again: AbortSignal
  /** What the client reported closed, in order. */
  closed: ReadonlySet<'stdout' | 'stderr'>
  /**
   * The command runs: the client hears `started`, then what was written to stdout and stderr
   * (held until now). A runner that resolves declined without calling it ran nothing.
   */
  begin(): void
  /** The agent's file watcher: its stamp of `root` with `skip` left out (agent-watch.ts). */
  watch(root: string, skip: string[]): Promise<{ id: string; seq: number } | undefined>
}

/** A lane command that ran nothing: the client runs it in a spare worker. */
export interface LaneDeclined {
  declined: string
}

/**
 * Runs a lane command and resolves with the exit code its CLI process would end with, or
 * declined before it began. The agent runs `ssh` routes itself; `run` routes are run by a
 * runner the agent is started with (src/agent-main.ts), since what a run prints is the run
 * pipeline's.
 */
export type LaneRunner = (call: LaneCall) => Promise<number | LaneDeclined>

/** Routes are few (one per folder, lease and environment a user works in); the oldest goes past this. */
const MAX_ROUTES = 64

const COMMANDS = ['ssh', 'run'] as const

/**
 * The agent's routes: a route is used only while every file it rests on is as it was. With the
 * agent's folder `dir`, each command's marker (agent-folder.ts) is there while a route for it is.
 */
export class LaneRoutes {
  private readonly routes = new Map<string, LaneRoute>()
  private readonly marked = { ssh: false, run: false }

  constructor(private readonly dir?: string) {
    // An agent before this one may have left its markers: none of its routes came along.
    if (dir) for (const command of COMMANDS) rmSync(join(dir, laneMarkerName(command)), { force: true })
  }

  record(route: LaneRoute): void {
    this.routes.delete(route.key)
    this.routes.set(route.key, route)
    if (this.routes.size > MAX_ROUTES) this.routes.delete(this.routes.keys().next().value as string)
    this.mark()
  }

  /** The route for `key` when every stamp still matches; a stale route is dropped. */
  take(key: string): LaneRoute | undefined {
    const route = this.routes.get(key)
    if (!route) return undefined
    if (route.stamps.every(unchanged)) return route
    this.routes.delete(key)
    this.mark()
    return undefined
  }

  /** Drops every route (the agent shuts down), and with them the markers. */
  clear(): void {
    this.routes.clear()
    this.mark()
  }

  private mark(): void {
    if (!this.dir) return
    for (const command of COMMANDS) {
      const held = [...this.routes.values()].some((route) => (route.run !== undefined) === (command === 'run'))
      if (held === this.marked[command]) continue
      const path = join(this.dir, laneMarkerName(command))
      try {
        if (held) writeFileSync(path, '', { mode: 0o600 })
        else rmSync(path, { force: true })
        this.marked[command] = held
      } catch {
        // Only a hint (its folder went away, say): the agent's own sweep notices a removed folder.
      }
    }
  }
}
