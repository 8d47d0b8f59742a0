/**
 * User data for a macOS runner on AWS (`mac2.metal` on a dedicated host). The
 * AMI's own init installs the lease key for `ec2-user` and runs this script as
 * root once. It makes the work root under the user's home folder, writes
 * `/usr/local/bin/crabbox-ready` (git, tar and a writable work root; with a
 * desktop also Screen Sharing on 127.0.0.1:5900), and with a desktop gives the
 * user a fresh 16-character password, kept in `/var/db/crabbox/vnc.password`
 * (0600, the user's), and turns Screen Sharing on.
 *
 * Everything in it is plain POSIX sh and the BSD tools macOS ships (`tr`,
 * `head -c`, `dscl`, `launchctl`); macOS runners keep sshd on port 22.
 * Imports nothing: the broker and the CLI render the same text.
 */

export interface MacBootstrapOptions {
  sshUser: string
  workRoot: string
  desktop?: boolean
}

/** The EC2 instance type a macOS lease gets unless it names one (it must fit the dedicated host). */
export const MAC_INSTANCE_TYPE = 'mac2.metal'

export const MACOS_DEFAULTS = { sshUser: 'ec2-user', workRoot: '/Users/ec2-user/crabbox', sshPort: '22' } as const

/** A Mac's work root when none is configured: `crabbox` in the SSH user's home folder (`/` is read-only on macOS). */
export const macosWorkRoot = (user: string): string => (user === 'root' ? '/var/root/crabbox' : `/Users/${user}/crabbox`)

export const MACOS_VNC_PASSWORD = '/var/db/crabbox/vnc.password'

const userPattern = /^[a-z_][a-z0-9_-]{0,31}$/
const pathPattern = /^\/[A-Za-z0-9._/-]*$/

export function renderMacUserData(options: MacBootstrapOptions): string {
  if (!userPattern.test(options.sshUser)) throw new Error(`invalid ssh user ${JSON.stringify(options.sshUser)}`)
  if (!pathPattern.test(options.workRoot) || options.workRoot.includes('..'))
    throw new Error(`workRoot must be an absolute path of [A-Za-z0-9._/-], got ${JSON.stringify(options.workRoot)}`)
  const ready = [
    '#!/bin/sh',
    'git --version >/dev/null 2>&1 || { echo "missing: git"; exit 1; }',
    'command -v tar >/dev/null 2>&1 || { echo "missing: tar"; exit 1; }',
    `test -w ${options.workRoot} || { echo "missing: work root"; exit 1; }`,
    ...(options.desktop ? ['nc -z 127.0.0.1 5900 || { echo "missing: screen sharing"; exit 1; }'] : []),
    'exit 0',
  ]
  const lines = [
    '#!/bin/sh',
    'set -eu',
    `user=${options.sshUser}`,
    `root=${options.workRoot}`,
    'mkdir -p "$root" /var/db/crabbox /usr/local/bin',
    'chown "$user":staff "$root"',
    "cat > /usr/local/bin/crabbox-ready <<'CRABBOX_READY'",
    ...ready,
    'CRABBOX_READY',
    'chmod 755 /usr/local/bin/crabbox-ready',
  ]
  if (options.desktop)
    lines.push(
      `if [ ! -s ${MACOS_VNC_PASSWORD} ]; then`,
      '  pw=$(LC_ALL=C tr -dc A-Za-z0-9 </dev/urandom | head -c 16)',
      `  (umask 077; printf '%s\\n' "$pw" > ${MACOS_VNC_PASSWORD})`,
      `  chown "$user" ${MACOS_VNC_PASSWORD}`,
      '  dscl . -passwd "/Users/$user" "$pw"',
      'fi',
      'launchctl enable system/com.apple.screensharing',
      'launchctl load -w /System/Library/LaunchDaemons/com.apple.screensharing.plist 2>/dev/null || true',
    )
  lines.push('touch /var/db/crabbox/bootstrapped', '')
  return lines.join('\n')
}
