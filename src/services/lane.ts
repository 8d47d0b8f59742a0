import { readdirSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import type { Config } from '../config/schema.js'
import type { FastCommand } from '../fast-argv.js'
import { gitRootSearch, repoConfigNames } from '../config/load.js'
import { stateDir, userConfigLocation } from '../paths.js'
import type { Lease } from '../providers/types.js'
import { agentFileRoute } from '../transport/ssh/agent-client.js'
import { type LaneAsk, type PathStamp, stampPaths } from '../transport/ssh/agent-lane.js'
import { hydrationRecordPath, readHydration } from './actions/record.js'
import { networkOf, tailnetCandidates } from './network.js'
import { junitPatterns } from './run/steps/results.js'
import { type ResolvedTarget, STATIC_PROVIDERS } from './ssh.js'

/**
 * The spare worker's half of the agent lane (src/transport/ssh/agent-lane.ts): before a warm
 * `ssh --id X -- <cmd>` or `run --id X [--no-sync] -- <cmd>` reads anything, stamp every file its
 * answer can come from; once the ssh service or the run pipeline has resolved it, file the route
 * with the agent when the answer came from those files alone (a static host of provider `ssh`,
 * no broker), so the agent runs the next one itself.
 */

export interface LaneStamps {
  ask: LaneAsk
  leaseId: string
  stamps: PathStamp[]
}

/**
 * The stamps a route for `fast` would rest on, taken now (the command's cwd and environment are
 * this process's); undefined when it cannot have one, or a file changed too recently to trust.
 */
export function stampLane(fast: FastCommand, build: string): LaneStamps | undefined {
  const leaseId = (fast.flags.id as string | undefined) ?? fast.lease
  if (!leaseId || fast.flags.debug || !laneCommand(fast)) return undefined
  const env = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined))
  const cwd = process.cwd()
  // The checkout's root is the first folder up with a `.git`: only whether each is there counts.
  const { root, looked } = gitRootSearch(cwd)
  const repoConfigs = repoConfigNames.map((name) => join(root, name))
  const stamps = stampPaths([...lanePaths(leaseId, env), ...repoConfigs], looked)
  return stamps && { ask: { build, fast: { command: fast.command, flags: fast.flags, lease: fast.lease }, cwd, env }, leaseId, stamps }
}

/** `ssh`, and `run` without `--timing-json` (its line is the pipeline's whole timing). */
const laneCommand = (fast: FastCommand) => fast.command === 'ssh' || (fast.command === 'run' && !fast.flags['timing-json'])

/**
 * Every file the config loader (but the repo's), the ssh provider and the repo claim read for
 * `ssh --id <leaseId>`; a run also reads its lease's hydration record.
 */
function lanePaths(leaseId: string, env: Record<string, string>): string[] {
  const claims = join(stateDir(), 'claims')
  const home = homedir()
  return [
    // The user config: where this platform reads it, and on macOS both places (which is read depends on which exist).
    ...userConfigFiles(env),
    // The ssh provider reads every claim to find the lease by ID or slug.
    claims,
    ...listing(claims),
    join(stateDir(), 'repo-claims', `${leaseId}.json`),
    // A configured host that was never claimed takes the user's own key, whichever of these is there.
    join(home, '.ssh', 'id_ed25519'),
    join(home, '.ssh', 'id_rsa'),
    hydrationRecordPath(leaseId),
  ]
}

function userConfigFiles(env: Record<string, string>): string[] {
  const here = userConfigLocation(env)
  const mac = userConfigLocation(env, { platform: 'darwin', exists: () => true }).path
  const xdg = userConfigLocation(env, { platform: 'linux' }).path
  return [here.path, ...(here.alsoRead ? [here.alsoRead] : []), mac, xdg]
}

function listing(dir: string): string[] {
  try {
    return readdirSync(dir).map((name) => join(dir, name))
  } catch {
    return []
  }
}

/** What the ssh service had resolved when the command was about to run. */
export interface LaneResolved {
  resolved: ResolvedTarget
  /** What goes before the command's words on the runner (`cd -- <workdir> 2>/dev/null; `). */
  prefix: string
  /** The config loader's files, there or not. */
  looked: string[]
  /** The configured provider: the ssh provider must be the one asked first for the lease. */
  provider: string
}

/**
 * Files the route with the agent when the answer rests on the stamped files alone: the ssh
 * provider's own record of the lease named by its ID, no broker, no access to revoke, and every
 * file the config loader looked for among the stamped ones.
 */
export async function fileLaneRoute(lane: LaneStamps, at: LaneResolved): Promise<void> {
  const { resolved } = at
  const fromRecords = STATIC_PROVIDERS.has(at.provider) && resolved.provider === 'ssh' && !resolved.broker && !resolved.revoke
  if (!fromRecords || resolved.leaseId !== lane.leaseId || !allStamped(lane, at.looked)) return
  await agentFileRoute({ op: 'lane-route', ...lane.ask, target: resolved.target, prefix: at.prefix, stamps: lane.stamps })
}

const allStamped = (lane: LaneStamps, looked: string[]) => {
  const stamped = new Set(lane.stamps.map(([path]) => path))
  return looked.every((path) => stamped.has(path))
}

/**
 * The lease reached at its public address with no tailnet probed (network `public`, or no tailnet
 * address to try): nothing a later run could answer differently.
 */
function publicWithoutProbe(lease: Lease, network: Config['network']): boolean {
  return (networkOf(lease)?.network ?? 'public') === 'public' && (network === 'public' || tailnetCandidates(lease).length === 0)
}

/**
 * What the run pipeline had resolved when a command was about to run (`RunFlags.beforeCommand`):
 * a `--no-sync` one, or one whose warm run found nothing to sync.
 */
export interface RunLaneResolved {
  lease: Lease
  /** The `--no-sync` cd-or-make of the workdir, before the runner command (empty for a run that syncs). */
  prefix: string
  /** The environment `env.allow` forwards. */
  env: Record<string, string>
  /** The run is recorded on a broker. */
  broker: boolean
  /** A run that syncs: the checkout, its workdir on the runner and the sync settings. */
  sync?: { repoRoot: string; workdir: string; config: Config['sync'] }
}

/**
 * Files a `run` route when nothing of the pipeline but its runner command and its lines applies
 * (services/run/on-lane.ts runs it): the ssh provider's own record of the lease named by its ID,
 * no broker to record on, a Linux runner, no hydrated Actions job, its public address with no
 * tailnet to probe, no JUnit results to read, and every file the config loader looked for among
 * the stamped ones. A run that syncs also needs the fingerprint check (no checksum mode).
 */
export async function fileRunLaneRoute(lane: LaneStamps, at: RunLaneResolved, loaded: { config: Config; looked: string[] }): Promise<void> {
  const { lease, sync } = at
  const { config } = loaded
  const fromRecords = STATIC_PROVIDERS.has(config.provider) && lease.provider === 'ssh' && !at.broker
  const plain = config.target === 'linux' && !lease.windows && !readHydration(lease.id) && publicWithoutProbe(lease, config.network)
  if (!fromRecords || !plain || lease.id !== lane.leaseId || junitPatterns(config.results.junit).length > 0) return
  // The route's kind follows the command line it is filed under.
  if ((lane.ask.fast.flags['no-sync'] === true) !== (sync === undefined)) return
  if ((sync && (!sync.config.fingerprint || sync.config.checksum)) || !allStamped(lane, loaded.looked)) return
  const run = {
    env: at.env,
    leaseId: lease.id,
    slug: lease.slug,
    provider: lease.provider,
    ...(sync && { sync: { repoRoot: sync.repoRoot, workdir: sync.workdir, stateDir: stateDir(), config: sync.config } }),
  }
  await agentFileRoute({ op: 'lane-route', ...lane.ask, target: lease.ssh, prefix: at.prefix, stamps: lane.stamps, run })
}
