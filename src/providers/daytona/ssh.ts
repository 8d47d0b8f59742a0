import type { Sandbox } from '@daytonaio/sdk'
import type { Config } from '../../config/schema.js'
import { ensureLeaseKey } from '../../transport/ssh/keys.js'
import type { SshTarget } from '../../transport/ssh/types.js'
import { api } from './client.js'

/**
 * Daytona's SSH access: a short-lived token from the API (`createSshAccess`) that is the SSH
 * user at Daytona's SSH gateway, which lets it in without a key ("none" authentication).
 * crabbox connects with ssh2 like to any runner (the gateway's host key pinned in the
 * lease's known_hosts on first use) and revokes the token when it is done with it.
 */

export interface DaytonaSshAccess {
  target: SshTarget
  /** When the token expires. */
  expiresAt?: string
  /** Revokes the token (a Daytona API failure throws, as any call does). */
  revoke(): Promise<void>
}

/**
 * Where to connect, from the `sshCommand` Daytona returns with the token (`ssh [-p PORT]
 * TOKEN@HOST`): the host and port it names, else `daytona.sshGatewayHost` on port 22.
 */
export function gatewayFrom(
  sshCommand: string | undefined,
  token: string,
  gatewayHost: string,
): { host: string; port: number; user: string } {
  const words = (sshCommand ?? '').trim().split(/\s+/)
  let port = 22
  let host = gatewayHost
  for (let i = 0; i < words.length; i++) {
    if (words[i] === '-p' && /^\d+$/.test(words[i + 1] ?? '')) port = Number(words[++i])
    else if (/^-p\d+$/.test(words[i])) port = Number(words[i].slice(2))
    const at = /^[^@\s]+@([^@\s:]+)$/.exec(words[i])
    if (at) host = at[1]
  }
  return { host, port, user: token }
}

/**
 * Asks Daytona for an SSH token valid `daytona.sshAccessMinutes` and returns the target for
 * it. The lease's key is made when missing: ssh2 offers it only after "none", which the
 * gateway accepts for a valid token.
 */
export async function openSshAccess(sandbox: Sandbox, config: Config): Promise<DaytonaSshAccess> {
  const access = await api('ssh access', () => sandbox.createSshAccess(config.daytona.sshAccessMinutes))
  const key = await ensureLeaseKey(sandbox.id)
  const where = gatewayFrom(access.sshCommand, access.token, config.daytona.sshGatewayHost)
  return {
    target: { ...where, fallbackPorts: [], privateKeyPath: key.privateKeyPath, knownHostsPath: key.knownHostsPath },
    expiresAt: access.expiresAt ? new Date(access.expiresAt).toISOString() : undefined,
    revoke: () => api('ssh access revoke', () => sandbox.revokeSshAccess(access.token)),
  }
}
