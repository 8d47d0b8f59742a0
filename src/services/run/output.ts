import type { Writable } from 'node:stream'
import { outputSink } from '../../transport/ssh/streams.js'
import type { Recorder } from './recorder.js'

/**
 * Remote output into one of our streams with backpressure, teeing each chunk to
 * the run recorder (which only queues it: broker posts never slow the terminal).
 * A slow reader (`crabbox run -- cat big | slow`) holds the remote command back
 * instead of growing this process. `drop` discards output once we are stopping.
 */
export function runOutputSink(out: NodeJS.WriteStream, stream: 'stdout' | 'stderr', recorder: Recorder, drop: () => boolean): Writable {
  return outputSink(out, drop, (chunk) => recorder.output(stream, chunk))
}

/** Resolves once everything written to `sink` reached its stream (or the sink failed). */
export function drained(sink: Writable): Promise<void> {
  return new Promise((resolve) => {
    sink.once('finish', resolve)
    sink.once('error', () => resolve())
    sink.end()
  })
}
