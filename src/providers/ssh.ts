import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as v from 'valibot'
import type { Config } from '../config/schema.js'
import { leaseKeyDir, stateDir } from '../paths.js'
import { macosWorkRoot } from '../cloud/macos-bootstrap.js'
import { ownSshKey } from '../transport/ssh/keys.js'
import { CrabboxError } from '../errors.js'
import { normalizeSlug } from '../protocol/ids.js'
import { readLocalJson } from './local/files.js'
import { windowsWorkRoot } from './windows.js'
import { pickByIdOrSlug } from './pick.js'
import type { AcquireRequest, DirectProvider, Lease, ProviderContext } from './types.js'

/** A claim on an existing host, recorded so `--id` finds it again (`<state>/claims/<id>.json`). */
const Claim = v.object({
  id: v.string(),
  slug: v.string(),
  host: v.string(),
  user: v.string(),
  port: v.number(),
  fallbackPorts: v.array(v.number()),
  workRoot: v.string(),
  privateKeyPath: v.string(),
  knownHostsPath: v.string(),
  /** What the operator declared the host has (static.desktop, static.browser, static.code). */
  desktop: v.optional(v.boolean(), false),
  browser: v.optional(v.boolean(), false),
  code: v.optional(v.boolean(), false),
  keep: v.boolean(),
  createdAt: v.string(),
  /** A Windows host (`--target windows`): its mode; absent for POSIX hosts. */
  windowsMode: v.optional(v.picklist(['normal', 'wsl2'])),
  /** What `--target` said when it was claimed, so a later `--id` without it knows a Mac (absent in older claims). */
  target: v.optional(v.picklist(['linux', 'macos', 'windows'])),
})
type Claim = v.InferOutput<typeof Claim>

const claimsDir = () => join(stateDir(), 'claims')

function staticTarget(config: Config): Omit<Claim, 'keep' | 'createdAt'> {
  const host = config.static.host
  if (!host) {
    throw new CrabboxError('the ssh provider needs a host', {
      exit: 'usage',
      hint: 'pass --static-host HOST (and --static-user, --static-port) or set static.host in .crabbox.yaml',
    })
  }
  const id = config.static.id || `static_${normalizeSlug(host).replace(/-/g, '_')}`
  const key = ownSshKey(config.ssh.key)
  if (!key)
    throw new CrabboxError(`no SSH key for ${host}`, { exit: 'usage', hint: 'set ssh.key (or CRABBOX_SSH_KEY) to a key the host accepts' })
  const user = config.static.user || config.ssh.user
  // A Mac's `/` is read-only: without a configured work root, use the user's home folder.
  const unset = config.sources.workRoot === undefined
  const windowsMode = config.target === 'windows' ? config.windows.mode : undefined
  const defaultRoot =
    config.target === 'macos' && unset ? macosWorkRoot(user) : windowsMode && unset ? windowsWorkRoot(windowsMode) : config.workRoot
  return {
    id,
    slug: normalizeSlug(config.static.name || host),
    host,
    user,
    port: Number(config.static.port || 22),
    fallbackPorts: [],
    workRoot: config.static.workRoot || defaultRoot,
    privateKeyPath: key,
    knownHostsPath: join(leaseKeyDir(id), 'known_hosts'),
    desktop: config.static.desktop ?? false,
    browser: config.static.browser ?? false,
    code: config.static.code ?? false,
    ...(windowsMode && { windowsMode }),
    target: config.target,
  }
}

function toLease(claim: Claim): Lease {
  return {
    id: claim.id,
    slug: claim.slug,
    provider: 'ssh',
    ssh: {
      host: claim.host,
      port: claim.port,
      fallbackPorts: claim.fallbackPorts,
      user: claim.user,
      privateKeyPath: claim.privateKeyPath,
      knownHostsPath: claim.knownHostsPath,
    },
    workRoot: claim.workRoot,
    serverType: 'static',
    state: 'active',
    keep: claim.keep,
    // Where leaseOS looks for the runner's OS (a broker lease has it in its record).
    details: { createdAt: claim.createdAt, ...(claim.target && { target: claim.target, windowsMode: claim.windowsMode }) },
    capabilities: { desktop: claim.desktop, browser: claim.browser, code: claim.code },
    // An existing Windows host is not bootstrapped: it is checked for tar and git, like any static host.
    ...(claim.windowsMode && { windows: { mode: claim.windowsMode, bootstrap: false } }),
  }
}

function claims(): Claim[] {
  if (!existsSync(claimsDir())) return []
  return readdirSync(claimsDir())
    .map((name) => readLocalJson(join(claimsDir(), name), Claim))
    .filter((claim): claim is Claim => claim !== undefined)
}

/** An existing SSH host: nothing is created or destroyed, only claimed and unclaimed. */
export const sshProvider: DirectProvider = {
  name: 'ssh',
  readiness: 'static',

  async acquire(request: AcquireRequest, context: ProviderContext): Promise<Lease> {
    // The host authorizes the user's own key, not the per-lease one.
    const claim: Claim = { ...staticTarget(context.config), keep: request.keep, createdAt: new Date().toISOString() }
    mkdirSync(claimsDir(), { recursive: true, mode: 0o700 })
    mkdirSync(leaseKeyDir(claim.id), { recursive: true, mode: 0o700 })
    writeFileSync(join(claimsDir(), `${claim.id}.json`), JSON.stringify(claim, null, 2), { mode: 0o600 })
    return toLease(claim)
  },

  async resolve(idOrSlug: string, context: ProviderContext): Promise<Lease> {
    const known = claims()
    if (context.config.static.host && !known.some((c) => c.id === idOrSlug || c.slug === normalizeSlug(idOrSlug))) {
      const configured = staticTarget(context.config)
      if (configured.id === idOrSlug || configured.slug === normalizeSlug(idOrSlug))
        return toLease({ ...configured, keep: true, createdAt: new Date().toISOString() })
    }
    return toLease(pickByIdOrSlug(known, idOrSlug, 'ssh'))
  },

  async release(lease: Lease): Promise<void> {
    rmSync(join(claimsDir(), `${lease.id}.json`), { force: true })
  },

  async list(): Promise<Lease[]> {
    return claims().map(toLease)
  },
}
