import { STATIC_POOL_SCHEMA } from '../providers/static.js'
import { ARTIFACT_SCHEMA } from './artifacts.js'
import { GITHUB_LOGIN_SCHEMA, GITHUB_LOGIN_SCHEMA_V2 } from './github.js'
import { IMAGE_SCHEMA } from './images.js'
import { LEASE_IDENTITY_SCHEMA, LEASE_SCHEMA } from './lease-store.js'
import { RUN_IDENTITY_SCHEMA, RUN_SCHEMA, RUN_SCHEMA_V2 } from './runs.js'
import type { FleetStorage } from './storage.js'
import { WEBVNC_TICKET_SCHEMA } from './webvnc.js'
import { CODE_TICKET_SCHEMA } from './code.js'
import { EGRESS_SCHEMA } from './egress.js'
import { RUNNER_SCHEMA } from './runners.js'

/**
 * Every table of the Fleet object, migrated once when the object starts (before
 * any request or alarm). Each entry applies once per database, in order; a schema
 * change is a new entry with a new name, never an edit of an applied one.
 */
const MIGRATIONS: readonly { name: string; statements: readonly string[] }[] = [
  { name: 'leases-v1', statements: LEASE_SCHEMA },
  { name: 'runs-v1', statements: RUN_SCHEMA },
  { name: 'github-logins-v1', statements: GITHUB_LOGIN_SCHEMA },
  { name: 'static-pool-v1', statements: STATIC_POOL_SCHEMA },
  { name: 'github-logins-v2', statements: GITHUB_LOGIN_SCHEMA_V2 },
  // Claimed (header-named) and verified owners in separate namespaces; the credential per lease.
  { name: 'identity-namespaces-v1', statements: [...LEASE_IDENTITY_SCHEMA, ...RUN_IDENTITY_SCHEMA] },
  { name: 'runs-v2', statements: RUN_SCHEMA_V2 },
  { name: 'images-v1', statements: IMAGE_SCHEMA },
  { name: 'webvnc-tickets-v1', statements: WEBVNC_TICKET_SCHEMA },
  { name: 'code-tickets-v1', statements: CODE_TICKET_SCHEMA },
  { name: 'run-artifacts-v1', statements: ARTIFACT_SCHEMA },
  { name: 'egress-v1', statements: EGRESS_SCHEMA },
  { name: 'external-runners-v1', statements: RUNNER_SCHEMA },
]

export function migrateFleet(storage: FleetStorage): void {
  for (const { name, statements } of MIGRATIONS) storage.migrate(name, statements)
}
