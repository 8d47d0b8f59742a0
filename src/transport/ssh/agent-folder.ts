/**
 * Names in the agent's 0700 folder that a thin client reads without loading the agent's code.
 *
 * Where spare workers listen: `spare-<n>.sock`, numbered as they are started. The oldest waiting
 * spare is the one that reads ahead (src/services/sync/warm-files.ts): a `run` that syncs tries
 * it first; any other command takes them as the folder lists them.
 */
const spareSocketName = /^spare-(\d+)\.sock$/

/** A spare socket's number (its age: lower is older); Infinity for any other name. */
export function spareNumber(name: string): number {
  const match = spareSocketName.exec(name)
  return match ? Number(match[1]) : Number.POSITIVE_INFINITY
}

/** The spare sockets among `names`: oldest first, or as listed (the folder's own order). */
export function sparesInTurn(names: string[], oldestFirst = true): string[] {
  const spares = names.filter((name) => spareSocketName.test(name))
  return oldestFirst ? spares.sort((a, b) => spareNumber(a) - spareNumber(b)) : spares
}

/**
 * The agent lane's marker for a command: the file is there while the agent holds a route for
 * that command (agent-lane.ts, `LaneRoutes`), and a thin client asks the lane only then, so a
 * broker or cloud lease, which never has a route, pays no round trip to be declined. Only a
 * hint: a stale marker costs a decline, a missing one a spare worker's run.
 */
export const laneMarkerName = (command: 'ssh' | 'run') => `lane-${command}`
