import * as v from 'valibot'
import { RunId } from './runs.js'

/** `POST /v1/artifacts/uploads`: upload grants for the broker's artifact bucket. */

/** Files per request, bytes per file and bytes per request. */
export const ARTIFACT_MAX_FILES = 100
export const ARTIFACT_MAX_FILE_BYTES = 1024 ** 3
export const ARTIFACT_MAX_TOTAL_BYTES = 5 * 1024 ** 3
export const ARTIFACT_MAX_CONTENT_TYPE = 200

/** The error code of every refused grant (the message says why). */
export const ARTIFACT_UPLOAD_UNAVAILABLE = 'artifact_upload_unavailable'

/** An object key in a signed link's path (its segments URL-escaped, `/` between them). */
export const ArtifactObjectKey = v.pipe(v.string(), v.minLength(1))

/** No control characters (they would end a header line or a signed field). */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const PRINTABLE = /^[^\u0000-\u001f\u007f]*$/

export const ArtifactUploadFile = v.object({
  name: v.pipe(v.string(), v.minLength(1), v.maxLength(1024), v.regex(PRINTABLE, 'no control characters')),
  size: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(ARTIFACT_MAX_FILE_BYTES)),
  contentType: v.optional(v.pipe(v.string(), v.maxLength(ARTIFACT_MAX_CONTENT_TYPE), v.regex(PRINTABLE, 'no control characters'))),
  /** Kept only when it is 64 hex characters; not used in the answer. */
  sha256: v.optional(v.string()),
})
export type ArtifactUploadFile = v.InferOutput<typeof ArtifactUploadFile>

export const ArtifactUploadRequest = v.object({
  prefix: v.optional(v.pipe(v.string(), v.maxLength(512), v.regex(PRINTABLE, 'no control characters'))),
  /**
   * The run the files belong to (crabbox's addition). The caller must be able to see it; the
   * files are then listed on the run's portal page and their read URLs are portal links that
   * only those who can see the run may open.
   */
  run: v.optional(RunId),
  files: v.pipe(v.array(ArtifactUploadFile), v.minLength(1, 'at least one file'), v.maxLength(ARTIFACT_MAX_FILES)),
})
export type ArtifactUploadRequest = v.InferOutput<typeof ArtifactUploadRequest>

export const ArtifactUploadGrant = v.object({
  name: v.string(),
  key: v.string(),
  upload: v.object({
    method: v.literal('PUT'),
    url: v.string(),
    headers: v.record(v.string(), v.string()),
    expiresAt: v.string(),
  }),
  /** Where the file can be read once uploaded. */
  url: v.string(),
})
export type ArtifactUploadGrant = v.InferOutput<typeof ArtifactUploadGrant>

export const ArtifactUploadResponse = v.object({
  backend: v.picklist(['r2', 's3']),
  bucket: v.string(),
  prefix: v.string(),
  expiresAt: v.string(),
  files: v.array(ArtifactUploadGrant),
})
export type ArtifactUploadResponse = v.InferOutput<typeof ArtifactUploadResponse>

/**
 * An artifact name as a bucket path: backslashes become `/`, leading `/` go; undefined when a
 * segment is empty, `.` or `..` (a name can never leave its prefix).
 */
export function normalizeArtifactName(name: string): string | undefined {
  const path = name.replace(/\\/g, '/').replace(/^\/+/, '')
  const segments = path.split('/')
  if (path === '' || segments.some((s) => s === '' || s === '.' || s === '..')) return undefined
  return segments.join('/')
}

/** A prefix part: like a name, except that empty segments are dropped instead of refused. */
export function normalizeArtifactPrefix(prefix: string): string | undefined {
  const segments = prefix
    .replace(/\\/g, '/')
    .split('/')
    .filter((s) => s !== '')
  if (segments.some((s) => s === '.' || s === '..')) return undefined
  return segments.join('/')
}

/** Files a run lists at most (its portal page and its grants). */
export const ARTIFACT_MAX_PER_RUN = 1000

/** `GET /portal/runs/{id}/artifact?name=…`: one of the run's artifacts. */
export const RunArtifactQuery = v.object({ name: v.pipe(v.string(), v.minLength(1), v.maxLength(1024)) })
