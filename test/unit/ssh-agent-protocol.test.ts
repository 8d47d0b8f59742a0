import { describe, expect, it } from 'vitest'
import { encodeFrame, Frame, frameDecoder } from '../../src/transport/ssh/agent-protocol.js'

describe('agent frames', () => {
  it('reassemble across arbitrary chunk boundaries, binary and JSON alike', () => {
    const seen: Array<[number, string]> = []
    const decode = frameDecoder((type, payload) => seen.push([type, payload.toString('latin1')]))
    const bytes = Buffer.concat([
      encodeFrame(Frame.request, { op: 'status' }),
      encodeFrame(Frame.stdin, Buffer.from([0, 1, 2, 255])),
      encodeFrame(Frame.stdinEnd),
    ])
    for (let i = 0; i < bytes.length; i += 3) decode(bytes.subarray(i, i + 3))
    expect(seen).toEqual([
      [Frame.request, '{"op":"status"}'],
      [Frame.stdin, '\u0000\u0001\u0002\u00ff'],
      [Frame.stdinEnd, ''],
    ])
  })
})
