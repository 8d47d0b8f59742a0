import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import type { LeaseRequest } from '../../src/protocol/leases.js'
import { TARGET_ALIASES, WINDOWS_MODE_ALIASES } from '../../src/protocol/targets.js'
import { BROKER_MACOS_CLOUDS, BROKER_WINDOWS_CLOUDS, whoCanRun } from '../../src/cloud/targets.js'
import { MACOS_DEFAULTS } from '../../src/cloud/macos-bootstrap.js'

/**
 * What a lease request asks beyond the defaults, checked before anything is
 * reserved or made: every field is either honoured by the chosen provider or
 * refused with a 400 that names it. Nothing is dropped silently.
 *
 * Provider by provider (the provider itself applies what is honoured, and
 * checks what only it can, such as AWS regions against the broker's list):
 *
 * | field | static | hetzner | aws |
 * | --- | --- | --- | --- |
 * | `target`, `targetOS` | linux | linux | linux, windows, macos (with `awsMacHostID`) |
 * | `windowsMode` | normal (only meaningful with windows) | same | same |
 * | `desktop`, `browser`, `code` | a pool host that declares it | installed by cloud-init | installed by cloud-init |
 * | `network` | auto, public | auto, public, tailscale (with `tailscale`) | same as hetzner |
 * | `tailscale`, `tailscaleTags`, `tailscaleHostname`, `tailscaleExitNode*` | refused | joined by cloud-init (tailscale.ts) | same |
 * | `profile`, `class`, `slug` | recorded | recorded, labelled | recorded, tagged |
 * | `serverType` | `ssh` only | the one type tried | the one type tried |
 * | `serverTypeExplicit` | refused | false: the class's types follow | same |
 * | `location`, `image` | refused | server location, image | refused (use `awsRegion`, `awsAMI`) |
 * | `awsRegion`, `capacity.regions` | refused | refused | regions tried, in order, from the broker's regions |
 * | `awsAMI`, `awsSGID`, `awsSubnetID`, `awsRootGB` | refused | refused | launch settings |
 * | `awsProfile` | refused (only the operator picks an instance role) | same | same |
 * | `awsSSHCIDRs` | refused | refused | refused (the broker's security group is shared) |
 * | `capacity.market` | refused | on-demand only | spot or on-demand |
 * | `capacity.fallback` | refused | refused | the on-demand retry |
 * | `capacity.strategy` | refused | refused | most-available only |
 * | `capacity.availabilityZones` | refused when not empty | same | same |
 * | `capacity.hints` | false only (no hints are made) | same | same |
 * | `sshUser`, `sshPort`, `sshFallbackPorts`, `workRoot` | picks a pool host that has them | bootstrapped | bootstrapped (ports: see aws.ts) |
 * | `awsMacHostID` | refused | refused | the dedicated host of a macOS lease (refused without target macos) |
 *
 * Azure follows the AWS column, except: `azureLocation` and `azureImage` are its
 * location and image URN (the `aws*` fields, `location`, `image`, `capacity.regions`
 * and `capacity.strategy` are refused), and `capacity.fallback` allows its regular-priority pass.
 */

/** The request's settled target, Windows mode and network, for the record. */
export interface LeaseAsk {
  target: string
  windowsMode?: string
  network?: string
}

const refuse = (message: string, code: string = ErrorCode.invalidRequest) => new ApiError(400, code, message)

/** Placement fields only some providers honour, and who honours each. */
const PLACEMENT: ReadonlyArray<readonly [field: string, honouredBy: readonly string[], read: (r: LeaseRequest) => unknown]> = [
  ['location', ['hetzner'], (r) => r.location],
  ['image', ['hetzner'], (r) => r.image],
  ['awsRegion', ['aws'], (r) => r.awsRegion],
  ['capacity.regions', ['aws'], (r) => (r.capacity?.regions?.length ? r.capacity.regions : undefined)],
  ['awsAMI', ['aws'], (r) => r.awsAMI],
  ['awsSGID', ['aws'], (r) => r.awsSGID],
  ['awsSubnetID', ['aws'], (r) => r.awsSubnetID],
  ['awsRootGB', ['aws'], (r) => r.awsRootGB],
  ['azureLocation', ['azure'], (r) => r.azureLocation],
  ['azureImage', ['azure'], (r) => r.azureImage],
  ['capacity.fallback', ['aws', 'azure'], (r) => r.capacity?.fallback],
  ['capacity.strategy', ['aws'], (r) => r.capacity?.strategy],
  ['serverTypeExplicit', ['hetzner', 'aws', 'azure'], (r) => r.serverTypeExplicit],
  ['awsMacHostID', ['aws'], (r) => r.awsMacHostID],
]

const PROVIDER_TITLES: Record<string, string> = { static: 'the static pool', hetzner: 'Hetzner', aws: 'AWS', azure: 'Azure' }
const title = (provider: string) => PROVIDER_TITLES[provider] ?? provider

/** The settled target; anything but Linux is refused unless the provider makes it here (Windows: `BROKER_WINDOWS_CLOUDS`). */
function askTarget(request: LeaseRequest, provider: string): Pick<LeaseAsk, 'target' | 'windowsMode'> {
  const asked = request.target ?? request.targetOS
  const target = TARGET_ALIASES[(asked ?? 'linux').trim().toLowerCase()]
  if (!target)
    throw refuse(
      `target ${JSON.stringify(asked)} is not a target: use linux, macos or windows (aliases ubuntu, mac, darwin, osx, win)`,
      ErrorCode.unsupportedTarget,
    )
  const modeAsked = request.windowsMode?.trim()
  const windowsMode = modeAsked ? WINDOWS_MODE_ALIASES[modeAsked.toLowerCase()] : undefined
  if (modeAsked && !windowsMode) throw refuse(`windowsMode ${JSON.stringify(modeAsked)} is not a Windows mode: use normal or wsl2`)
  if (windowsMode === 'wsl2' && target !== 'windows') throw refuse(`windowsMode wsl2 needs target windows, not ${target}`)
  if (target === 'windows' && BROKER_WINDOWS_CLOUDS.has(provider)) {
    const asked = (['desktop', 'browser', 'code'] as const).filter((capability) => request[capability])
    if (asked.length)
      throw refuse(
        `${asked.join(', ')}: crabbox installs no desktop, browser or code-server on Windows runners; ask without ${asked.join(', ')}`,
        ErrorCode.unsupportedCapability,
      )
    return { target, windowsMode: windowsMode ?? 'normal' }
  }
  if (target === 'macos' && BROKER_MACOS_CLOUDS.has(provider)) {
    askMac(request)
    return { target }
  }
  if (target !== 'linux')
    throw refuse(
      `target ${target} is not supported by ${title(provider)} on this broker; ${whoCanRun(target)}; use linux, or one of those`,
      ErrorCode.unsupportedTarget,
    )
  return { target }
}

/**
 * A macOS lease on AWS: `mac2.metal` (or the type asked) on the dedicated host the
 * request names, on-demand, reached as `ec2-user` on port 22. A desktop is Screen
 * Sharing; a browser, code-server and a tailnet are not set up on macOS.
 */
function askMac(request: LeaseRequest): void {
  if (!request.awsMacHostID?.trim())
    throw refuse(
      'target macos needs awsMacHostID: macOS instances run on a dedicated mac2 host; allocate one in the region and pass its h-… ID (aws.macHostId)',
      ErrorCode.unsupportedTarget,
    )
  const asked = (['browser', 'code', 'tailscale'] as const).filter((capability) => request[capability])
  if (asked.length)
    throw refuse(
      `${asked.join(', ')}: crabbox sets up no browser, code-server or tailnet on macOS runners; ask without ${asked.join(', ')}`,
      ErrorCode.unsupportedCapability,
    )
  if (request.capacity?.market === 'spot')
    throw refuse('capacity.market spot: macOS instances on a dedicated host are on-demand only; use on-demand or leave it out')
  const fixed = [
    ['sshUser', request.sshUser, MACOS_DEFAULTS.sshUser],
    ['sshPort', request.sshPort, MACOS_DEFAULTS.sshPort],
  ] as const
  for (const [field, value, only] of fixed)
    if (value !== undefined && value !== only) throw refuse(`${field}: macOS runners are reached on ${only} only; leave it out`)
  if (request.sshFallbackPorts?.length) throw refuse('sshFallbackPorts: macOS runners keep sshd on port 22 only; leave it out')
}

/** Providers that can give a lease a desktop, a browser and code-server (the static pool only on hosts that declare them). */
const CAPABLE = new Set(['hetzner', 'aws', 'azure', 'static'])

/** A capability its provider cannot give is refused, never recorded as granted. */
function askCapabilities(request: LeaseRequest, provider: string): void {
  if (CAPABLE.has(provider)) return
  for (const capability of ['desktop', 'browser', 'code'] as const)
    if (request[capability])
      throw refuse(
        `${capability}: ${title(provider)} leases cannot have ${capability === 'code' ? 'code-server' : `a ${capability}`} (this broker installs it on Hetzner, AWS and Azure only); ask without ${capability}`,
        ErrorCode.unsupportedCapability,
      )
}

/** Providers whose machines crabbox bootstraps, so cloud-init can join them to the tailnet. */
const JOINS_TAILNET = new Set(['hetzner', 'aws'])

function askNetwork(request: LeaseRequest, provider: string): string | undefined {
  if (request.tailscale && !JOINS_TAILNET.has(provider))
    throw refuse(
      `tailscale: ${title(provider)} leases cannot join a tailnet (this broker joins Hetzner and AWS machines only); ask without tailscale`,
      ErrorCode.unsupportedCapability,
    )
  if (!request.tailscale)
    for (const field of ['tailscaleTags', 'tailscaleHostname', 'tailscaleExitNode', 'tailscaleExitNodeAllowLanAccess'] as const)
      if (request[field] !== undefined && request[field] !== false) throw refuse(`${field} needs tailscale: true`)
  if (request.tailscaleExitNodeAllowLanAccess && !request.tailscaleExitNode?.trim())
    throw refuse('tailscaleExitNodeAllowLanAccess needs tailscaleExitNode: LAN access is a setting of the exit node')
  if (request.network === 'tailscale' && !request.tailscale)
    throw refuse('network tailscale needs tailscale: true: without it the lease is reached at its public address; use auto or public')
  return request.network
}

function askCapacity(request: LeaseRequest, provider: string): void {
  const capacity = request.capacity ?? {}
  if (capacity.availabilityZones?.length)
    throw refuse(
      'capacity.availabilityZones: this broker does not pin availability zones; pass awsSubnetID for a subnet in the zone you want',
    )
  if (capacity.hints) throw refuse('capacity.hints: this broker gives no capacity hints; send false or leave it out')
  if (capacity.market && provider !== 'aws' && provider !== 'azure' && !(provider === 'hetzner' && capacity.market === 'on-demand'))
    throw refuse(
      provider === 'hetzner'
        ? 'capacity.market spot: Hetzner has no spot market; use on-demand or leave it out'
        : `capacity.market: ${title(provider)} has no capacity markets; leave it out`,
    )
  if (capacity.strategy && provider === 'aws' && capacity.strategy !== 'most-available')
    throw refuse(
      `capacity.strategy ${JSON.stringify(capacity.strategy)}: this broker has one strategy, most-available (first candidate with capacity)`,
    )
}

/**
 * Checks the request against the chosen provider (see the table above); throws a
 * 400 naming the first field it will not honour.
 */
export function checkLeaseAsk(request: LeaseRequest, provider: string): LeaseAsk {
  const target = askTarget(request, provider)
  askCapabilities(request, provider)
  const network = askNetwork(request, provider)
  for (const [field, honouredBy, read] of PLACEMENT)
    if (read(request) !== undefined && !honouredBy.includes(provider))
      throw refuse(`${field}: ${title(provider)} leases do not take ${field}${hintFor(field, provider)}`)
  if (request.awsMacHostID !== undefined && target.target !== 'macos')
    throw refuse(`awsMacHostID: only macOS leases run on a dedicated host; ask with target macos, or leave it out`)
  if (request.awsProfile !== undefined)
    throw refuse('awsProfile: only the broker operator picks the instance profile for runners (CRABBOX_AWS_INSTANCE_PROFILE)')
  if (request.awsSSHCIDRs?.length)
    throw refuse(
      "awsSSHCIDRs: the broker's security group is shared by all its leases; its SSH ranges come from CRABBOX_AWS_SSH_CIDRS, or pass awsSGID for a group of your own",
    )
  askCapacity(request, provider)
  if (provider === 'static' && request.serverType !== undefined && request.serverType !== 'ssh')
    throw refuse(`serverType ${JSON.stringify(request.serverType)}: static pool hosts have no server types; leave it out`)
  if (request.serverTypeExplicit && !request.serverType) throw refuse('serverTypeExplicit needs serverType')
  return { ...target, ...(network ? { network } : {}) }
}

function hintFor(field: string, provider: string): string {
  if (provider === 'aws' && field === 'location') return '; use awsRegion'
  if (provider === 'aws' && field === 'image') return '; use awsAMI'
  if (provider === 'hetzner' && field === 'awsRegion') return '; use location'
  if (provider === 'azure' && field === 'location') return '; use azureLocation'
  if (provider === 'azure' && field === 'image') return '; use azureImage'
  return ''
}
