import { join } from 'node:path'
import type { SshTarget } from '../transport/ssh/types.js'

/**
 * The `ssh` of a lease crabbox never dials itself (a delegated provider owns the machine and the
 * connection): no host or port; the lease's key folder when it has one, so a later SSH grant
 * (Daytona) knows where the key would live.
 */
export function undialledSsh(keyDir?: string): SshTarget {
  return {
    host: '',
    port: 0,
    fallbackPorts: [],
    user: '',
    privateKeyPath: keyDir ? join(keyDir, 'id_ed25519') : '',
    knownHostsPath: keyDir ? join(keyDir, 'known_hosts') : '',
  }
}
