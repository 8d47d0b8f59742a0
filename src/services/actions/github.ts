import { execFile } from 'node:child_process'
import * as v from 'valibot'
import { CrabboxError } from '../../errors.js'

/**
 * The GitHub REST calls Actions hydration makes: a runner registration token, the
 * workflow file (its declared inputs), a `workflow_dispatch`, the workflow's runs, and
 * the repository's self-hosted runners (list, delete). The token is only ever sent in
 * the Authorization header; no error message or log line carries it.
 */

const RegistrationToken = v.object({ token: v.string(), expires_at: v.string() })
const Workflow = v.object({ id: v.number(), path: v.string(), name: v.optional(v.string()) })
const Contents = v.object({ content: v.string(), encoding: v.string() })
const WorkflowRun = v.object({
  id: v.number(),
  html_url: v.string(),
  status: v.nullish(v.string()),
  conclusion: v.nullish(v.string()),
  created_at: v.string(),
  event: v.optional(v.string()),
})
const WorkflowRuns = v.object({ total_count: v.number(), workflow_runs: v.array(WorkflowRun) })
const Runner = v.object({
  id: v.number(),
  name: v.string(),
  status: v.string(),
  busy: v.boolean(),
  labels: v.array(v.object({ name: v.string() })),
})
const Runners = v.object({ total_count: v.number(), runners: v.array(Runner) })

export type WorkflowRun = v.InferOutput<typeof WorkflowRun>
export type GithubRunner = v.InferOutput<typeof Runner>

export interface GithubRepo {
  owner: string
  name: string
}

export const repoSlug = (repo: GithubRepo) => `${repo.owner}/${repo.name}`

/** `owner/name`, or a GitHub URL (https or ssh) of the repository. */
export function parseRepo(text: string): GithubRepo | undefined {
  const trimmed = text
    .trim()
    .replace(/\.git$/, '')
    .replace(/\/+$/, '')
  const match = /^(?:(?:https?|ssh|git):\/\/(?:[^@/]+@)?[^/]+\/|[^@\s]+@[^:\s]+:)?([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)$/.exec(trimmed)
  if (!match || match[1] === '.' || match[2] === '.') return undefined
  return { owner: match[1]!, name: match[2]! }
}

/** The repository: `--repo`, else `actions.repo`, else the checkout's `origin` remote. */
export async function resolveRepo(explicit: string | undefined, repoRoot: string): Promise<GithubRepo> {
  const text = explicit ?? (await originUrl(repoRoot))
  const repo = text ? parseRepo(text) : undefined
  if (repo) return repo
  throw new CrabboxError(text ? `not a GitHub repository: ${text}` : 'which GitHub repository?', {
    exit: 'usage',
    hint: 'pass --repo owner/name, or set actions.repo (CRABBOX_ACTIONS_REPO)',
  })
}

const run = (file: string, args: string[], cwd?: string) =>
  new Promise<string | undefined>((resolve) => {
    execFile(file, args, { cwd, timeout: 5000 }, (error, stdout) => resolve(error ? undefined : stdout.trim() || undefined))
  })

const originUrl = (repoRoot: string) => run('git', ['config', '--get', 'remote.origin.url'], repoRoot)

/** `GH_TOKEN`, `GITHUB_TOKEN`, else the `gh` CLI's login; a clear exit 3 when there is none. */
export async function githubToken(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const token = env.GH_TOKEN || env.GITHUB_TOKEN || (await run('gh', ['auth', 'token']))
  if (token) return token
  throw new CrabboxError('no GitHub token: Actions hydration calls the GitHub API', {
    exit: 'auth',
    code: 'github_token_missing',
    hint: 'set GH_TOKEN (or GITHUB_TOKEN) to a token with the repository\'s "Administration" and "Actions" write access, or run `gh auth login`',
  })
}

/** GitHub's API root: `GITHUB_API_URL` (as Actions and GitHub Enterprise set it), else api.github.com. */
export const githubApiUrl = (env: NodeJS.ProcessEnv = process.env) => (env.GITHUB_API_URL || 'https://api.github.com').replace(/\/+$/, '')
/** Where runners register: `GITHUB_SERVER_URL`, else github.com. */
export const githubServerUrl = (env: NodeJS.ProcessEnv = process.env) => (env.GITHUB_SERVER_URL || 'https://github.com').replace(/\/+$/, '')

export class GithubApi {
  constructor(
    private readonly token: string,
    private readonly baseUrl: string = githubApiUrl(),
  ) {}

  private async call<T>(method: string, path: string, schema: v.GenericSchema<unknown, T> | undefined, body?: unknown): Promise<T> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        accept: 'application/vnd.github+json',
        authorization: `Bearer ${this.token}`,
        'x-github-api-version': '2022-11-28',
        'user-agent': 'crabbox',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    }).catch((error: unknown) => {
      throw new CrabboxError(`GitHub API ${method} ${path} failed: ${(error as Error).message}`)
    })
    const text = await response.text()
    if (!response.ok) {
      let message = text.slice(0, 300)
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message
      } catch {
        // not JSON: the start of the text
      }
      throw new CrabboxError(`GitHub API ${method} ${path}: ${response.status} ${message}`, {
        exit: response.status === 401 || response.status === 403 ? 'auth' : response.status === 404 ? 'notFound' : 'error',
        code: 'github_api',
        hint:
          response.status === 401 || response.status === 403
            ? 'the GitHub token needs write access to the repository\'s "Administration" (runners) and "Actions" (dispatch)'
            : undefined,
      })
    }
    return schema ? v.parse(schema, text ? JSON.parse(text) : {}) : (undefined as T)
  }

  registrationToken(repo: GithubRepo) {
    return this.call('POST', `/repos/${repoSlug(repo)}/actions/runners/registration-token`, RegistrationToken)
  }

  /** The workflow file's text at `ref` (to read its `workflow_dispatch` inputs). */
  async workflowText(repo: GithubRepo, workflow: string, ref?: string): Promise<string> {
    const wf = await this.call('GET', `/repos/${repoSlug(repo)}/actions/workflows/${encodeURIComponent(workflow)}`, Workflow)
    const query = ref ? `?ref=${encodeURIComponent(ref)}` : ''
    const file = await this.call('GET', `/repos/${repoSlug(repo)}/contents/${wf.path}${query}`, Contents)
    return Buffer.from(file.content, file.encoding === 'base64' ? 'base64' : 'utf8').toString('utf8')
  }

  dispatch(repo: GithubRepo, workflow: string, ref: string, inputs: Record<string, string>) {
    return this.call<void>('POST', `/repos/${repoSlug(repo)}/actions/workflows/${encodeURIComponent(workflow)}/dispatches`, undefined, {
      ref,
      inputs,
    })
  }

  async runs(repo: GithubRepo, workflow: string): Promise<WorkflowRun[]> {
    const path = `/repos/${repoSlug(repo)}/actions/workflows/${encodeURIComponent(workflow)}/runs?event=workflow_dispatch&per_page=20`
    return (await this.call('GET', path, WorkflowRuns)).workflow_runs
  }

  async runners(repo: GithubRepo): Promise<GithubRunner[]> {
    return (await this.call('GET', `/repos/${repoSlug(repo)}/actions/runners?per_page=100`, Runners)).runners
  }

  deleteRunner(repo: GithubRepo, id: number) {
    return this.call<void>('DELETE', `/repos/${repoSlug(repo)}/actions/runners/${id}`, undefined)
  }

  /** The default branch, when no ref is configured. */
  async defaultBranch(repo: GithubRepo): Promise<string> {
    return (await this.call('GET', `/repos/${repoSlug(repo)}`, v.object({ default_branch: v.string() }))).default_branch
  }

  /** The newest `actions/runner` release's version (without the `v`). */
  async latestRunnerVersion(): Promise<string> {
    const release = await this.call('GET', '/repos/actions/runner/releases/latest', v.object({ tag_name: v.string() }))
    return release.tag_name.replace(/^v/, '')
  }
}
