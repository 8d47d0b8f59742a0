import { randomBytes } from 'node:crypto'

/*
 * One exec, two parts: a script on the runner (the guard's fingerprint check,
 * the pipelined command's wait for the apply's marker, the one exec's apply)
 * prints `<tag> ok` right before it starts the command. The tag is random per
 * exec, so no output can fake it. Nothing on stdout before that line is the
 * command's; stderr before it is held (the caller passes it on once the
 * command started, or names it in the script's error). `<tag> stale`, or a
 * line the caller's `onLine` ends the head on, means the command will not
 * start: what follows on stdout is kept for the caller (the probe's answer).
 */

export type TagVerdict = 'ok' | 'stale'

/** A tag for one exec: `crabbox-` and 24 random hex digits. */
export const newTag = (): string => `crabbox-${randomBytes(12).toString('hex')}`

export interface TagSink {
  /**
   * `<tag> ok`: the command starts now. `before`: the stdout ahead of the tag
   * (not the command's), `held`: the stderr so far. The rest of the chunk follows
   * through `onStdout`.
   */
  onStart: (before: Buffer, held: Buffer[]) => void
  /** The head ended without the command; `before`: the stdout ahead of the line that said so. */
  onStale?: (before: Buffer) => void
  /** The command's output, from the tag on. */
  onStdout: (chunk: Buffer) => void
  onStderr: (chunk: Buffer) => void
  /** Each complete stdout line ahead of the tag, as it arrives; true ends the head there, as `<tag> stale` would. */
  onLine?: (line: string) => boolean | void
  /** Hold only the newest stderr past this many bytes (whole chunks are dropped); all of it by default. */
  heldBytes?: number
}

export interface TagDemux {
  /** For the exec's options. */
  onStdout: (chunk: Buffer) => void
  onStderr: (chunk: Buffer) => void
  /** `ok` once the command started, `stale` once the head ended without it, undefined while neither came. */
  verdict: () => TagVerdict | undefined
  /** The stdout after a stale end (the probe's answer, when the script ran it). */
  after: () => Buffer
  /** The stderr held ahead of `ok` (all of it when the command never started). */
  held: () => Buffer[]
}

/** Splits an exec's output at `<tag> ok`: the script's head before, the command's output after. */
export function tagDemux(tag: string, sink: TagSink): TagDemux {
  const marks = { ok: Buffer.from(`${tag} ok\n`), stale: Buffer.from(`${tag} stale\n`) }
  let verdict: TagVerdict | undefined
  let head: Buffer = Buffer.alloc(0)
  let lines = 0 // head bytes already handed to onLine
  const tail: Buffer[] = []
  const held: Buffer[] = []
  let heldLength = 0

  const decide = (word: TagVerdict, at: number, restAt: number) => {
    verdict = word
    const before = head.subarray(0, at)
    const rest = head.subarray(restAt)
    head = Buffer.alloc(0)
    if (word === 'stale') {
      if (rest.length > 0) tail.push(rest)
      return sink.onStale?.(before)
    }
    heldLength = 0
    sink.onStart(before, held.splice(0))
    if (rest.length > 0) sink.onStdout(rest)
  }
  /** The first tag line in `head` (searched from `from` on). */
  const find = (from: number): { word: TagVerdict; at: number } | undefined => {
    const ok = head.indexOf(marks.ok, from)
    const stale = head.indexOf(marks.stale, from)
    if (ok === -1 && stale === -1) return undefined
    return ok !== -1 && (stale === -1 || ok < stale) ? { word: 'ok', at: ok } : { word: 'stale', at: stale }
  }

  return {
    onStdout(chunk) {
      if (verdict === 'ok') return sink.onStdout(chunk)
      if (verdict === 'stale') return void tail.push(chunk)
      const from = Math.max(0, head.length - marks.stale.length)
      head = head.length > 0 ? Buffer.concat([head, chunk]) : chunk
      const found = find(from)
      if (sink.onLine) {
        // Complete lines ahead of the tag, as they arrive; a partial one waits for its newline.
        const end = found ? found.at : head.length
        for (let nl = head.indexOf(10, lines); nl !== -1 && nl < end; nl = head.indexOf(10, lines)) {
          const start = lines
          lines = nl + 1
          if (sink.onLine(head.subarray(start, nl).toString('utf8'))) return decide('stale', start, lines)
        }
      }
      if (found) decide(found.word, found.at, found.at + marks[found.word].length)
    },
    onStderr(chunk) {
      if (verdict === 'ok') return sink.onStderr(chunk)
      held.push(chunk)
      heldLength += chunk.length
      while (sink.heldBytes !== undefined && held.length > 1 && heldLength - held[0].length >= sink.heldBytes)
        heldLength -= held.shift()!.length
    },
    verdict: () => verdict,
    after: () => Buffer.concat(tail),
    held: () => held,
  }
}
