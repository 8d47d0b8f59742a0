import { describe, expect, it } from 'vitest'
import { CrabboxError } from '../../src/errors.js'
import { pickByIdOrSlug } from '../../src/providers/pick.js'
import { allocateSlug, defaultSlug } from '../../src/protocol/ids.js'
import { heartbeatIntervalMs } from '../../src/services/heartbeat.js'

const leases = [
  { id: 'cbx_000000000001', slug: 'tidal-lobster' },
  { id: 'cbx_000000000002', slug: 'blue-prawn' },
  { id: 'cbx_000000000003', slug: 'blue-prawn' },
]

describe('lease resolution by ID or slug', () => {
  it('finds a lease by exact ID or by a unique slug, in any case and spacing', () => {
    expect(pickByIdOrSlug(leases, 'cbx_000000000002', 'local').id).toBe('cbx_000000000002')
    expect(pickByIdOrSlug(leases, 'Tidal Lobster', 'local').id).toBe('cbx_000000000001')
  })

  it('an ambiguous slug is exit 4 naming every match; an unknown one is exit 4 too', () => {
    const ambiguous = (() => {
      try {
        pickByIdOrSlug(leases, 'blue-prawn', 'local')
      } catch (error) {
        return error as CrabboxError
      }
    })()
    expect(ambiguous?.exitCode).toBe(4)
    expect(ambiguous?.message).toContain('cbx_000000000002')
    expect(ambiguous?.message).toContain('cbx_000000000003')
    expect(() => pickByIdOrSlug(leases, 'nope', 'local')).toThrow(/no local lease nope/)
  })

  it('direct-mode slugs are the broker default unless taken, then a suffixed candidate', () => {
    expect(defaultSlug('cbx_000000000001')).toBe('tidal-lobster')
    expect(allocateSlug('cbx_000000000001', [])).toBe('tidal-lobster')
    const second = allocateSlug('cbx_000000000001', ['tidal-lobster'])
    expect(second).toMatch(/^tidal-lobster-[0-9a-f]{4}$/)
  })

  it('heartbeats every idle/3, clamped to 5–60 s', () => {
    expect(heartbeatIntervalMs(1800)).toBe(60_000)
    expect(heartbeatIntervalMs(60)).toBe(20_000)
    expect(heartbeatIntervalMs(3)).toBe(5_000)
  })
})
