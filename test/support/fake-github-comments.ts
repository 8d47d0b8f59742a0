/**
 * A fake of the GitHub REST calls `artifacts publish` makes on a pull request: list issue
 * comments (paged with a `Link` header), create one, update one. Bodies follow GitHub's
 * documented shapes (issue comment objects with `id`, `html_url`, `body`, `user`…; errors
 * as `{message, documentation_url}`). One token is accepted; anything else is 401.
 * A plain `(Request) => Promise<Response>` handler: serve it with `serveFake`.
 */

export interface FakeComment {
  id: number
  node_id: string
  url: string
  html_url: string
  issue_url: string
  body: string
  user: { login: string; id: number; type: string }
  created_at: string
  updated_at: string
  author_association: string
}

export interface FakeGithubCommentsOptions {
  token: string
  /** Repositories that exist (`owner/name`). */
  repos: string[]
  login?: string
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json; charset=utf-8', ...headers } })

const error = (status: number, message: string) => json(status, { message, documentation_url: 'https://docs.github.com/rest' })

export function createFakeGithubComments(options: FakeGithubCommentsOptions) {
  const comments = new Map<string, FakeComment[]>()
  const calls: { method: string; path: string; authorization: string }[] = []
  let nextId = 1000
  const login = options.login ?? 'crabbox-bot'

  function addComment(repo: string, issue: number, body: string, origin: string, author = login): FakeComment {
    const id = nextId++
    const now = new Date().toISOString()
    const comment: FakeComment = {
      id,
      node_id: `IC_${id}`,
      url: `${origin}/repos/${repo}/issues/comments/${id}`,
      html_url: `https://github.test/${repo}/pull/${issue}#issuecomment-${id}`,
      issue_url: `${origin}/repos/${repo}/issues/${issue}`,
      body,
      user: { login: author, id: 1, type: 'User' },
      created_at: now,
      updated_at: now,
      author_association: 'MEMBER',
    }
    const key = `${repo}#${issue}`
    comments.set(key, [...(comments.get(key) ?? []), comment])
    return comment
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url)
    const authorization = request.headers.get('authorization') ?? ''
    calls.push({ method: request.method, path: url.pathname + url.search, authorization })
    if (authorization !== `Bearer ${options.token}`) return error(401, 'Bad credentials')
    const list = /^\/repos\/([^/]+\/[^/]+)\/issues\/(\d+)\/comments$/.exec(url.pathname)
    const one = /^\/repos\/([^/]+\/[^/]+)\/issues\/comments\/(\d+)$/.exec(url.pathname)
    const repo = list?.[1] ?? one?.[1]
    if (!repo || !options.repos.includes(repo)) return error(404, 'Not Found')
    if (list && request.method === 'GET') {
      const all = comments.get(`${repo}#${list[2]}`) ?? []
      const perPage = Math.min(Number(url.searchParams.get('per_page') ?? 30), 100)
      const page = Number(url.searchParams.get('page') ?? 1)
      const slice = all.slice((page - 1) * perPage, page * perPage)
      const headers: Record<string, string> = {}
      if (page * perPage < all.length) {
        const next = new URL(url)
        next.searchParams.set('page', String(page + 1))
        headers.link = `<${next.toString()}>; rel="next"`
      }
      return json(200, slice, headers)
    }
    if (list && request.method === 'POST') {
      const body = (await request.json()) as { body?: string }
      if (typeof body.body !== 'string') return error(422, 'Validation Failed')
      return json(201, addComment(repo, Number(list[2]), body.body, url.origin))
    }
    if (one && request.method === 'PATCH') {
      const id = Number(one[2])
      const comment = [...comments.values()].flat().find((c) => c.id === id)
      if (!comment) return error(404, 'Not Found')
      const body = (await request.json()) as { body?: string }
      if (typeof body.body !== 'string') return error(422, 'Validation Failed')
      comment.body = body.body
      comment.updated_at = new Date().toISOString()
      return json(200, comment)
    }
    return error(404, 'Not Found')
  }

  return {
    handler,
    calls,
    /** The comments on one issue or pull request, oldest first. */
    comments: (repo: string, issue: number) => comments.get(`${repo}#${issue}`) ?? [],
    /** Someone else's comment (for paging and for not touching comments without the marker). */
    seed: (repo: string, issue: number, body: string, author = 'someone') => addComment(repo, issue, body, 'http://fake', author),
  }
}
