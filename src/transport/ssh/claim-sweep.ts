import { readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { pidAlive } from '../../pids.js'
import { CLAIM_NAME } from './agent-frames.js'

/**
 * Claims left behind (agent-frames.ts, `takeClaim`). A thin client removes its claim once it has
 * the exit code; one killed before that leaves it in the agent's folder. The agent sweeps those
 * whose client is gone; a spare worker never runs a request whose client is gone, so a claim swept
 * from under a stalled worker cannot make it run a command its client already ran.
 */

/** A claim is swept only this long after it was made: its command may still be starting. */
export const CLAIM_SWEEP_MS = 60_000

/** The client's pid that a claim's name carries (`claim-<pid in hex>-<random>`). */
function clientOf(name: string): number | undefined {
  return CLAIM_NAME.test(name) ? Number.parseInt(name.split('-')[1], 16) : undefined
}

/** Whether the client that the claim `name` names (whoever made the file) has ended. */
export function claimClientGone(name: string): boolean {
  const pid = clientOf(name)
  return pid !== undefined && !pidAlive(pid)
}

/** Removes the claims in `dir` older than CLAIM_SWEEP_MS whose client has ended; returns how many. */
export function sweepClaims(dir: string, now = Date.now()): number {
  let swept = 0
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return 0
  }
  for (const name of names) {
    if (!claimClientGone(name)) continue
    try {
      if (now - statSync(join(dir, name)).mtimeMs < CLAIM_SWEEP_MS) continue
      rmSync(join(dir, name), { force: true })
      swept++
    } catch {
      // gone meanwhile
    }
  }
  return swept
}
