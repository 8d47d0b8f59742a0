/**
 * Identifiers shared by the CLI and the broker: lease and run IDs, slugs and
 * provider resource names. Pure.
 */

export const LEASE_ID_PATTERN = /^cbx_[a-f0-9]{12}$/
export const RUN_ID_PATTERN = /^run_[a-f0-9]{12}$/

function randomHex(bytes: number): string {
  const buffer = new Uint8Array(bytes)
  crypto.getRandomValues(buffer)
  return Array.from(buffer, (b) => b.toString(16).padStart(2, '0')).join('')
}

export const newLeaseId = (): string => `cbx_${randomHex(6)}`
export const newRunId = (): string => `run_${randomHex(6)}`
export const isLeaseId = (value: string): boolean => LEASE_ID_PATTERN.test(value)

/** FNV-1a 32-bit over the string's UTF-16 code units (bytes for ASCII IDs). */
function fnv1a32(input: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < input.length; i++) {
    hash ^= input.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash >>> 0
}

/** Lowercase; keep [a-z0-9]; each run of anything else becomes one dash; no edge dashes. */
export function normalizeSlug(input: string): string {
  return input
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
}

const ADJECTIVES = [
  'amber',
  'blue',
  'brisk',
  'coral',
  'crimson',
  'golden',
  'harbor',
  'jade',
  'pearl',
  'quick',
  'silver',
  'swift',
  'tidal',
  'violet',
]
const NOUNS = ['barnacle', 'crab', 'crayfish', 'hermit', 'krill', 'lobster', 'prawn', 'shrimp']

/** The slug a lease gets when none is requested: `cbx_000000000001` → `tidal-lobster`. */
export function defaultSlug(leaseId: string): string {
  const h = fnv1a32(leaseId)
  return `${ADJECTIVES[h % ADJECTIVES.length]}-${NOUNS[Math.floor(h / ADJECTIVES.length) % NOUNS.length]}`
}

/** How many suffixed candidates follow the base slug before allocation gives up. */
const SLUG_SUFFIX_ATTEMPTS = 19

/**
 * Slug candidates in the order the broker tries them: the base, then
 * `<base>-<4 hex of FNV(leaseId-n)>` for n = 0..18.
 */
export function slugCandidates(base: string, leaseId: string): string[] {
  const candidates = [base]
  for (let n = 0; n < SLUG_SUFFIX_ATTEMPTS; n++) {
    candidates.push(`${base}-${(fnv1a32(`${leaseId}-${n}`) & 0xffff).toString(16).padStart(4, '0')}`)
  }
  return candidates
}

/** Provider resource name: `crabbox-<slug>-<8 hex FNV(leaseId)>`, or `crabbox-cbx-…` without a slug. */
export function providerResourceName(leaseId: string, slug: string): string {
  if (!slug) return `crabbox-${leaseId.replace(/_/g, '-')}`
  return `crabbox-${slug}-${fnv1a32(leaseId).toString(16).padStart(8, '0')}`
}

/**
 * Direct mode: the default slug unless another live lease here holds it, then
 * the same suffixed candidates the broker would try, finally the bare lease ID.
 */
export function allocateSlug(leaseId: string, taken: Iterable<string>): string {
  const used = new Set(taken)
  return slugCandidates(defaultSlug(leaseId), leaseId).find((slug) => !used.has(slug)) ?? normalizeSlug(leaseId)
}
