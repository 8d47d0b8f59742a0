import { defaultSlug, normalizeSlug, slugCandidates } from '../protocol/ids.js'

export { newLeaseId, isLeaseId, defaultSlug, normalizeSlug } from '../protocol/ids.js'

/**
 * Direct mode: the default slug unless another live lease here holds it, then
 * the same suffixed candidates the broker would try, finally the bare lease ID.
 */
export function allocateSlug(leaseId: string, taken: Iterable<string>): string {
  const used = new Set(taken)
  return slugCandidates(defaultSlug(leaseId), leaseId).find((slug) => !used.has(slug)) ?? normalizeSlug(leaseId)
}
