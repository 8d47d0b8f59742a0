import {
  ARTIFACT_MAX_PER_RUN,
  ARTIFACT_MAX_TOTAL_BYTES,
  ARTIFACT_UPLOAD_UNAVAILABLE,
  normalizeArtifactName,
  normalizeArtifactPrefix,
  type ArtifactUploadGrant,
  type ArtifactUploadRequest,
  type ArtifactUploadResponse,
} from '../../src/protocol/artifacts.js'
import { ApiError } from '../../src/protocol/errors.js'
import { artifactSecret, escapeKey, signedUrl } from '../artifacts/sign.js'
import type { Identity } from '../auth/identity.js'
import { setting, type Env } from '../env.js'
import { getRunCore } from './runs.js'
import type { FleetStorage } from './storage.js'

/**
 * Upload grants for the broker's own artifact bucket (the ARTIFACTS R2 binding): each file
 * gets a signed, short-lived PUT link to the broker's object route and a read link (a signed
 * GET, or CRABBOX_ARTIFACTS_BASE_URL + the key when a public bucket domain is configured).
 */

const DEFAULT_PREFIX = 'crabbox-artifacts'
const DEFAULT_BUCKET = 'crabbox-artifacts'
const DEFAULT_UPLOAD_SECONDS = 900
const DEFAULT_URL_SECONDS = 7 * 24 * 3600

export function unavailable(message: string): ApiError {
  return new ApiError(400, ARTIFACT_UPLOAD_UNAVAILABLE, message)
}

function seconds(env: Env, name: string, fallback: number): number {
  const value = Number(setting(env, name))
  return Number.isSafeInteger(value) && value > 0 ? value : fallback
}

/** `<CRABBOX_ARTIFACTS_PREFIX or crabbox-artifacts>/<owner>/<request prefix>`, each part normalized, empties skipped. */
export function objectPrefix(env: Env, owner: string, requested = ''): string {
  const parts = [setting(env, 'CRABBOX_ARTIFACTS_PREFIX') ?? DEFAULT_PREFIX, owner, requested].map((part) => {
    const normal = normalizeArtifactPrefix(part)
    if (normal === undefined) throw unavailable(`artifact prefix ${JSON.stringify(part)} has a . or .. segment`)
    return normal
  })
  return parts.filter((part) => part !== '').join('/')
}

function checkedFiles(request: ArtifactUploadRequest): { name: string; size: number; contentType: string }[] {
  let total = 0
  return request.files.map((file) => {
    const name = normalizeArtifactName(file.name)
    if (!name) throw unavailable(`artifact name ${JSON.stringify(file.name)} has an empty, . or .. segment`)
    total += file.size
    if (total > ARTIFACT_MAX_TOTAL_BYTES) throw unavailable(`artifacts upload request supports at most ${ARTIFACT_MAX_TOTAL_BYTES} bytes`)
    return { name, size: file.size, contentType: file.contentType?.trim() || 'application/octet-stream' }
  })
}

/** Artifacts a run lists: one row per name (a later publish of the same name replaces it). */
export const ARTIFACT_SCHEMA: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS run_artifacts (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
  )`,
]

export interface RunArtifact {
  name: string
  key: string
  size: number
  contentType: string
  createdAt: string
}

type ArtifactRow = { name: string; key: string; size: number; content_type: string; created_at: string }

/** A run's artifacts by name (the caller has already been allowed to see the run). */
export function runArtifacts(storage: FleetStorage, runId: string): RunArtifact[] {
  return storage
    .all<ArtifactRow>(
      'SELECT name, key, size, content_type, created_at FROM run_artifacts WHERE run_id = ? ORDER BY name LIMIT ?',
      runId,
      ARTIFACT_MAX_PER_RUN,
    )
    .map((row) => ({ name: row.name, key: row.key, size: row.size, contentType: row.content_type, createdAt: row.created_at }))
}

/** One artifact of a run by name, or undefined. */
export function runArtifact(storage: FleetStorage, runId: string, name: string): RunArtifact | undefined {
  const row = storage.one<ArtifactRow>(
    'SELECT name, key, size, content_type, created_at FROM run_artifacts WHERE run_id = ? AND name = ?',
    runId,
    name,
  )
  return row && { name: row.name, key: row.key, size: row.size, contentType: row.content_type, createdAt: row.created_at }
}

function recordRunArtifacts(
  storage: FleetStorage,
  runId: string,
  grants: readonly ArtifactUploadGrant[],
  sizes: Map<string, [number, string]>,
  now: Date,
) {
  storage.transaction(() => {
    for (const grant of grants) {
      const [size, contentType] = sizes.get(grant.name) ?? [0, '']
      storage.run(
        'INSERT OR REPLACE INTO run_artifacts (run_id, name, key, size, content_type, created_at) VALUES (?, ?, ?, ?, ?, ?)',
        runId,
        grant.name,
        grant.key,
        size,
        contentType,
        now.toISOString(),
      )
    }
    const count = storage.one<{ n: number }>('SELECT COUNT(*) AS n FROM run_artifacts WHERE run_id = ?', runId)?.n ?? 0
    if (count > ARTIFACT_MAX_PER_RUN) throw unavailable(`a run lists at most ${ARTIFACT_MAX_PER_RUN} artifacts`)
  })
}

/** The portal link of a run's artifact: opening it needs a login that can see the run. */
export const runArtifactUrl = (origin: string, runId: string, name: string) =>
  `${origin}/portal/runs/${runId}/artifact?name=${encodeURIComponent(name)}`

/**
 * The grants for one request by `caller`; `origin` is the broker's public origin. With a run,
 * the caller must see it (404 otherwise), the files are listed on it, and the read URLs are
 * the run's portal links.
 */
export async function uploadGrants(
  storage: FleetStorage,
  env: Env,
  caller: Identity,
  request: ArtifactUploadRequest,
  origin: string,
  now: Date,
): Promise<ArtifactUploadResponse> {
  if (request.run) getRunCore(storage, caller, request.run)
  const secret = artifactSecret(env)
  if (!env.ARTIFACTS || !secret) {
    throw unavailable('artifact broker is not configured; bind an R2 bucket as ARTIFACTS and set CRABBOX_SESSION_SECRET')
  }
  const files = checkedFiles(request)
  const prefix = objectPrefix(env, caller.owner, request.prefix)
  const nowSeconds = Math.floor(now.getTime() / 1000)
  const uploadExpires = nowSeconds + seconds(env, 'CRABBOX_ARTIFACTS_UPLOAD_EXPIRES_SECONDS', DEFAULT_UPLOAD_SECONDS)
  const readExpires = nowSeconds + seconds(env, 'CRABBOX_ARTIFACTS_URL_EXPIRES_SECONDS', DEFAULT_URL_SECONDS)
  const baseUrl = setting(env, 'CRABBOX_ARTIFACTS_BASE_URL')?.replace(/\/+$/, '')
  const expiresAt = new Date(uploadExpires * 1000).toISOString()
  const grants: ArtifactUploadGrant[] = []
  for (const file of files) {
    const key = `${prefix}/${file.name}`
    const upload = {
      method: 'PUT' as const,
      key,
      expires: uploadExpires,
      size: file.size,
      contentType: file.contentType,
      namespace: caller.claimed ? ('claimed' as const) : ('verified' as const),
    }
    grants.push({
      name: file.name,
      key,
      upload: {
        method: 'PUT',
        url: await signedUrl(origin, secret, upload),
        headers: { 'content-type': file.contentType, 'content-length': String(file.size) },
        expiresAt,
      },
      url: request.run
        ? runArtifactUrl(origin, request.run, file.name)
        : baseUrl
          ? `${baseUrl}/${escapeKey(key)}`
          : await signedUrl(origin, secret, { method: 'GET', key, expires: readExpires }),
    })
  }
  if (request.run) recordRunArtifacts(storage, request.run, grants, new Map(files.map((f) => [f.name, [f.size, f.contentType]])), now)
  return { backend: 'r2', bucket: setting(env, 'CRABBOX_ARTIFACTS_BUCKET') ?? DEFAULT_BUCKET, prefix, expiresAt, files: grants }
}
