/**
 * The Tailscale part of the runner bootstrap (cloud-init.ts adds it when a
 * lease asks): install tailscale, join the tailnet with the one-off auth key,
 * record the tailnet address, and, with an exit node, check that internet
 * traffic really leaves through it. Imports nothing and does no I/O.
 *
 * The key travels in the user data only: cloud-init writes it to a root-only
 * file under /run (memory), `tailscale up` reads it from there
 * (`--auth-key=file:`), and the join script deletes it. It is never on a
 * command line, in a log line or in a file the lease user can read.
 *
 * What the runner reports, in /var/lib/crabbox (the CLI reads these over SSH
 * and posts them to the broker): `tailscale-state` (`ready` or `failed`),
 * `tailscale-ipv4`, `tailscale-fqdn`, `tailscale-hostname`,
 * `tailscale-exit-node`, and `tailscale-error` when it failed.
 * `CRABBOX_TAILSCALE_STATE` and `CRABBOX_TAILSCALE_KEY` move the state folder
 * and the key file (tests run the scripts against a stub `tailscale`).
 */

export interface TailscaleBootstrap {
  /** One-off auth key (`tskey-auth-…`); never logged. */
  authKey: string
  hostname: string
  tags: string[]
  exitNode?: string
  exitNodeAllowLanAccess?: boolean
}

export const TAILSCALE_STATE_DIR = '/var/lib/crabbox'
export const TAILSCALE_KEY_PATH = '/run/crabbox/tailscale-auth-key'
export const TAILSCALE_UP_PATH = '/usr/local/bin/crabbox-tailscale-up'
export const TAILSCALE_EXIT_CHECK_PATH = '/usr/local/bin/crabbox-tailscale-exit-check'

const hostnamePattern = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
const tagPattern = /^tag:[a-z0-9_-]{1,63}$/
const exitNodePattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$/
const keyPattern = /^[A-Za-z0-9_-]{8,512}$/

/** Checks every value that reaches a script; messages never quote the key. */
export function validateTailscaleBootstrap(options: TailscaleBootstrap): void {
  if (!keyPattern.test(options.authKey)) throw new Error('tailscale auth key is not a Tailscale key (letters, digits, - and _)')
  if (!hostnamePattern.test(options.hostname)) throw new Error(`tailscale hostname ${JSON.stringify(options.hostname)} is not a DNS label`)
  for (const tag of options.tags)
    if (!tagPattern.test(tag)) throw new Error(`tailscale tag ${JSON.stringify(tag)} is not tag:[a-z0-9_-]{1,63}`)
  if (options.exitNode !== undefined && !exitNodePattern.test(options.exitNode))
    throw new Error(`tailscale exit node ${JSON.stringify(options.exitNode)} is not a tailnet host name or address`)
  if (options.exitNodeAllowLanAccess && !options.exitNode) throw new Error('tailscale exit node LAN access needs an exit node')
}

const q = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`

/**
 * The exit-node check: the exit node must be selected and online in
 * `tailscale status`, and the route to the internet must go out on
 * tailscale0. Anything else writes `exit node <node> is not active: <why>`
 * to tailscale-error and exits 1. `CRABBOX_TAILSCALE_STATE` moves the state
 * folder (tests).
 */
export function renderExitNodeCheck(exitNode: string): string {
  return `#!/bin/sh
# crabbox-tailscale-exit-check: internet traffic must leave through the exit node.
node=${q(exitNode)}
state="\${CRABBOX_TAILSCALE_STATE:-${TAILSCALE_STATE_DIR}}"
fail() {
  msg="exit node $node is not active: $1"
  printf '%s\\n' "$msg" > "$state/tailscale-error"
  echo failed > "$state/tailscale-state"
  echo "$msg" >&2
  exit 1
}
status=$(tailscale status --json 2>/dev/null) || fail 'tailscale status failed'
printf '%s' "$status" | jq -e '.ExitNodeStatus != null' >/dev/null 2>&1 || fail 'no exit node is selected'
printf '%s' "$status" | jq -e '.ExitNodeStatus.Online == true' >/dev/null 2>&1 || fail 'the exit node is offline'
route=$(ip route get 1.1.1.1 2>&1) || fail "no route to the internet: $route"
case "$route" in
  *" dev tailscale0"*) ;;
  *) fail "internet traffic leaves through $(printf '%s' "$route" | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'), not tailscale0" ;;
esac
echo "exit node $node is active"
`
}

/** The join script: `tailscale up` with the key file, then the address files (and the exit-node check). */
export function renderTailscaleUp(options: TailscaleBootstrap): string {
  const flags = [
    `--auth-key="file:$key"`,
    `--hostname=${q(options.hostname)}`,
    ...(options.tags.length ? [`--advertise-tags=${q(options.tags.join(','))}`] : []),
    ...(options.exitNode ? [`--exit-node=${q(options.exitNode)}`] : []),
    ...(options.exitNode && options.exitNodeAllowLanAccess ? ['--exit-node-allow-lan-access'] : []),
    '--timeout=120s',
  ]
  return `#!/bin/sh
# crabbox-tailscale-up: joins the tailnet with the one-off key, then records the tailnet address.
state="\${CRABBOX_TAILSCALE_STATE:-${TAILSCALE_STATE_DIR}}"
key="\${CRABBOX_TAILSCALE_KEY:-${TAILSCALE_KEY_PATH}}"
fail() {
  printf '%s\\n' "$1" > "$state/tailscale-error"
  echo failed > "$state/tailscale-state"
  echo "crabbox tailscale: $1" >&2
  exit 1
}
[ -s "$key" ] || fail 'the one-off auth key is missing (it is used once, at first boot)'
tailscale up ${flags.join(' ')} >/dev/null 2>&1
joined=$?
rm -f "$key"
[ "$joined" -eq 0 ] || fail 'tailscale up failed: the key may have expired or the tags are not allowed'
tailscale ip -4 2>/dev/null | head -n 1 > "$state/tailscale-ipv4"
printf '%s\\n' ${q(options.hostname)} > "$state/tailscale-hostname"
tailscale status --json 2>/dev/null | jq -r '.Self.DNSName // "" | sub("\\\\.$"; "")' > "$state/tailscale-fqdn"
${options.exitNode ? `printf '%s\\n' ${q(options.exitNode)} > "$state/tailscale-exit-node"\n${TAILSCALE_EXIT_CHECK_PATH} || exit 1\n` : ''}rm -f "$state/tailscale-error"
echo ready > "$state/tailscale-state"
`
}

/** write_files entries: the key (root only, in /run), the join script and, with an exit node, its check. */
export function tailscaleFiles(options: TailscaleBootstrap): Array<{ path: string; permissions: string; content: string }> {
  return [
    { path: TAILSCALE_KEY_PATH, permissions: '0600', content: `${options.authKey}\n` },
    { path: TAILSCALE_UP_PATH, permissions: '0755', content: renderTailscaleUp(options) },
    ...(options.exitNode ? [{ path: TAILSCALE_EXIT_CHECK_PATH, permissions: '0755', content: renderExitNodeCheck(options.exitNode) }] : []),
  ]
}

/** runcmd lines: install tailscale (its official script, with retries), then join. */
export function tailscaleCommands(): string[] {
  return [
    '/usr/local/bin/crabbox-retry sh -c "curl -fsSL https://tailscale.com/install.sh | sh"',
    `systemctl enable --now tailscaled; ${TAILSCALE_UP_PATH}`,
  ]
}

/** crabbox-ready lines: a failed join or exit-node check is reported as it is; otherwise wait for a 100.x address. */
export function tailscaleReadyChecks(fail: (what: string) => string): string[] {
  return [
    `[ -f ${TAILSCALE_STATE_DIR}/tailscale-error ] && ${fail(`tailscale: $(cat ${TAILSCALE_STATE_DIR}/tailscale-error)`)}`,
    `case "$(cat ${TAILSCALE_STATE_DIR}/tailscale-ipv4 2>/dev/null)" in 100.*) ;; *) ${fail('tailscale has no tailnet address yet')} ;; esac`,
  ]
}
