import * as v from 'valibot'

/**
 * GitHub browser login (`/v1/auth/github/*`) and health.
 * The CLI proves it started a login by the SHA-256 of a secret only it knows.
 */
export const HealthResponse = v.object({ ok: v.literal(true), service: v.string() })
export type HealthResponse = v.InferOutput<typeof HealthResponse>

const Hex64 = v.pipe(v.string(), v.regex(/^[a-f0-9]{64}$/, 'lowercase hex SHA-256'))

export const GithubLoginStartRequest = v.object({
  pollSecretHash: Hex64,
  provider: v.optional(v.string()),
})
export type GithubLoginStartRequest = v.InferOutput<typeof GithubLoginStartRequest>

export const GithubLoginStartResponse = v.object({
  loginID: v.string(),
  /** The GitHub authorize URL; its `redirect_uri` names the broker's canonical origin. */
  url: v.pipe(v.string(), v.url()),
  expiresAt: v.string(),
  /**
   * The code (`XXXX-XXXX`) the CLI shows and the broker's page asks for after GitHub
   * approves: the login completes only when the browser enters it. Absent from brokers
   * that predate it.
   */
  userCode: v.optional(v.string()),
})
export type GithubLoginStartResponse = v.InferOutput<typeof GithubLoginStartResponse>

export const GithubLoginPollRequest = v.object({
  loginID: v.pipe(v.string(), v.maxLength(64)),
  pollSecret: v.pipe(v.string(), v.maxLength(1024)),
})
export type GithubLoginPollRequest = v.InferOutput<typeof GithubLoginPollRequest>

/** 200 pending/complete; 410 `{status:"expired"}` and 400 `{status:"failed",error}` arrive as error replies. */
export const GithubLoginPollResponse = v.variant('status', [
  v.object({ status: v.literal('pending'), expiresAt: v.optional(v.string()) }),
  v.object({
    status: v.literal('complete'),
    token: v.string(),
    owner: v.string(),
    org: v.string(),
    login: v.string(),
    provider: v.optional(v.string()),
  }),
])
export type GithubLoginPollResponse = v.InferOutput<typeof GithubLoginPollResponse>

/**
 * The broker's confirmation form (`application/x-www-form-urlencoded`), posted by the
 * page GitHub's callback shows: the login's `state`, the per-page `confirmToken` only
 * that page carries, and the `userCode` the person types from their terminal.
 */
export const GithubLoginConfirmForm = v.object({
  state: v.pipe(v.string(), v.maxLength(128)),
  userCode: v.pipe(v.string(), v.maxLength(64)),
  confirmToken: v.optional(v.pipe(v.string(), v.maxLength(128))),
})
export type GithubLoginConfirmForm = v.InferOutput<typeof GithubLoginConfirmForm>

/** What GitHub sends back to `/v1/auth/github/callback`. */
export const GithubCallbackQuery = v.object({
  code: v.optional(v.pipe(v.string(), v.maxLength(512))),
  state: v.optional(v.pipe(v.string(), v.maxLength(128))),
  error: v.optional(v.pipe(v.string(), v.maxLength(512))),
  error_description: v.optional(v.pipe(v.string(), v.maxLength(2048))),
})
export type GithubCallbackQuery = v.InferOutput<typeof GithubCallbackQuery>
