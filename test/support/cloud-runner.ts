import { execFileSync } from 'node:child_process'
import { chownSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'yaml'
import type { SshHost } from './ssh-host.js'

/** The cloud e2e tests' runner: a real sshd test host that plays the VM a fake cloud API hands out. */

export const READY = '/usr/local/bin/crabbox-ready'
export const MARKER = '/var/lib/crabbox/bootstrapped'

interface CloudConfig {
  users: Array<string | { name: string; ssh_authorized_keys: string[] }>
  write_files: Array<{ path: string; content: string; permissions?: string }>
}

/**
 * What the runner's cloud-init would do with the user data crabbox sent: authorize the keys it
 * lists, install its files under `dirs` (the readiness probe at least), mark the box
 * bootstrapped. So a wrong key or a broken probe fails the run. The host has its own
 * /usr/local/bin and /var/lib/crabbox (privateDirs): parallel tests never see each other's probe.
 */
export async function bootstrapFrom(host: SshHost, userData: string, dirs = ['/usr/local/bin/']): Promise<void> {
  const config = parse(userData) as CloudConfig
  for (const user of config.users) if (typeof user === 'object') for (const key of user.ssh_authorized_keys) await host.authorize(key)
  const files = config.write_files.filter((file) => dirs.some((dir) => file.path.startsWith(dir)))
  if (!files.some((file) => file.path === READY)) throw new Error(`the user data installs no ${READY}`)
  for (const file of files) writeFileSync(host.path(file.path), file.content, { mode: Number.parseInt(file.permissions ?? '755', 8) })
  writeFileSync(host.path(MARKER), '')
}

/** A folder the runner's user (`crabbox`) owns, for a provider's work root on the test host. */
export function runnerWorkRoot(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  const uid = Number(execFileSync('id', ['-u', 'crabbox'], { encoding: 'utf8' }).trim())
  chownSync(dir, uid, uid)
  return dir
}
