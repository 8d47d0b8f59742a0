import type { SshTarget } from './types.js'

/** Primary port first, then fallbacks, without repeats. */
export const candidatePorts = (target: SshTarget) => [...new Set([target.port, ...target.fallbackPorts])]

/** Whole handshake budget per port (TCP, key exchange, auth). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
