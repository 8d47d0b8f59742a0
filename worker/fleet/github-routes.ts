import * as v from 'valibot'
import {
  GithubCallbackQuery,
  GithubLoginPollRequest,
  GithubLoginPollResponse,
  GithubLoginStartRequest,
  GithubLoginStartResponse,
} from '../../src/protocol/auth.js'
import { ApiError } from '../../src/protocol/errors.js'
import { githubCallback, githubSettings, htmlPage, pollGithubLogin, startGithubLogin } from './github.js'
import { defineRoute, type RouteSpec } from './route-spec.js'

/** The callback answers a page for a person, not JSON. */
const HTML_PAGE = v.pipe(v.string(), v.metadata({ contentMediaType: 'text/html' }))

/** GitHub login: start, callback, poll. No bearer token: the poll secret proves the caller. */
export const GITHUB_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'POST',
      path: '/v1/auth/github/start',
      summary: 'Start a CLI login; returns the GitHub authorize URL',
      auth: 'none',
      body: GithubLoginStartRequest,
      response: GithubLoginStartResponse,
    },
    async (c, deps, input) => {
      if (!githubSettings(deps.env)) throw new ApiError(503, 'github_oauth_not_configured', 'GitHub OAuth is not configured')
      let body: v.InferOutput<typeof GithubLoginStartRequest>
      try {
        body = await input.body()
      } catch (error) {
        if (error instanceof ApiError && error.status === 400)
          throw new ApiError(
            400,
            'invalid_poll_secret_hash',
            `pollSecretHash must be the lowercase hex SHA-256 of your poll secret (${error.message})`,
          )
        throw error
      }
      const started = startGithubLogin(
        deps,
        { mode: 'cli', pollSecretHash: body.pollSecretHash, ...(body.provider ? { provider: body.provider } : {}) },
        new URL(c.req.url).origin,
      )
      return c.json(started)
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/auth/github/callback',
      summary: 'Where GitHub sends the browser back (answers HTML)',
      auth: 'none',
      query: GithubCallbackQuery,
      response: HTML_PAGE,
    },
    async (c, deps, input) => {
      // A bad callback is shown to a person in a browser: an HTML page, not a JSON error.
      const parsed = input.safeQuery()
      if (!parsed.success) return htmlPage(400, 'Crabbox login failed', 'The callback parameters are not valid.')
      return githubCallback(deps, parsed.output)
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/auth/github/poll',
      summary: 'Collect the token of a finished CLI login (single use)',
      auth: 'none',
      body: GithubLoginPollRequest,
      response: GithubLoginPollResponse,
    },
    async (c, deps, input) => {
      let body: v.InferOutput<typeof GithubLoginPollRequest>
      try {
        body = await input.body()
      } catch (error) {
        if (error instanceof ApiError && error.status === 400)
          throw new ApiError(400, 'invalid_poll', `send {"loginID", "pollSecret"} (${error.message})`)
        throw error
      }
      const answer = await pollGithubLogin(deps, body)
      return c.json(answer.body, answer.status as 200)
    },
  ),
]
