import { describe, expect, it } from 'vitest'
import { parseDuration } from '../../src/config/schema.js'

describe('parseDuration', () => {
  it('reads units and treats a bare number as seconds', () => {
    expect(parseDuration('90m')).toBe(5_400_000)
    expect(parseDuration('250ms')).toBe(250)
    expect(parseDuration('30')).toBe(30_000)
  })
  it('rejects nonsense with a message that says what to write', () => {
    expect(() => parseDuration('soon')).toThrow(/ms, s, m, h or d/)
  })
})
