import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { MODE_FILE, type ManifestEntry } from '../../src/services/sync/manifest.js'
import { looksCompressible, splitByBytes, tarStream, transferParts } from '../../src/services/sync/transfer.js'

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

describe('the gzip stream', () => {
  it('a stream mixing incompressible and compressible blocks unpacks byte for byte and barely grows the incompressible part', async () => {
    const root = mkdtempSync(join(tmpdir(), 'crabbox-gzip-'))
    try {
      const random = randomBytes(12 * 1024 * 1024)
      const text = Buffer.from('const value = compute(42)\n'.repeat(800_000))
      writeFileSync(join(root, 'a.bin'), random)
      writeFileSync(join(root, 'b.txt'), text)
      const entries: ManifestEntry[] = [
        { path: 'a.bin', mode: MODE_FILE, size: random.length, mtimeMs: 0, ctimeMs: 0, ino: 0 },
        { path: 'b.txt', mode: MODE_FILE, size: text.length, mtimeMs: 0, ctimeMs: 0, ino: 0 },
      ]
      const { stream, done } = tarStream({ root, entries, extra: () => [], extraPaths: [] }, { gzip: true })
      const chunks: Buffer[] = []
      for await (const chunk of stream) chunks.push(chunk as Buffer)
      await done
      const gz = Buffer.concat(chunks)
      const tar = gunzipSync(gz)
      // Both files are in the tar at their offsets (after their 512-byte headers), unchanged.
      expect(tar.subarray(512, 512 + random.length).equals(random)).toBe(true)
      expect(tar.includes(text.subarray(0, 4096))).toBe(true)
      // The random bytes cost barely more than themselves; once past them, the text is compressed again.
      expect(gz.length).toBeLessThan(random.length * 1.01 + text.length * 0.6)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
  it('the compressibility probe: random bytes are stored without a deflate, text and small blocks are compressed', () => {
    expect(looksCompressible(randomBytes(1024 * 1024))).toBe(false)
    expect(looksCompressible(Buffer.from('const value = compute(42)\n'.repeat(40_000)))).toBe(true)
    expect(looksCompressible(randomBytes(8 * 1024))).toBe(true)
    // Compressible text with one random stretch in the middle still compresses (two of three slices shrink).
    const mixed = Buffer.concat([Buffer.from('x = 1\n'.repeat(100_000)), randomBytes(100_000), Buffer.from('y = 2\n'.repeat(100_000))])
    expect(looksCompressible(mixed)).toBe(true)
  })
})
