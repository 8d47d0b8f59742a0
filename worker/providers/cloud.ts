import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { CloudApiError } from '../../src/protocol/cloud-machines.js'

/**
 * Maps a cloud API failure for the lease flow. A definite answer (no capacity,
 * bad credentials, bad input) becomes an ApiError the caller sees; an unknown
 * outcome (timeout, 5xx, lost reply) stays a plain error so the broker looks
 * the machine up by its lease label before giving up.
 */
export function cloudFailure(error: unknown): unknown {
  if (!(error instanceof CloudApiError)) return error
  const name = error.provider === 'aws' ? 'AWS' : 'Hetzner'
  switch (error.category) {
    case 'capacity':
    case 'quota':
    case 'unsupported':
      return new ApiError(503, ErrorCode.noCapacity, error.message)
    case 'auth':
      return new ApiError(502, ErrorCode.providerFailed, `${name} rejected the broker's credentials: ${error.message}`)
    case 'fatal':
    case 'conflict':
    case 'not_found':
      return new ApiError(502, ErrorCode.providerFailed, error.message)
    default:
      return error
  }
}
