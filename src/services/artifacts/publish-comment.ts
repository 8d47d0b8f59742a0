import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { CrabboxError, usageError } from '../../errors.js'

/**
 * The pull-request comment of `artifacts publish`: one comment per pull request, found again
 * by a hidden marker and updated in place (GitHub REST: list, create and update issue
 * comments). The token comes from GH_TOKEN, GITHUB_TOKEN or `gh auth token`, and is never
 * printed: errors name the call and the status only.
 */

export const COMMENT_MARKER = '<!-- crabbox-artifacts -->'

const run = promisify(execFile)

export interface GithubTarget {
  /** API root: GITHUB_API_URL (GitHub Actions sets it; GitHub Enterprise) or https://api.github.com. */
  api: string
  token: string
  repo: string
  pr: number
}

/** GH_TOKEN, GITHUB_TOKEN, then the gh CLI's login; exit 3 naming all three when none gives one. */
export async function githubToken(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  for (const name of ['GH_TOKEN', 'GITHUB_TOKEN']) {
    const value = env[name]?.trim()
    if (value) return value
  }
  try {
    const { stdout } = await run('gh', ['auth', 'token'], { timeout: 10_000, env })
    const token = stdout.trim()
    if (token) return token
  } catch {
    // No gh, or not logged in: the error below says what to do.
  }
  throw new CrabboxError(
    'posting the pull-request comment needs a GitHub token: GH_TOKEN and GITHUB_TOKEN are unset and `gh auth token` gave none',
    {
      exit: 'auth',
      code: 'github_token_missing',
      hint: 'Set GH_TOKEN (a token that may write pull-request comments), run `gh auth login`, or pass --no-comment.',
    },
  )
}

/** `owner/name` from --repo, GITHUB_REPOSITORY, or the origin remote of the checkout. */
export async function githubRepo(flag: string | undefined, cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const given = flag?.trim() || env.GITHUB_REPOSITORY?.trim()
  let repo = given
  if (!repo) {
    const remote = await run('git', ['remote', 'get-url', 'origin'], { cwd, timeout: 10_000 }).then(
      (r) => r.stdout.trim(),
      () => '',
    )
    repo = /github\.com[:/]+([^/]+\/[^/]+?)(?:\.git)?\/?$/.exec(remote)?.[1]
  }
  if (!repo || !/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(repo))
    throw usageError(
      given ? `--repo ${given} is not owner/name` : 'which repository? --repo is unset and the origin remote is not on GitHub',
      'Pass --repo owner/name.',
    )
  return repo
}

async function call(target: GithubTarget, method: string, path: string, body?: unknown): Promise<Response> {
  const url = path.startsWith('http') ? path : `${target.api.replace(/\/+$/, '')}${path}`
  let response: Response
  try {
    response = await fetch(url, {
      method,
      headers: {
        accept: 'application/vnd.github+json',
        authorization: `Bearer ${target.token}`,
        'user-agent': 'crabbox',
        'x-github-api-version': '2022-11-28',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch (error) {
    throw new CrabboxError(`GitHub ${method} ${new URL(url).pathname} failed: ${(error as Error).message}`, { cause: error })
  }
  if (!response.ok) {
    const text = (await response.text().catch(() => '')).replace(/\s+/g, ' ').slice(0, 200)
    throw new CrabboxError(`GitHub ${method} ${new URL(url).pathname} answered HTTP ${response.status}${text ? `: ${text}` : ''}`, {
      exit: response.status === 401 || response.status === 403 ? 'auth' : response.status === 404 ? 'notFound' : 'error',
      code: 'github_failed',
    })
  }
  return response
}

const nextLink = (response: Response) => /<([^>]+)>;\s*rel="next"/.exec(response.headers.get('link') ?? '')?.[1]

/** The first comment on the pull request that carries the marker, if any (up to 3000 comments). */
export async function findComment(target: GithubTarget): Promise<{ id: number; html_url?: string } | undefined> {
  let url: string | undefined = `/repos/${target.repo}/issues/${target.pr}/comments?per_page=100`
  for (let page = 0; url && page < 30; page++) {
    const response = await call(target, 'GET', url)
    const comments = (await response.json()) as { id: number; body?: string; html_url?: string }[]
    const found = comments.find((comment) => comment.body?.includes(COMMENT_MARKER))
    if (found) return found
    url = nextLink(response)
  }
  return undefined
}

/** Creates the comment, or updates the marked one: never a second one. */
export async function upsertComment(target: GithubTarget, body: string): Promise<{ action: 'created' | 'updated'; url?: string }> {
  const marked = body.includes(COMMENT_MARKER) ? body : `${COMMENT_MARKER}\n${body}`
  const existing = await findComment(target)
  if (existing) {
    const response = await call(target, 'PATCH', `/repos/${target.repo}/issues/comments/${existing.id}`, { body: marked })
    return { action: 'updated', url: ((await response.json()) as { html_url?: string }).html_url }
  }
  const response = await call(target, 'POST', `/repos/${target.repo}/issues/${target.pr}/comments`, { body: marked })
  return { action: 'created', url: ((await response.json()) as { html_url?: string }).html_url }
}
