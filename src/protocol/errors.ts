import * as v from 'valibot'

/** Every non-2xx JSON body the broker sends: a stable code plus a sentence for humans. */
export const ErrorBody = v.object({
  error: v.string(),
  message: v.optional(v.string()),
})
export type ErrorBody = v.InferOutput<typeof ErrorBody>

/** Error codes the broker answers with; clients branch on these, never on messages. */
export const ErrorCode = {
  unauthorized: 'unauthorized',
  forbidden: 'forbidden',
  notFound: 'not_found',
  invalidRequest: 'invalid_request',
  invalidJson: 'invalid_json',
  invalidLeaseId: 'invalid_lease_id',
  invalidIdentity: 'invalid_identity',
  payloadTooLarge: 'payload_too_large',
  unsupportedProvider: 'unsupported_provider',
  unsupportedTarget: 'unsupported_target',
  unsupportedCapability: 'unsupported_capability',
  noCapacity: 'no_capacity',
  costLimitExceeded: 'cost_limit_exceeded',
  leaseNotActive: 'lease_not_active',
  leaseIdConflict: 'lease_id_conflict',
  ambiguousSlug: 'ambiguous_slug',
  slugUnavailable: 'slug_unavailable',
  providerFailed: 'provider_failed',
  imageNotAvailable: 'image_not_available',
  tailscaleDisabled: 'tailscale_disabled',
  invalidTailscaleTags: 'invalid_tailscale_tags',
  tailscaleUnavailable: 'tailscale_unavailable',
  internal: 'internal',
  invalidProvider: 'invalid_provider',
  tooManyRunners: 'too_many_runners',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/**
 * An error with an HTTP status and wire code. Thrown by broker code (and
 * providers) for anything a caller should see as a clean 4xx/5xx body.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message?: string,
  ) {
    super(message ?? code)
    this.name = 'ApiError'
  }

  get body(): ErrorBody {
    return this.message && this.message !== this.code ? { error: this.code, message: this.message } : { error: this.code }
  }
}

/** One line naming the field and what is wrong with it, from valibot issues. */
export function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  return issues
    .slice(0, 5)
    .map((issue) => {
      const path = v.getDotPath(issue)
      // A missing key reads better as "x is required" than as a type mismatch.
      const message =
        issue.kind === 'schema' && issue.received === 'undefined' && issue.message.startsWith('Invalid key') ? 'is required' : issue.message
      return path ? `${path}: ${message}` : message
    })
    .join('; ')
}
