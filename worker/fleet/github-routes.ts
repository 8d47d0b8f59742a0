import * as v from 'valibot'
import {
  GithubCallbackQuery,
  GithubLoginConfirmForm,
  GithubLoginPollRequest,
  GithubLoginPollResponse,
  GithubLoginStartRequest,
  GithubLoginStartResponse,
} from '../../src/protocol/auth.js'
import { ApiError } from '../../src/protocol/errors.js'
import { confirmGithubLogin, githubCallback, githubNotConfigured, githubSettings, pollGithubLogin, startGithubLogin } from './github.js'
import { htmlPage } from './github-pages.js'
import { loginBinding } from '../portal/session.js'
import { defineRoute, type RouteSpec } from './route-spec.js'

/** The callback answers a page for a person, not JSON. */
const HTML_PAGE = v.pipe(v.string(), v.metadata({ contentMediaType: 'text/html' }))

/** A confirmation form is a few hundred bytes. */
const MAX_CONFIRM_FORM_BYTES = 4096

/**
 * GitHub login: start, callback, confirm, poll. No bearer token: the poll secret proves
 * the CLI, the confirmation page's own token and the user code prove the browser.
 */
export const GITHUB_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'POST',
      path: '/v1/auth/github/start',
      summary: 'Start a CLI login; returns the GitHub authorize URL and the user code to show',
      auth: 'none',
      body: GithubLoginStartRequest,
      response: GithubLoginStartResponse,
    },
    async (c, deps, input) => {
      if (!githubSettings(deps.env)) throw githubNotConfigured(deps.env)
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
        // Set by Cloudflare's edge for every request; the caller cannot choose it there.
        { address: c.req.header('cf-connecting-ip') },
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
      return githubCallback(deps, parsed.output, loginBinding(c.req.raw))
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/auth/github/confirm',
      summary: 'The confirmation page posts the user code here (a browser form; answers HTML)',
      auth: 'none',
      body: GithubLoginConfirmForm,
      bodyMediaType: 'application/x-www-form-urlencoded',
      response: HTML_PAGE,
    },
    async (c, deps, input) => {
      let form: v.InferOutput<typeof GithubLoginConfirmForm>
      try {
        form = await input.body({ maxBytes: MAX_CONFIRM_FORM_BYTES })
      } catch (error) {
        if (error instanceof ApiError && error.status < 500)
          return htmlPage(error.status, 'Crabbox login failed', 'The confirmation form is not valid.')
        throw error
      }
      return confirmGithubLogin(deps, form, c.req.header('origin'))
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
