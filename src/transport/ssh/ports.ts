import type { SshTarget } from './types.js'

/** Primary port first, then fallbacks, without repeats. */
export const candidatePorts = (target: SshTarget) => [...new Set([target.port, ...target.fallbackPorts])]
