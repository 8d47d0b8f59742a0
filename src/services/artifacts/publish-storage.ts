import { createReadStream } from 'node:fs'
import { copyFile, mkdir, readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { Readable } from 'node:stream'
import { AwsV4Signer } from 'aws4fetch'
import { ArtifactUploadResponse, ARTIFACT_MAX_FILES, ARTIFACT_MAX_TOTAL_BYTES } from '../../protocol/artifacts.js'
import { CrabboxError, usageError } from '../../errors.js'
import type { BrokerClient } from '../../transport/broker/client.js'
import type { PublishFile } from './publish-files.js'

/** One uploaded (or, with --dry-run, planned) file and where people read it. */
export interface PublishedFile {
  name: string
  key: string
  size: number
  contentType: string
  url: string
}

/** Uploads at once per publish. */
const PARALLEL = 4

/** Runs `task` over `items`, `PARALLEL` at a time; the first failure stops new starts and is thrown. */
export async function eachParallel<T>(items: readonly T[], task: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  let failed: unknown
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      const item = items[next++]!
      await task(item).catch((error: unknown) => {
        failed ??= error
      })
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker))
  if (failed !== undefined) throw failed
}

/** A streamed PUT of one file; anything but 2xx is an error naming the file (never the URL: it carries a signature). */
async function putFile(url: string, headers: Record<string, string>, file: PublishFile, what: string): Promise<void> {
  let response: Response
  try {
    response = await fetch(url, {
      method: 'PUT',
      headers,
      body: Readable.toWeb(createReadStream(file.path)) as ReadableStream,
      duplex: 'half',
    } as RequestInit)
  } catch (error) {
    throw new CrabboxError(`uploading ${file.name} to ${what} failed: ${(error as Error).message}`, { cause: error })
  }
  const text = await response.text().catch(() => '')
  if (!response.ok) {
    const detail = text.replace(/\s+/g, ' ').trim().slice(0, 300)
    throw new CrabboxError(`uploading ${file.name} to ${what} failed: HTTP ${response.status}${detail ? ` ${detail}` : ''}`, {
      exit: response.status === 401 || response.status === 403 ? 'auth' : 'error',
      code: 'upload_failed',
    })
  }
}

/** Splits the files into grant requests the broker accepts (≤ 100 files, ≤ 5 GiB each). */
function batches(files: readonly PublishFile[]): PublishFile[][] {
  const out: PublishFile[][] = []
  let current: PublishFile[] = []
  let bytes = 0
  for (const file of files) {
    if (current.length === ARTIFACT_MAX_FILES || (current.length > 0 && bytes + file.size > ARTIFACT_MAX_TOTAL_BYTES)) {
      out.push(current)
      current = []
      bytes = 0
    }
    current.push(file)
    bytes += file.size
  }
  if (current.length > 0) out.push(current)
  return out
}

/**
 * Broker storage: `POST /v1/artifacts/uploads` grants, then each file PUT to its granted URL
 * with exactly the granted headers. A grant for another size than the file's is refused here.
 */
export async function publishToBroker(
  client: BrokerClient,
  files: readonly PublishFile[],
  prefix: string,
  uploadHeaders: Record<string, string> = {},
  run?: string,
): Promise<{ bucket: string; prefix: string; files: PublishedFile[] }> {
  const published: PublishedFile[] = []
  let bucket = ''
  let granted = prefix
  for (const batch of batches(files)) {
    const body = { prefix, ...(run ? { run } : {}), files: batch.map((f) => ({ name: f.name, size: f.size, contentType: f.contentType })) }
    const answer = await client.request('POST', '/v1/artifacts/uploads', { body, schema: ArtifactUploadResponse })
    bucket = answer.bucket
    granted = answer.prefix
    const byName = new Map(answer.files.map((grant) => [grant.name, grant]))
    await eachParallel(batch, async (file) => {
      const grant = byName.get(file.name)
      if (!grant) throw new CrabboxError(`the broker granted no upload for ${file.name}`, { code: 'upload_failed' })
      if (grant.upload.headers['content-length'] !== String(file.size))
        throw new CrabboxError(`the broker's grant for ${file.name} is for another size than the file's ${file.size} bytes`, {
          code: 'upload_failed',
        })
      await putFile(grant.upload.url, { ...uploadHeaders, ...grant.upload.headers }, file, 'the broker')
      published.push({ name: file.name, key: grant.key, size: file.size, contentType: file.contentType, url: grant.url })
    })
  }
  return { bucket, prefix: granted, files: sortByName(published) }
}

const sortByName = (files: PublishedFile[]) => files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))

/** A key's path with each segment URL-escaped. */
export const escapeKey = (key: string) => key.split('/').map(encodeURIComponent).join('/')

const joinKey = (prefix: string, name: string) => (prefix ? `${prefix}/${name}` : name)

/** Local storage: copies into the folder --bucket names; URLs are --base-url + key, else the copy's path. */
export async function publishToFolder(
  files: readonly PublishFile[],
  options: { folder: string; prefix: string; baseUrl?: string },
): Promise<PublishedFile[]> {
  const published: PublishedFile[] = []
  for (const file of files) {
    const key = joinKey(options.prefix, file.name)
    const target = resolve(options.folder, ...key.split('/'))
    await mkdir(dirname(target), { recursive: true })
    await copyFile(file.path, target)
    const url = options.baseUrl ? `${options.baseUrl.replace(/\/+$/, '')}/${escapeKey(key)}` : target
    published.push({ name: file.name, key, size: file.size, contentType: file.contentType, url })
  }
  return published
}

export interface S3Credentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

export interface S3Target {
  kind: 's3' | 'r2'
  bucket: string
  region: string
  /** Path-style endpoint (R2, MinIO, a test fake); virtual-host AWS S3 without it. */
  endpoint?: string
  credentials: S3Credentials
  acl?: string
  baseUrl?: string
  /** Read URLs as presigned GETs valid this many seconds (instead of the object URL). */
  presignSeconds?: number
}

function objectUrl(target: S3Target, key: string): string {
  if (target.endpoint) return `${target.endpoint.replace(/\/+$/, '')}/${encodeURIComponent(target.bucket)}/${escapeKey(key)}`
  return `https://${target.bucket}.s3.${target.region}.amazonaws.com/${escapeKey(key)}`
}

const signer = (target: S3Target, init: { method: string; url: string; headers?: Record<string, string>; signQuery?: boolean }) =>
  new AwsV4Signer({ ...init, ...target.credentials, service: 's3', region: target.region, allHeaders: true })

async function readUrl(target: S3Target, key: string): Promise<string> {
  if (target.baseUrl) return `${target.baseUrl.replace(/\/+$/, '')}/${escapeKey(key)}`
  const url = objectUrl(target, key)
  if (!target.presignSeconds) return url
  const query = new URL(url)
  query.searchParams.set('X-Amz-Expires', String(target.presignSeconds))
  const signed = await signer(target, { method: 'GET', url: query.toString(), signQuery: true }).sign()
  return signed.url.toString()
}

/** Direct S3/R2 with the user's own credentials: one SigV4-signed PUT per file (payload streamed, unsigned). */
export async function publishToS3(files: readonly PublishFile[], target: S3Target, prefix: string): Promise<PublishedFile[]> {
  const published: PublishedFile[] = []
  await eachParallel(files, async (file) => {
    const key = joinKey(prefix, file.name)
    const headers: Record<string, string> = {
      'content-type': file.contentType,
      'content-length': String(file.size),
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
      ...(target.acl ? { 'x-amz-acl': target.acl } : {}),
    }
    const signed = await signer(target, { method: 'PUT', url: objectUrl(target, key), headers }).sign()
    await putFile(signed.url.toString(), Object.fromEntries(signed.headers), file, target.kind === 'r2' ? 'R2' : 'S3')
    published.push({ name: file.name, key, size: file.size, contentType: file.contentType, url: await readUrl(target, key) })
  })
  return sortByName(published)
}

/** `[profile]` sections of the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials). */
async function profileCredentials(profile: string, env: NodeJS.ProcessEnv): Promise<S3Credentials | undefined> {
  const file = env.AWS_SHARED_CREDENTIALS_FILE || join(homedir(), '.aws', 'credentials')
  const text = await readFile(file, 'utf8').catch(() => '')
  let section = ''
  const values: Record<string, string> = {}
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    const header = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line)
    if (header) section = header[1]!
    else if (section === profile) {
      const pair = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(line)
      if (pair) values[pair[1]!.toLowerCase()] = pair[2]!.trim()
    }
  }
  if (!values.aws_access_key_id || !values.aws_secret_access_key) return undefined
  return {
    accessKeyId: values.aws_access_key_id,
    secretAccessKey: values.aws_secret_access_key,
    sessionToken: values.aws_session_token || undefined,
  }
}

/** The user's credentials: a named profile when one is given, else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else `default`. */
export async function s3Credentials(profile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<S3Credentials> {
  if (!profile && env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY)
    return {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      sessionToken: env.AWS_SESSION_TOKEN || undefined,
    }
  const found = await profileCredentials(profile ?? 'default', env)
  if (found) return found
  throw new CrabboxError(
    profile ? `AWS profile ${profile} has no access key in the shared credentials file` : 'no AWS credentials for S3/R2 storage',
    {
      exit: 'auth',
      code: 'credentials_missing',
      hint: 'Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (an R2 API token for r2), or name a profile with --profile; with a broker, --storage broker needs no keys.',
    },
  )
}

export function requireBucket(bucket: string | undefined, storage: string): string {
  if (!bucket) throw usageError(`--storage ${storage} needs --bucket (or CRABBOX_ARTIFACTS_BUCKET)`)
  return bucket
}
