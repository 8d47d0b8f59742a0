import { describe, expect, it } from 'vitest'
import { splitByBytes, transferParts } from '../../src/services/sync/transfer.js'

const files = (...sizes: number[]) => sizes.map((size, i) => ({ path: `f${i}`, size }))

describe('splitting a large transfer across channels', () => {
  it('keeps every file exactly once, in order, in contiguous runs of about equal bytes', () => {
    const entries = files(...Array.from({ length: 1000 }, (_, i) => 100 + (i % 7) * 50))
    const parts = splitByBytes(entries, 4)
    expect(parts).toHaveLength(4)
    expect(parts.flatMap((part) => part.entries)).toEqual(entries)
    for (const part of parts) expect(entries.indexOf(part.entries[0])).toBe(part.start)
    const total = entries.reduce((n, entry) => n + entry.size, 0)
    for (const part of parts) expect(Math.abs(part.entries.reduce((n, entry) => n + entry.size, 0) - total / 4)).toBeLessThan(total * 0.02)
  })

  it('never makes an empty part: fewer files than channels, one huge file, nothing at all', () => {
    expect(splitByBytes(files(5, 5), 4).map((part) => part.entries.length)).toEqual([1, 1])
    expect(splitByBytes(files(1, 1_000_000, 1, 1), 4).every((part) => part.entries.length > 0)).toBe(true)
    expect(splitByBytes(files(0, 0, 0), 3).flatMap((part) => part.entries)).toHaveLength(3)
    expect(splitByBytes([], 4)).toEqual([])
  })

  it('uses several channels only for large transfers, unless CRABBOX_SYNC_CHANNELS says otherwise', () => {
    expect(transferParts(1024 * 1024, 100, {})).toBe(1)
    expect(transferParts(200 * 1024 * 1024, 20_000, {})).toBe(4)
    expect(transferParts(200 * 1024 * 1024, 2, {})).toBe(2)
    expect(transferParts(200 * 1024 * 1024, 20_000, { CRABBOX_SYNC_CHANNELS: '1' })).toBe(1)
    expect(transferParts(10, 20, { CRABBOX_SYNC_CHANNELS: '3' })).toBe(3)
    expect(transferParts(10, 20, { CRABBOX_SYNC_CHANNELS: '99' })).toBe(1)
  })
})
