/** Bindings and settings the Worker receives (wrangler.toml, secrets, `crabbox broker dev`). */
export interface Env {
  FLEET: DurableObjectNamespace
  /** One WebVNC relay object per lease (worker/bridge/relay.ts), named by the lease ID. */
  BRIDGE_RELAY: DurableObjectNamespace
  /** The artifact bucket (R2; `wrangler dev` simulates it locally); unset turns artifact uploads off. */
  ARTIFACTS?: R2Bucket
  /** Bearer token with admin rights (operators). */
  CRABBOX_ADMIN_TOKEN?: string
  /** Bearer token for ordinary users; owner comes from Access JWT or X-Crabbox-Owner. */
  CRABBOX_SHARED_TOKEN?: string
  /** HMAC key for `cbxu_` user tokens (falls back to the shared token). */
  CRABBOX_SESSION_SECRET?: string
  CRABBOX_DEFAULT_ORG?: string
  /** Provider used when a lease request names none (default: static when a static pool is set, else hetzner). */
  CRABBOX_DEFAULT_PROVIDER?: string
  /** JSON array of `{name, host, port, user, workRoot}` SSH hosts for the `static` provider. */
  CRABBOX_STATIC_POOL?: string
  /** Cloudflare Access team domain (e.g. `team.cloudflareaccess.com`) and audience tag. */
  CRABBOX_ACCESS_TEAM_DOMAIN?: string
  CRABBOX_ACCESS_AUD?: string
  CRABBOX_MAX_ACTIVE_LEASES?: string
  CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER?: string
  CRABBOX_MAX_ACTIVE_LEASES_PER_ORG?: string
  CRABBOX_MAX_ACTIVE_LEASES_PER_CREDENTIAL?: string
  CRABBOX_MAX_MONTHLY_USD?: string
  CRABBOX_MAX_MONTHLY_USD_PER_OWNER?: string
  CRABBOX_MAX_MONTHLY_USD_PER_ORG?: string
  /** Shortest TTL or idle timeout in seconds (default 60); shorter positive values are raised to it. */
  CRABBOX_MIN_LEASE_SECONDS?: string
  /** Flat JSON map `"provider:serverType": USD per hour`. */
  CRABBOX_COST_RATES_JSON?: string
  [key: string]: unknown
}

/** A string setting, or undefined when unset/empty. */
export function setting(env: Env, name: string): string | undefined {
  const value = env[name]
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined
}
