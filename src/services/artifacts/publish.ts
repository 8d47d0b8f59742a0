import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { parseDuration } from '../../config/schema.js'
import { CrabboxError, usageError } from '../../errors.js'
import { stateDir } from '../../paths.js'
import { RUN_ID_PATTERN } from '../../protocol/ids.js'
import { accessHeaders, brokerClient } from '../../transport/broker/client.js'
import type { ServiceContext } from '../context.js'
import { githubRepo, githubToken, upsertComment, type GithubTarget } from './publish-comment.js'
import { listPublishFiles } from './publish-files.js'
import { renderPublished, type PublishTemplate } from './publish-markdown.js'
import {
  escapeKey,
  publishToBroker,
  publishToFolder,
  publishToS3,
  requireBucket,
  s3Credentials,
  type PublishedFile,
  type S3Target,
} from './publish-storage.js'

export const PUBLISH_STORAGES = ['auto', 'broker', 'local', 's3', 'r2'] as const
export type PublishStorage = (typeof PUBLISH_STORAGES)[number]

/** The report written into --dir (and never uploaded itself). */
export const PUBLISHED_REPORT = 'published-artifacts.md'

/** Presigned read URLs live at most this long (SigV4's limit). */
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600

export interface PublishOptions {
  dir: string
  storage: PublishStorage
  bucket?: string
  prefix?: string
  baseUrl?: string
  pr?: number
  repo?: string
  template: PublishTemplate
  summary?: string
  summaryFile?: string
  region?: string
  profile?: string
  endpointUrl?: string
  acl?: string
  presign: boolean
  expires: string
  dryRun: boolean
  noComment: boolean
  /** Broker storage: list the files on this run (else the run metadata.json in --dir names). */
  run?: string
}

export interface PublishResult {
  storage: Exclude<PublishStorage, 'auto'>
  /** The run the broker lists the files on. */
  run?: string
  bucket?: string
  prefix: string
  dryRun: boolean
  files: PublishedFile[]
  /** The report's path (not written with --dry-run). */
  report?: string
  markdown: string
  comment?: { action: 'created' | 'updated' | 'skipped'; repo: string; pr: number; url?: string }
}

/** `auto`: the broker's bucket when a broker with a token is configured, else local copies. */
function chooseStorage(context: ServiceContext, storage: PublishStorage): Exclude<PublishStorage, 'auto'> {
  if (storage !== 'auto') return storage
  return context.config.broker.url && context.config.broker.token ? 'broker' : 'local'
}

const stamp = (now: Date) =>
  now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')

async function summaryText(options: PublishOptions): Promise<string | undefined> {
  if (options.summary !== undefined && options.summaryFile !== undefined) throw usageError('give --summary or --summary-file, not both')
  if (options.summaryFile === undefined) return options.summary
  return readFile(options.summaryFile, 'utf8').catch(() => {
    throw usageError(`--summary-file ${options.summaryFile} cannot be read`)
  })
}

async function s3Target(kind: 's3' | 'r2', options: PublishOptions, env: NodeJS.ProcessEnv): Promise<S3Target> {
  const bucket = requireBucket(options.bucket, kind)
  const endpoint = options.endpointUrl ?? env.CRABBOX_ARTIFACTS_ENDPOINT_URL
  if (kind === 'r2' && !endpoint)
    throw usageError('--storage r2 needs --endpoint-url (https://<account id>.r2.cloudflarestorage.com) or CRABBOX_ARTIFACTS_ENDPOINT_URL')
  const region =
    options.region ?? env.CRABBOX_ARTIFACTS_AWS_REGION ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? (kind === 'r2' ? 'auto' : 'us-east-1')
  const profile =
    options.profile ??
    (kind === 'r2' ? env.CRABBOX_ARTIFACTS_R2_AWS_PROFILE : undefined) ??
    env.CRABBOX_ARTIFACTS_AWS_PROFILE ??
    env.AWS_PROFILE
  let presignSeconds: number | undefined
  if (options.presign) {
    presignSeconds = Math.round(parseDuration(options.expires) / 1000)
    if (presignSeconds < 1 || presignSeconds > MAX_PRESIGN_SECONDS)
      throw usageError('--expires must be between 1s and 7d for presigned URLs')
  }
  return {
    kind,
    bucket,
    region,
    endpoint,
    credentials: await s3Credentials(profile || undefined, env),
    acl: options.acl,
    baseUrl: options.baseUrl,
    presignSeconds,
  }
}

/** The run `artifacts collect` recorded in --dir's metadata.json (`run`, `run.id`, `runID` or `runId`), if any. */
async function manifestRun(dir: string): Promise<string | undefined> {
  const text = await readFile(join(dir, 'metadata.json'), 'utf8').catch(() => '')
  let data: Record<string, unknown>
  try {
    data = JSON.parse(text) as Record<string, unknown>
  } catch {
    return undefined
  }
  const run = data?.run
  const candidates = [run, (run as { id?: unknown } | undefined)?.id, data?.runID, data?.runId]
  return candidates.find((value): value is string => typeof value === 'string' && RUN_ID_PATTERN.test(value))
}

/** What --dry-run shows: keys as the storage would name them (the broker also puts the owner in front). */
function planned(files: Awaited<ReturnType<typeof listPublishFiles>>, prefix: string, baseUrl?: string): PublishedFile[] {
  return files.map((file) => {
    const key = prefix ? `${prefix}/${file.name}` : file.name
    return { name: file.name, key, size: file.size, contentType: file.contentType, url: baseUrl ? `${baseUrl}/${escapeKey(key)}` : key }
  })
}

async function upload(
  context: ServiceContext,
  storage: Exclude<PublishStorage, 'auto'>,
  files: Awaited<ReturnType<typeof listPublishFiles>>,
  options: PublishOptions,
  prefix: string,
  env: NodeJS.ProcessEnv,
  run: string | undefined,
): Promise<{ files: PublishedFile[]; bucket?: string; prefix: string }> {
  if (storage === 'broker') {
    const client = brokerClient(context.config)
    if (!client)
      throw usageError('--storage broker needs a broker, and none is configured', 'Run `crabbox login`, or use --storage local, s3 or r2.')
    return publishToBroker(client, files, prefix, accessHeaders(context.config.broker.access), run)
  }
  if (storage === 'local') {
    const folder = resolve(context.cwd, options.bucket ?? join(stateDir(), 'artifacts'))
    return { files: await publishToFolder(files, { folder, prefix, baseUrl: options.baseUrl }), bucket: folder, prefix }
  }
  const target = await s3Target(storage, options, env)
  return { files: await publishToS3(files, target, prefix), bucket: target.bucket, prefix }
}

/**
 * `artifacts publish`: the files under --dir to the chosen storage, the report written next to
 * them, then the one pull-request comment created or updated. The GitHub token is resolved
 * before any upload (a missing one fails fast), and the comment is touched only after every
 * upload succeeded.
 */
export async function publishArtifacts(
  context: ServiceContext,
  options: PublishOptions,
  env: NodeJS.ProcessEnv = process.env,
  now = new Date(),
): Promise<PublishResult> {
  const storage = chooseStorage(context, options.storage)
  const summary = await summaryText(options)
  const prefix =
    options.prefix?.trim().replace(/^\/+|\/+$/g, '') ?? [options.pr ? `pr-${options.pr}` : '', stamp(now)].filter(Boolean).join('/')
  if (prefix.split('/').some((s) => s === '.' || s === '..')) throw usageError(`--prefix ${options.prefix} has a . or .. segment`)
  const wantComment = options.pr !== undefined && !options.noComment
  const repo = wantComment ? await githubRepo(options.repo, context.repoRoot ?? context.cwd, env) : undefined
  const dir = resolve(context.cwd, options.dir)
  const files = await listPublishFiles(dir, new Set([PUBLISHED_REPORT]))
  if (files.length === 0) throw usageError(`--dir ${options.dir} holds no files to publish`)
  if (options.run !== undefined && !RUN_ID_PATTERN.test(options.run))
    throw usageError(`--run ${options.run} is not a run ID (run_<12 hex>)`)
  const run = storage === 'broker' ? (options.run ?? (await manifestRun(dir))) : undefined
  if (options.run && storage !== 'broker')
    context.progress.warn(`--run lists files on a run only with broker storage; ignored for ${storage}`)
  if (options.dryRun) {
    const plan = planned(files, prefix, options.baseUrl?.replace(/\/+$/, ''))
    const markdown = renderPublished(options.template, plan, summary)
    const comment = repo ? { action: 'skipped' as const, repo, pr: options.pr! } : undefined
    return { storage, run, bucket: options.bucket, prefix, dryRun: true, files: plan, markdown, comment }
  }
  const github: GithubTarget | undefined = repo
    ? { api: env.GITHUB_API_URL?.trim() || 'https://api.github.com', token: await githubToken(env), repo, pr: options.pr! }
    : undefined
  const done = await upload(context, storage, files, options, prefix, env, run)
  const markdown = renderPublished(options.template, done.files, summary)
  const report = join(dir, PUBLISHED_REPORT)
  await writeFile(report, markdown)
  const result: PublishResult = {
    storage,
    run,
    bucket: done.bucket,
    prefix: done.prefix,
    dryRun: false,
    files: done.files,
    report,
    markdown,
  }
  if (github) {
    try {
      const posted = await upsertComment(github, markdown)
      result.comment = { ...posted, repo: github.repo, pr: github.pr }
    } catch (error) {
      if (error instanceof CrabboxError)
        throw new CrabboxError(`${error.message} (the artifacts are uploaded; ${PUBLISHED_REPORT} has the links)`, {
          exit: error.exitCode,
          code: error.code,
          hint: error.hint,
        })
      throw error
    }
  }
  return result
}
