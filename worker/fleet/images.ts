import type { ImageRecord } from '../../src/protocol/images.js'
import type { FleetStorage } from './storage.js'

/**
 * Machine images the broker baked from leases, and the one promoted image new
 * brokered AWS leases start from. The cloud holds the images; this table holds
 * who made each one (a non-admin may read only their own), its region (AMIs are
 * regional) and the promotion. Promoting an image the broker did not make adds
 * a row for it.
 */

export const IMAGE_SCHEMA = [
  `CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    lease_id TEXT,
    owner TEXT NOT NULL,
    org TEXT NOT NULL,
    claimed INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    promoted_at TEXT
  )`,
  'CREATE INDEX IF NOT EXISTS images_promoted ON images (provider, promoted_at)',
]

export interface ImageRow {
  id: string
  provider: string
  region: string
  name: string
  leaseId?: string
  owner: string
  org: string
  claimed: boolean
  createdAt: string
  promotedAt?: string
}

type SqlRow = {
  id: string
  provider: string
  region: string
  name: string
  lease_id: string | null
  owner: string
  org: string
  claimed: number
  created_at: string
  promoted_at: string | null
}

const fromSql = (row: SqlRow): ImageRow => ({
  id: row.id,
  provider: row.provider,
  region: row.region,
  name: row.name,
  ...(row.lease_id ? { leaseId: row.lease_id } : {}),
  owner: row.owner,
  org: row.org,
  claimed: row.claimed === 1,
  createdAt: row.created_at,
  ...(row.promoted_at ? { promotedAt: row.promoted_at } : {}),
})

export function getImage(storage: FleetStorage, id: string): ImageRow | undefined {
  const row = storage.one<SqlRow>('SELECT * FROM images WHERE id = ?', id)
  return row ? fromSql(row) : undefined
}

export function saveImage(storage: FleetStorage, image: ImageRow): void {
  storage.run(
    `INSERT INTO images (id, provider, region, name, lease_id, owner, org, claimed, created_at, promoted_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (id) DO UPDATE SET region = excluded.region, name = excluded.name, promoted_at = excluded.promoted_at`,
    image.id,
    image.provider,
    image.region,
    image.name,
    image.leaseId ?? null,
    image.owner,
    image.org,
    image.claimed ? 1 : 0,
    image.createdAt,
    image.promotedAt ?? null,
  )
}

/** Makes `id` the provider's promoted image (one at a time): the previous one is demoted. */
export function promoteImage(storage: FleetStorage, image: ImageRow, at: string): ImageRow {
  return storage.transaction(() => {
    storage.run('UPDATE images SET promoted_at = NULL WHERE provider = ? AND promoted_at IS NOT NULL', image.provider)
    const promoted = { ...image, promotedAt: at }
    saveImage(storage, promoted)
    return promoted
  })
}

/** The image new leases of this provider start from, if one was promoted. */
export function promotedImage(storage: FleetStorage, provider: string): ImageRow | undefined {
  const row = storage.one<SqlRow>(
    'SELECT * FROM images WHERE provider = ? AND promoted_at IS NOT NULL ORDER BY promoted_at DESC LIMIT 1',
    provider,
  )
  return row ? fromSql(row) : undefined
}

/** The wire record: the cloud's current name and state with what the broker knows. */
export function imageRecord(row: ImageRow, cloud: { name?: string; state: string }): ImageRecord {
  return {
    id: row.id,
    name: cloud.name || row.name,
    state: cloud.state,
    region: row.region,
    ...(row.leaseId ? { leaseID: row.leaseId } : {}),
    ...(row.createdAt ? { createdAt: row.createdAt } : {}),
    ...(row.promotedAt ? { promotedAt: row.promotedAt } : {}),
  }
}
