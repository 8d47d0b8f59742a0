/**
 * The one runner bootstrap: cloud-init user data for a managed Linux machine.
 * Used verbatim by the broker (workerd) and by direct mode (Node), so it
 * imports nothing and does no I/O.
 *
 * The machine ends up with: user `<sshUser>` (passwordless sudo, the lease key
 * only), sshd on the primary and fallback ports with password login off,
 * git/rsync/curl/jq/tar installed with retries, the work root, and
 * `/usr/local/bin/crabbox-ready`, which exits 0 only once all of that is true.
 * Its SSH host keys are printed to the console as `crabbox-host-key: <type> <key>`
 * so a client that can read console output pins them before first contact.
 *
 * Capabilities, each only when asked: `desktop` (Xvfb on :99, openbox, x11vnc on
 * 127.0.0.1:5900 only, with a password made on the machine at first boot in
 * /var/lib/crabbox/vnc.password, readable by the lease user only; xdotool,
 * xclip, xsel and scrot for input, clipboard and screenshots; ffmpeg for
 * `artifacts video`), `browser`
 * (the distribution's Chromium; /var/lib/crabbox/browser.env names it) and
 * `code` (code-server on 127.0.0.1:8080, no auth: only an SSH tunnel reaches
 * it). crabbox-ready then also waits for each of them. `tailscale` joins the
 * tailnet with a one-off key (tailscale-init.ts).
 */
import {
  tailscaleCommands,
  tailscaleFiles,
  tailscaleReadyChecks,
  validateTailscaleBootstrap,
  type TailscaleBootstrap,
} from './tailscale-init.js'

export interface BootstrapOptions {
  sshUser: string
  /** One OpenSSH public key line, e.g. `ssh-ed25519 AAAA... crabbox cbx_...`. */
  sshPublicKey: string
  sshPort: string
  sshFallbackPorts: string[]
  workRoot: string
  desktop?: boolean
  browser?: boolean
  code?: boolean
  tailscale?: TailscaleBootstrap
}

export const BOOTSTRAP_DEFAULTS = {
  sshUser: 'crabbox',
  sshPort: '2222',
  sshFallbackPorts: ['22'],
  workRoot: '/work/crabbox',
} as const

const HOST_KEY_MARKER = 'crabbox-host-key:'
const READY_PATH = '/usr/local/bin/crabbox-ready'
const BOOTSTRAPPED_MARKER = '/var/lib/crabbox/bootstrapped'
const RUNNER_PACKAGES = ['openssh-server', 'ca-certificates', 'curl', 'git', 'rsync', 'jq', 'tar'] as const

const userPattern = /^[a-z_][a-z0-9_-]{0,31}$/
const portPattern = /^[1-9][0-9]{0,4}$/
const keyPattern = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]+( [^\r\n]*)?$/
const pathPattern = /^\/[A-Za-z0-9._/-]*$/

/** Validates the inputs so nothing a caller passes can break out of the YAML or shell. */
function validateBootstrap(options: BootstrapOptions): void {
  if (!userPattern.test(options.sshUser)) throw new Error(`invalid ssh user ${JSON.stringify(options.sshUser)}`)
  if (!keyPattern.test(options.sshPublicKey.trim())) throw new Error('sshPublicKey must be one OpenSSH public key line')
  for (const port of [options.sshPort, ...options.sshFallbackPorts]) {
    if (!portPattern.test(port) || Number(port) > 65535) throw new Error(`invalid ssh port ${JSON.stringify(port)}`)
  }
  if (!pathPattern.test(options.workRoot) || options.workRoot.includes('..')) {
    throw new Error(`workRoot must be an absolute path of [A-Za-z0-9._/-], got ${JSON.stringify(options.workRoot)}`)
  }
  if (options.tailscale) validateTailscaleBootstrap(options.tailscale)
}

const q = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`
/** JSON strings are valid YAML double-quoted scalars. */
const y = (text: string) => JSON.stringify(text)
const block = (text: string, indent: string) =>
  text
    .trimEnd()
    .split('\n')
    .map((line) => (line ? indent + line : ''))
    .join('\n')

/** What sync and runs need on every runner; the bootstrap also installs curl and jq for users' commands. */
const READY_TOOLS = 'git rsync tar'

/**
 * The readiness probe: run over SSH as the lease user, exit 0 only when the box
 * is usable. The marker is written only after every package is installed, so
 * the probe checks the tools crabbox itself uses, the marker and the work root.
 */
function renderReadyScript(options: Pick<BootstrapOptions, 'workRoot' | 'desktop' | 'browser' | 'code' | 'tailscale'>): string {
  const fail = (what: string) => `{ echo "crabbox-ready: ${what}" >&2; exit 1; }`
  const optional = [
    ...(options.desktop
      ? [
          `for unit in ${DESKTOP_UNITS.join(' ')}; do systemctl is-active --quiet "$unit" || ${fail('$unit is not running yet')}; done`,
          `[ -r ${VNC_PASSWORD} ] || ${fail('the VNC password is not readable')}`,
          `bash -c 'exec 3<>/dev/tcp/127.0.0.1/5900' 2>/dev/null || ${fail('VNC is not listening on 127.0.0.1:5900 yet')}`,
        ]
      : []),
    ...(options.browser
      ? [
          `[ -f ${BROWSER_ENV} ] && . ${BROWSER_ENV} && command -v "$CHROME_BIN" >/dev/null 2>&1 || ${fail('the browser is not installed yet')}`,
        ]
      : []),
    ...(options.code ? [`command -v code-server >/dev/null 2>&1 || ${fail('code-server is not installed yet')}`] : []),
    ...(options.tailscale ? tailscaleReadyChecks(fail) : []),
  ]
  return `#!/bin/sh
# crabbox-ready: exits 0 once the runner bootstrap has finished.
for tool in ${READY_TOOLS}; do
  command -v "$tool" >/dev/null 2>&1 || { echo "crabbox-ready: $tool is not installed yet" >&2; exit 1; }
done
[ -f ${BOOTSTRAPPED_MARKER} ] || { echo "crabbox-ready: bootstrap has not finished" >&2; exit 1; }
[ -d ${q(options.workRoot)} ] && [ -w ${q(options.workRoot)} ] || { echo "crabbox-ready: work root ${options.workRoot} is not writable" >&2; exit 1; }
${optional
  .map(
    (line) => `${line}
`,
  )
  .join('')}echo ready
`
}

export const VNC_PASSWORD = '/var/lib/crabbox/vnc.password'
export const BROWSER_ENV = '/var/lib/crabbox/browser.env'
export const DESKTOP_DISPLAY = ':99'
export const VNC_PORT = 5900
export const CODE_SERVER_PORT = 8080
const DESKTOP_UNITS = ['crabbox-xvfb', 'crabbox-desktop', 'crabbox-x11vnc', 'crabbox-clipboard'] as const
export const DESKTOP_PACKAGES = [
  'xvfb',
  'openbox',
  'x11vnc',
  'xdotool',
  'xclip',
  'xsel',
  'scrot',
  'x11-utils',
  'xterm',
  'autocutsel',
  'ffmpeg',
] as const

/** systemd units for the desktop, all as the lease user: the X server, the window manager, loopback VNC. */
function desktopUnits(user: string): Array<{ name: string; text: string }> {
  const unit = (description: string, exec: string, after?: string) => `[Unit]
Description=${description}
${after ? `After=${after}\nRequires=${after}\n` : ''}[Service]
User=${user}
Environment=DISPLAY=${DESKTOP_DISPLAY}
ExecStart=${exec}
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`
  return [
    {
      name: 'crabbox-xvfb',
      text: unit('crabbox X server on :99', `/usr/bin/Xvfb ${DESKTOP_DISPLAY} -screen 0 1920x1080x24 -nolisten tcp`),
    },
    { name: 'crabbox-desktop', text: unit('crabbox window manager', '/usr/bin/openbox', 'crabbox-xvfb.service') },
    {
      name: 'crabbox-x11vnc',
      text: unit(
        'crabbox VNC server (loopback only)',
        `/usr/bin/x11vnc -display ${DESKTOP_DISPLAY} -localhost -rfbport ${VNC_PORT} -passwdfile ${VNC_PASSWORD} -forever -shared -noxdamage -quiet -nosetclipboard -nosetprimary`,
        'crabbox-xvfb.service',
      ),
    },
    // x11vnc puts a viewer's clipboard text in the X cut buffer only (its own selection owner
    // answers no request); autocutsel keeps the cut buffer and CLIPBOARD/PRIMARY in step both ways.
    {
      name: 'crabbox-clipboard',
      text: unit(
        'crabbox clipboard sync (VNC cut buffer <-> CLIPBOARD, PRIMARY)',
        "/bin/sh -c 'autocutsel -s PRIMARY & exec autocutsel -s CLIPBOARD'",
        'crabbox-xvfb.service',
      ),
    },
  ]
}

/** runcmd lines for the asked capabilities, after the base packages. */
function capabilityCommands(options: BootstrapOptions, user: string): string[] {
  const lines: string[] = []
  if (options.desktop)
    lines.push(
      `/usr/local/bin/crabbox-retry apt-get install -y --no-install-recommends ${DESKTOP_PACKAGES.join(' ')}`,
      // The per-lease VNC password: made here, on the machine, never in the user data or a log.
      `umask 077; [ -s ${VNC_PASSWORD} ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \\n' > ${VNC_PASSWORD}; chown ${user} ${VNC_PASSWORD}; chmod 0600 ${VNC_PASSWORD}`,
      `systemctl daemon-reload && systemctl enable --now ${DESKTOP_UNITS.join(' ')}`,
    )
  if (options.browser)
    lines.push(
      '/usr/local/bin/crabbox-retry apt-get install -y --no-install-recommends chromium || /usr/local/bin/crabbox-retry apt-get install -y chromium-browser',
      `bin=$(command -v chromium || command -v chromium-browser) && printf 'CHROME_BIN=%s\\nBROWSER=%s\\n' "$bin" "$bin" > ${BROWSER_ENV}`,
    )
  if (options.code)
    lines.push(
      '/usr/local/bin/crabbox-retry apt-get install -y --no-install-recommends libatomic1',
      '/usr/local/bin/crabbox-retry sh -c "curl -fsSL https://code-server.dev/install.sh | sh -s -- --method standalone --prefix /usr/local"',
      `systemctl daemon-reload && systemctl enable --now crabbox-code-server`,
    )
  if (options.tailscale) lines.push(...tailscaleCommands())
  return lines
}

/** Linear backoff, 8 attempts: package mirrors on fresh machines are often briefly unreachable. */
const retryScript = `#!/bin/sh
n=1
until "$@"; do
  [ "$n" -ge 8 ] && { echo "crabbox-retry: giving up on: $*" >&2; exit 1; }
  sleep $((n * 5))
  n=$((n + 1))
done
`

/** The systemd units the asked capabilities need. */
function units(options: BootstrapOptions): Array<{ name: string; text: string }> {
  return [
    ...(options.desktop ? desktopUnits(options.sshUser) : []),
    ...(options.code
      ? [
          {
            name: 'crabbox-code-server',
            text: `[Unit]
Description=crabbox code-server (loopback only)
After=network-online.target

[Service]
User=${options.sshUser}
WorkingDirectory=${options.workRoot}
ExecStart=/usr/local/bin/code-server --auth none --bind-addr 127.0.0.1:${CODE_SERVER_PORT} ${options.workRoot}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`,
          },
        ]
      : []),
  ]
}

/** npm and pnpm keep their downloads in the runner caches (`crabbox cache`), for every login. */
const CACHE_ENVIRONMENT =
  'npm_config_cache=/var/cache/crabbox/npm\nnpm_config_store_dir=/var/cache/crabbox/pnpm\npnpm_config_store_dir=/var/cache/crabbox/pnpm\n'

export function renderCloudInit(options: BootstrapOptions): string {
  validateBootstrap(options)
  const { sshUser, sshPort, sshFallbackPorts, workRoot } = options
  const ports = [...new Set([sshPort, ...sshFallbackPorts])]
  const sshd = `${ports.map((p) => `Port ${p}`).join('\n')}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n`
  const apt = 'Acquire::Retries "8";\nAcquire::http::Timeout "30";\nAcquire::https::Timeout "30";\nDPkg::Lock::Timeout "120";\n'
  const user = q(sshUser)
  const runcmd = [
    // Host keys first: they exist before runcmd, and the client can pin them while packages install.
    `for f in /etc/ssh/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ecdsa_key.pub /etc/ssh/ssh_host_rsa_key.pub; do [ -f "$f" ] && echo "${HOST_KEY_MARKER} $(cut -d' ' -f1,2 "$f")" | tee /dev/console; done; true`,
    'export DEBIAN_FRONTEND=noninteractive',
    '/usr/local/bin/crabbox-retry apt-get update',
    `/usr/local/bin/crabbox-retry apt-get install -y --no-install-recommends ${RUNNER_PACKAGES.join(' ')}`,
    `install -d -m 0755 -o ${user} -g ${user} ${q(workRoot)} /var/cache/crabbox /var/cache/crabbox/pnpm /var/cache/crabbox/npm /var/cache/crabbox/git`,
    'install -d -m 0755 /var/lib/crabbox',
    // Ubuntu 24.04 socket-activates sshd: regenerate the socket units so the new ports are listened on.
    'systemctl daemon-reload; systemctl restart ssh.socket 2>/dev/null; systemctl restart ssh 2>/dev/null || systemctl restart sshd',
    ...capabilityCommands(options, user),
    // A failed install must not look finished: the marker needs every tool.
    `for tool in git rsync curl jq tar; do command -v "$tool" >/dev/null 2>&1 || { echo "crabbox bootstrap: $tool is missing" >&2; exit 1; }; done; touch ${BOOTSTRAPPED_MARKER}`,
    `su - ${user} -c ${READY_PATH}`,
  ]
  return `#cloud-config
package_update: false
package_upgrade: false
ssh_pwauth: false
disable_root: true
users:
  - default
  - name: ${y(sshUser)}
    groups: [sudo]
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    lock_passwd: true
    ssh_authorized_keys:
      - ${y(options.sshPublicKey.trim())}
write_files:
  - path: /etc/ssh/sshd_config.d/99-crabbox.conf
    permissions: "0644"
    content: |
${block(sshd, '      ')}
  - path: /etc/apt/apt.conf.d/80-crabbox-retries
    permissions: "0644"
    content: |
${block(apt, '      ')}
  - path: /etc/environment
    append: true
    content: |
${block(CACHE_ENVIRONMENT, '      ')}
  - path: /usr/local/bin/crabbox-retry
    permissions: "0755"
    content: |
${block(retryScript, '      ')}
  - path: ${READY_PATH}
    permissions: "0755"
    content: |
${block(renderReadyScript(options), '      ')}
${units(options)
  .map(
    (unit) => `  - path: /etc/systemd/system/${unit.name}.service
    permissions: "0644"
    content: |
${block(unit.text, '      ')}`,
  )
  .join('\n')}${units(options).length ? '\n' : ''}${(options.tailscale ? tailscaleFiles(options.tailscale) : [])
    .map(
      (file) => `  - path: ${file.path}
    permissions: "${file.permissions}"
    content: |
${block(file.content, '      ')}
`,
    )
    .join('')}runcmd:
${runcmd.map((line) => `  - [sh, -c, ${y(line)}]`).join('\n')}
`
}

export interface ConsoleHostKey {
  type: string
  key: string
}

/** Host keys the bootstrap printed to the console; the last report of each type wins. */
export function parseConsoleHostKeys(consoleOutput: string): ConsoleHostKey[] {
  const found = new Map<string, string>()
  const pattern = /crabbox-host-key: (ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa) ([A-Za-z0-9+/=]+)/g
  for (const match of consoleOutput.matchAll(pattern)) found.set(match[1], match[2])
  return [...found].map(([type, key]) => ({ type, key }))
}

/** known_hosts lines for a host reached on several ports (`[host]:port` form for non-22 ports). */
export function knownHostsLines(host: string, ports: string[], keys: ConsoleHostKey[]): string[] {
  return ports.flatMap((port) => {
    const name = port === '22' ? host : `[${host}]:${port}`
    return keys.map((k) => `${name} ${k.type} ${k.key}`)
  })
}
