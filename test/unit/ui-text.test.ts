import { describe, expect, it } from 'vitest'
import { plural, withArticle } from '../../src/ui/format.js'
import { closest, editDistance } from '../../src/ui/suggest.js'
import { relativeTime, renderTable } from '../../src/ui/table.js'

describe('text for people', () => {
  it('plural and article', () => {
    expect(plural(1, 'file')).toBe('1 file')
    expect(plural(0, 'file')).toBe('0 files')
    expect(plural(2, 'failure')).toBe('2 failures')
    expect(withArticle('ssh')).toBe('an ssh')
    expect(withArticle('aws')).toBe('an aws')
    expect(withArticle('local')).toBe('a local')
    expect(withArticle('static')).toBe('a static')
  })

  it('relative times', () => {
    const now = Date.parse('2026-01-01T12:00:00Z')
    expect(relativeTime('2026-01-01T13:29:30Z', now)).toBe('in 1h 29m')
    expect(relativeTime('2026-01-01T11:57:00Z', now)).toBe('3m ago')
    expect(relativeTime('2026-01-01T12:00:03Z', now)).toBe('just now')
    expect(relativeTime('2026-01-03T13:00:00Z', now)).toBe('in 2d 1h')
    expect(relativeTime('2026-01-01T11:59:30Z', now)).toBe('30s ago')
    expect(relativeTime('soon', now)).toBe('soon')
  })

  it('tables pad every column but the last under a header', () => {
    expect(
      renderTable(
        ['ID', 'STATE', 'COMMAND'],
        [
          ['run_1', 'succeeded', 'npm test'],
          ['run_22', 'failed', 'make'],
        ],
      ).join('\n'),
    ).toBe('ID      STATE      COMMAND\nrun_1   succeeded  npm test\nrun_22  failed     make')
  })

  it('suggestions: close typos only', () => {
    expect(editDistance('stpo', 'stop')).toBe(1)
    expect(closest('shwo', ['show', 'path', 'set'])).toBe('show')
    expect(closest('jsno', ['json', 'debug'])).toBe('json')
    expect(closest('frobnicate', ['run', 'stop', 'list'])).toBeUndefined()
  })
})
