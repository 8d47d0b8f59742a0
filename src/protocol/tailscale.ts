import * as v from 'valibot'

/**
 * Tailscale on a lease: the metadata a lease record carries, the update the
 * CLI posts once the runner has joined (`POST /v1/leases/{id}/tailscale`),
 * and the tag and hostname rules the broker and the CLI share. The auth key
 * is never part of any of these.
 */

export const TAILSCALE_STATES = ['requested', 'ready', 'failed'] as const
export const TAILSCALE_TAG_PATTERN = /^tag:[a-z0-9_-]{1,63}$/
export const DEFAULT_TAILSCALE_TAGS: readonly string[] = ['tag:crabbox']
export const DEFAULT_TAILSCALE_HOSTNAME_TEMPLATE = 'crabbox-{slug}'

/** Tailscale metadata on a lease record; only present when the lease asked for Tailscale. */
export const TailscaleMetadata = v.object({
  enabled: v.boolean(),
  hostname: v.optional(v.string()),
  fqdn: v.optional(v.string()),
  ipv4: v.optional(v.string()),
  tags: v.optional(v.array(v.string())),
  state: v.optional(v.picklist(TAILSCALE_STATES)),
  /** Only when `state` is `failed`. */
  error: v.optional(v.string()),
  exitNode: v.optional(v.string()),
  /** Only with an exit node. */
  exitNodeAllowLanAccess: v.optional(v.boolean()),
})
export type TailscaleMetadata = v.InferOutput<typeof TailscaleMetadata>

const Field = v.optional(v.pipe(v.string(), v.trim(), v.maxLength(256, 'at most 256 characters')))

/** `POST /v1/leases/{id}/tailscale`: a partial update, merged into the record (see worker/fleet/tailscale.ts). */
export const TailscaleUpdateRequest = v.object({
  enabled: v.optional(v.boolean()),
  hostname: Field,
  fqdn: Field,
  ipv4: Field,
  error: Field,
  exitNode: Field,
  tags: v.optional(v.pipe(v.array(v.pipe(v.string(), v.maxLength(64))), v.maxLength(32))),
  /** Any other value keeps the current state. */
  state: v.optional(v.string()),
  exitNodeAllowLanAccess: v.optional(v.boolean()),
})
export type TailscaleUpdateRequest = v.InferOutput<typeof TailscaleUpdateRequest>

/** Lowercased, trimmed, deduped tags; the ones that do not match `tag:[a-z0-9_-]{1,63}` are returned apart. */
export function normalizeTailscaleTags(tags: readonly string[]): { tags: string[]; invalid: string[] } {
  const seen = new Set<string>()
  const invalid: string[] = []
  for (const raw of tags) {
    const tag = raw.trim().toLowerCase()
    if (!tag) continue
    if (!TAILSCALE_TAG_PATTERN.test(tag)) invalid.push(raw.trim())
    else seen.add(tag)
  }
  return { tags: [...seen], invalid }
}

/**
 * The runner's tailnet hostname: `{id}` (the lease ID, `_` → `-`), `{slug}` and
 * `{provider}` substituted; lowercased; anything outside `[a-z0-9-]` becomes
 * `-`; dashes collapsed and trimmed; at most 63 characters.
 */
export function renderTailscaleHostname(template: string, lease: { id: string; slug: string; provider: string }): string {
  const text = (template.trim() || DEFAULT_TAILSCALE_HOSTNAME_TEMPLATE)
    .replaceAll('{id}', lease.id.replaceAll('_', '-'))
    .replaceAll('{slug}', lease.slug)
    .replaceAll('{provider}', lease.provider)
  return text
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 63)
    .replace(/-$/, '')
}
