/** Bindings and settings the Worker receives (wrangler.toml, secrets, `crabbox broker dev`). */
export interface Env {
  FLEET: DurableObjectNamespace
  CRABBOX_SHARED_TOKEN?: string
  CRABBOX_ADMIN_TOKEN?: string
  CRABBOX_SESSION_SECRET?: string
  CRABBOX_DEFAULT_ORG?: string
  CRABBOX_STATIC_POOL?: string
  [key: string]: unknown
}
