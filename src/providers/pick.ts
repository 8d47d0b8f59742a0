import { CrabboxError } from '../errors.js'
import { normalizeSlug } from '../protocol/ids.js'

/**
 * The one rule for finding a lease by what a user typed: an exact ID wins, else
 * a unique slug; several leases with that slug is exit 4 listing them.
 */
export function pickByIdOrSlug<T extends { id: string; slug: string }>(items: T[], idOrSlug: string, where: string): T {
  const exact = items.find((item) => item.id === idOrSlug)
  if (exact) return exact
  const slug = normalizeSlug(idOrSlug)
  const matches = items.filter((item) => item.slug === slug)
  if (matches.length === 1) return matches[0]
  if (matches.length > 1) throw ambiguousLease(idOrSlug, matches)
  throw new CrabboxError(`no ${where} lease ${idOrSlug}`, {
    exit: 'notFound',
    hint: 'run `crabbox list` to see active leases',
  })
}

export function ambiguousLease(idOrSlug: string, matches: { id: string; slug: string }[]): CrabboxError {
  return new CrabboxError(`lease ${idOrSlug} is ambiguous: ${matches.map((m) => `${m.id} (${m.slug})`).join(', ')}`, {
    exit: 'notFound',
    code: 'ambiguous',
    hint: 'pass the lease ID instead of the slug',
  })
}
