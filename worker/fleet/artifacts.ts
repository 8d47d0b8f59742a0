import {
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

/** The grants for one request by `caller`; `origin` is the broker's public origin. */
export async function uploadGrants(
  env: Env,
  caller: Identity,
  request: ArtifactUploadRequest,
  origin: string,
  now: Date,
): Promise<ArtifactUploadResponse> {
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
    const upload = { method: 'PUT' as const, key, expires: uploadExpires, size: file.size, contentType: file.contentType }
    grants.push({
      name: file.name,
      key,
      upload: {
        method: 'PUT',
        url: await signedUrl(origin, secret, upload),
        headers: { 'content-type': file.contentType, 'content-length': String(file.size) },
        expiresAt,
      },
      url: baseUrl ? `${baseUrl}/${escapeKey(key)}` : await signedUrl(origin, secret, { method: 'GET', key, expires: readExpires }),
    })
  }
  return { backend: 'r2', bucket: setting(env, 'CRABBOX_ARTIFACTS_BUCKET') ?? DEFAULT_BUCKET, prefix, expiresAt, files: grants }
}
