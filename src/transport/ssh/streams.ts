import { PassThrough, Readable, Writable } from 'node:stream'
import type { ExecOptions } from './types.js'

/**
 * Calls `then` once `stream` can take more: on 'drain', or when it closed or
 * failed (a dead reader must not leave the writer paused forever).
 */
export function afterDrain(stream: Writable, then: () => void): void {
  const done = () => {
    stream.off('drain', done)
    stream.off('close', done)
    stream.off('error', done)
    then()
  }
  stream.once('drain', done)
  stream.once('close', done)
  stream.once('error', done)
}

/**
 * A writable that forwards remote output into one of our streams with
 * backpressure: a slow reader holds the remote command back instead of growing
 * this process. `tap` sees every chunk first (the run recorder queues it);
 * `drop` discards output once we are stopping.
 */
export function outputSink(
  out: NodeJS.WritableStream & { destroyed?: boolean },
  drop: () => boolean,
  tap?: (chunk: Buffer) => void,
): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      tap?.(chunk)
      if (drop() || out.destroyed || out.write(chunk)) return done()
      afterDrain(out as unknown as Writable, () => done())
    },
  })
}

type Pausable = { pause(): unknown; resume(): unknown }
const pausedBy = new WeakMap<Pausable, Writable>()

/** Writes `chunk`; when `stream` is full, pauses `source` until it drains (backpressure across a hop). */
export function writeOrPause(stream: Writable, chunk: Buffer, source: Pausable): void {
  if (stream.destroyed || stream.write(chunk)) return
  // Chunks already on their way while paused wait for the same drain, not one each.
  if (pausedBy.get(source) === stream) return
  pausedBy.set(source, stream)
  source.pause()
  afterDrain(stream, () => {
    pausedBy.delete(source)
    source.resume()
  })
}

const ours = new WeakSet<Readable>()

/**
 * Takes hold of a caller's stdin stream the moment exec is called. Node resumes
 * (and so discards) a child process's stdout that nobody reads once the child
 * exits; an exec's first await (reaching the agent, opening a channel) is often
 * longer than a fast child (`git bundle create -`) lives, and the remote command
 * then read an empty stdin. Piping into a bounded PassThrough at once keeps every
 * byte, with backpressure. `release` detaches the caller's stream afterwards.
 */
export function holdStdin(stdin: ExecOptions['stdin']): { stdin: ExecOptions['stdin']; release(): void } {
  if (!(stdin instanceof Readable) || ours.has(stdin)) return { stdin, release: () => {} }
  const held = new PassThrough()
  ours.add(held)
  const onError = (error: Error) => held.destroy(error)
  stdin.once('error', onError)
  stdin.pipe(held)
  return {
    stdin: held,
    release() {
      stdin.off('error', onError)
      stdin.unpipe(held)
      held.destroy()
    },
  }
}
