import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { defaultConfig } from '../../src/config/schema.js'
import { CrabboxError } from '../../src/errors.js'
import { COMMENT_MARKER } from '../../src/services/artifacts/publish-comment.js'
import { publishArtifacts, type PublishOptions } from '../../src/services/artifacts/publish.js'
import type { ServiceContext } from '../../src/services/context.js'
import { createProgress } from '../../src/ui/progress.js'
import { serveFake, type ServedFake } from '../support/fake-faults.js'
import { createFakeGithubComments } from '../support/fake-github-comments.js'
import { createFakeS3 } from '../support/fake-s3.js'

/**
 * `artifacts publish` in-process against loopback fakes: direct S3 (every PUT's SigV4
 * header checked by the fake), local copies, the pull-request comment created then updated
 * on a fake GitHub API, and the refusals (symlink out of --dir, missing token, failed upload).
 */

const S3 = { accessKeyId: 'AKIDPUBLISHTEST', secretAccessKey: 'publish-test-secret', region: 'eu-west-1', bucket: 'qa' }
const GH_TOKEN = 'ghp_publishtesttoken'
const REPO = 'acme/app'

let s3: ReturnType<typeof createFakeS3>
let github: ReturnType<typeof createFakeGithubComments>
let s3Server: ServedFake
let githubServer: ServedFake
let root: string

beforeAll(async () => {
  s3 = createFakeS3({ ...S3, failKeys: ['broken/a.txt'] })
  github = createFakeGithubComments({ token: GH_TOKEN, repos: [REPO] })
  s3Server = await serveFake(s3.handler)
  githubServer = await serveFake(github.handler)
})
afterAll(async () => {
  await s3Server?.close()
  await githubServer?.close()
})

let dir: string
const fresh = () => {
  root = mkdtempSync(join(tmpdir(), 'crabbox-publish-'))
  dir = join(root, 'artifacts')
  mkdirSync(join(dir, 'screens'), { recursive: true })
  writeFileSync(join(dir, 'screens', 'after.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255]))
  writeFileSync(join(dir, 'run.log'), 'line one\nline two\n')
  writeFileSync(join(dir, 'metadata.json'), '{"lease":"cbx_0123456789ab"}\n')
}
afterEach(() => rmSync(root, { recursive: true, force: true }))

function context(): ServiceContext {
  const config = defaultConfig()
  return { config, progress: createProgress({ quiet: true, env: {} }), json: true, cwd: root }
}

const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  AWS_ACCESS_KEY_ID: S3.accessKeyId,
  AWS_SECRET_ACCESS_KEY: S3.secretAccessKey,
  GH_TOKEN,
  GITHUB_API_URL: githubServer.url,
  PATH: process.env.PATH,
  ...extra,
})

const options = (extra: Partial<PublishOptions> = {}): PublishOptions => ({
  dir,
  storage: 's3',
  bucket: S3.bucket,
  region: S3.region,
  endpointUrl: s3Server.url,
  prefix: 'pr-7/run-1',
  template: 'openclaw',
  presign: false,
  expires: '7d',
  dryRun: false,
  noComment: false,
  ...extra,
})

describe('artifacts publish', () => {
  it('uploads to S3 with SigV4-signed PUTs, byte for byte, and writes the report', async () => {
    fresh()
    const result = await publishArtifacts(context(), options({ acl: 'public-read', baseUrl: 'https://qa.example.com/' }), env())
    expect(result.files.map((f) => f.key)).toEqual(['pr-7/run-1/metadata.json', 'pr-7/run-1/run.log', 'pr-7/run-1/screens/after.png'])
    for (const name of ['metadata.json', 'run.log', 'screens/after.png']) {
      const stored = s3.objects.get(`pr-7/run-1/${name}`)!
      expect(Buffer.from(stored.body)).toEqual(readFileSync(join(dir, name)))
      expect(stored.headers['x-amz-acl']).toBe('public-read')
      expect(stored.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDPUBLISHTEST\/\d{8}\/eu-west-1\/s3\/aws4_request/)
    }
    expect(s3.objects.get('pr-7/run-1/screens/after.png')!.contentType).toBe('image/png')
    expect(result.files[2]!.url).toBe('https://qa.example.com/pr-7/run-1/screens/after.png')
    const report = readFileSync(join(dir, 'published-artifacts.md'), 'utf8')
    expect(report).toContain('![screens/after.png](https://qa.example.com/pr-7/run-1/screens/after.png)')
    // The report is never uploaded itself, on a second publish either.
    await publishArtifacts(context(), options({ prefix: 'again' }), env())
    expect(s3.objects.has('again/published-artifacts.md')).toBe(false)
  })

  it('presigns read links when asked; a wrong secret is refused by the fake S3 (exit 3)', async () => {
    fresh()
    const result = await publishArtifacts(context(), options({ presign: true, expires: '1h', prefix: 'signed' }), env())
    const url = new URL(result.files[0]!.url)
    expect(url.searchParams.get('X-Amz-Expires')).toBe('3600')
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/)
    const refused = await publishArtifacts(context(), options({ prefix: 'wrong' }), env({ AWS_SECRET_ACCESS_KEY: 'not-the-secret' })).catch(
      (e: unknown) => e,
    )
    expect(refused).toBeInstanceOf(CrabboxError)
    expect((refused as CrabboxError).exitCode).toBe(3)
    expect((refused as CrabboxError).message).toContain('HTTP 403')
  })

  it('creates the pull-request comment, then updates it instead of adding a second', async () => {
    fresh()
    // Someone else's comments come first (two pages): they are left alone.
    for (let i = 0; i < 120; i++) github.seed(REPO, 42, `looks good ${i}`)
    const first = await publishArtifacts(context(), options({ pr: 42, repo: REPO, summary: 'All **3** checks passed.' }), env())
    expect(first.comment).toMatchObject({ action: 'created', repo: REPO, pr: 42 })
    let mine = github.comments(REPO, 42).filter((c) => c.body.includes(COMMENT_MARKER))
    expect(mine).toHaveLength(1)
    expect(mine[0]!.body).toContain('All **3** checks passed.')

    writeFileSync(join(dir, 'second.txt'), 'new file\n')
    const second = await publishArtifacts(context(), options({ pr: 42, repo: REPO, prefix: 'pr-7/run-2' }), env())
    expect(second.comment).toMatchObject({ action: 'updated', url: mine[0]!.html_url })
    mine = github.comments(REPO, 42).filter((c) => c.body.includes(COMMENT_MARKER))
    expect(mine).toHaveLength(1)
    expect(mine[0]!.body).toContain('pr-7/run-2/second.txt')
    expect(github.comments(REPO, 42)).toHaveLength(121)
    expect(github.calls.filter((c) => c.method === 'POST')).toHaveLength(1)
    expect(github.calls.filter((c) => c.method === 'PATCH')).toHaveLength(1)
  })

  it('leaves the comment untouched when an upload fails', async () => {
    fresh()
    writeFileSync(join(dir, 'a.txt'), 'x')
    const before = github.calls.length
    const failed = await publishArtifacts(context(), options({ pr: 43, repo: REPO, prefix: 'broken' }), env()).catch((e: unknown) => e)
    expect((failed as Error).message).toContain('uploading a.txt to S3 failed: HTTP 500')
    expect(github.calls.slice(before)).toEqual([])
    expect(github.comments(REPO, 43)).toEqual([])
  })

  it('refuses a symlink out of --dir before sending anything; links inside are published', async () => {
    fresh()
    writeFileSync(join(root, 'secret.txt'), 'do not publish')
    symlinkSync(join(root, 'secret.txt'), join(dir, 'innocent.txt'))
    const objectsBefore = s3.objects.size
    const refused = await publishArtifacts(context(), options({ prefix: 'escape' }), env()).catch((e: unknown) => e)
    expect(refused).toMatchObject({ exitCode: 2, code: 'symlink_escape' })
    expect(s3.objects.size).toBe(objectsBefore)
    rmSync(join(dir, 'innocent.txt'))
    symlinkSync('..', join(dir, 'up'))
    expect(await publishArtifacts(context(), options({ prefix: 'escape' }), env()).catch((e: unknown) => e)).toMatchObject({
      code: 'symlink_escape',
    })
    rmSync(join(dir, 'up'))
    symlinkSync('run.log', join(dir, 'latest.log'))
    const ok = await publishArtifacts(context(), options({ prefix: 'inside' }), env())
    expect(ok.files.map((f) => f.name)).toContain('latest.log')
  })

  it('a missing GitHub token is exit 3 before any upload; the token never shows in errors', async () => {
    fresh()
    const objectsBefore = s3.objects.size
    const missing = await publishArtifacts(context(), options({ pr: 44, repo: REPO, prefix: 'no-token' }), {
      ...env(),
      GH_TOKEN: '',
      PATH: join(root, 'no-bin'),
    }).catch((e: unknown) => e)
    expect(missing).toMatchObject({ exitCode: 3, code: 'github_token_missing' })
    expect(s3.objects.size).toBe(objectsBefore)
    const bad = await publishArtifacts(
      context(),
      options({ pr: 44, repo: REPO, prefix: 'bad-token' }),
      env({ GH_TOKEN: 'ghp_wrong' }),
    ).catch((e: unknown) => e)
    expect(bad).toMatchObject({ exitCode: 3 })
    expect(String((bad as Error).message)).not.toContain('ghp_wrong')
  })

  it('local storage copies under the prefix; --dry-run sends and writes nothing', async () => {
    fresh()
    const target = join(root, 'bucket')
    const local = await publishArtifacts(context(), options({ storage: 'local', bucket: target, prefix: 'p' }), env())
    expect(readFileSync(join(target, 'p', 'screens', 'after.png'))).toEqual(readFileSync(join(dir, 'screens', 'after.png')))
    expect(local.files[0]!.url).toBe(join(target, 'p', 'metadata.json'))
    rmSync(join(dir, 'published-artifacts.md'))
    const calls = github.calls.length
    const dry = await publishArtifacts(context(), options({ dryRun: true, pr: 42, repo: REPO, prefix: 'dry' }), env())
    expect(dry).toMatchObject({ dryRun: true, comment: { action: 'skipped' } })
    expect(dry.markdown).toContain(COMMENT_MARKER)
    expect(s3.objects.has('dry/run.log')).toBe(false)
    expect(github.calls.length).toBe(calls)
    expect(() => readFileSync(join(dir, 'published-artifacts.md'))).toThrow()
  })
})
