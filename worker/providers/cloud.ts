import { BOOTSTRAP_DEFAULTS, renderCloudInit, type BootstrapOptions } from '../../src/cloud/cloud-init.js'
import { candidateTypes, explicitType, unsupportedTargetMessage, type CloudProviderName } from '../../src/cloud/classes.js'
import { CloudApiError, type CloudMachine, machineLabels, machineName, providerKeyName } from '../../src/cloud/cloud-machines.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { MAC_INSTANCE_TYPE, MACOS_DEFAULTS, renderMacUserData } from '../../src/cloud/macos-bootstrap.js'
import { renderEc2LaunchUserData, WINDOWS_ADMINS, WINDOWS_DEFAULTS } from '../../src/cloud/windows-bootstrap.js'
import type { Machine, MachineRequest } from './types.js'

/**
 * What the broker's cloud providers (hetzner.ts, aws.ts, azure.ts) share: the plan for
 * one lease's machine, the lease view of a cloud machine, and how a cloud
 * failure reaches the caller.
 */

export interface CloudCreatePlan {
  /** Server/instance types to try, in order. */
  types: string[]
  /** Provider-side key name (`crabbox-cbx-<12 hex>` unless the request named one). */
  keyName: string
  /** The shared cloud-init bootstrap with the lease key. */
  userData: string
  name: string
  labels: Record<string, string>
}

/**
 * Everything a create needs before the first provider call; refuses targets the
 * provider cannot run and keys that are not one OpenSSH line (400s, nothing made).
 */
export function cloudCreatePlan(provider: CloudProviderName, request: MachineRequest, now = new Date()): CloudCreatePlan {
  const refused = unsupportedTargetMessage(provider, request.target)
  if (refused) throw new ApiError(400, ErrorCode.unsupportedTarget, refused)
  const types = machineTypes(provider, request)
  const keyName = request.providerKey || providerKeyName(request.leaseId)
  let userData: string
  try {
    // Windows: EC2Launch turns OpenSSH on with the lease key; the CLI bootstraps the rest over SSH.
    // macOS: the AMI installs the lease key (the key pair) for ec2-user; the script makes the work root and crabbox-ready.
    userData =
      request.target === 'windows'
        ? renderEc2LaunchUserData(request.sshPublicKey)
        : request.target === 'macos'
          ? renderMacUserData({ ...MACOS_DEFAULTS, ...macWorkRoot(request), desktop: request.bootstrap?.desktop })
          : renderCloudInit({ ...bootstrapSettings(request), sshPublicKey: request.sshPublicKey })
  } catch (error) {
    const message = (error as Error).message
    const named = message.startsWith('sshPublicKey') || message.startsWith('tailscale') || message.startsWith('workRoot')
    throw new ApiError(400, ErrorCode.invalidRequest, named ? message : `sshPublicKey: ${message}`)
  }
  return {
    types,
    keyName,
    userData,
    name: machineName(request.leaseId, request.slug),
    labels: machineLabels({
      ...request,
      ...capabilityLabels(request.bootstrap),
      provider,
      serverType: types[0],
      providerKey: keyName,
      createdAt: now,
    }),
  }
}

const macWorkRoot = (request: MachineRequest) => (request.bootstrap?.workRoot ? { workRoot: request.bootstrap.workRoot } : {})

const capabilityLabels = (ask: MachineRequest['bootstrap']) => ({
  desktop: ask?.desktop,
  browser: ask?.browser,
  code: ask?.code,
  // The node's name and exit node only: the key never goes near a label.
  tailscale: ask?.tailscale && { hostname: ask.tailscale.hostname, exitNode: ask.tailscale.exitNode },
})

/** The SSH user, ports, work root and capabilities the machine is bootstrapped with: the lease's asks over the defaults. */
export function bootstrapSettings(request: MachineRequest): Omit<BootstrapOptions, 'sshPublicKey'> {
  const ask = request.bootstrap ?? {}
  return {
    sshUser: ask.sshUser ?? BOOTSTRAP_DEFAULTS.sshUser,
    sshPort: ask.sshPort ?? BOOTSTRAP_DEFAULTS.sshPort,
    sshFallbackPorts: [...(ask.sshFallbackPorts ?? BOOTSTRAP_DEFAULTS.sshFallbackPorts)],
    workRoot: ask.workRoot ?? BOOTSTRAP_DEFAULTS.workRoot,
    ...(ask.desktop ? { desktop: true } : {}),
    ...(ask.browser ? { browser: true } : {}),
    ...(ask.code ? { code: true } : {}),
    ...(ask.tailscale ? { tailscale: ask.tailscale } : {}),
  }
}

/**
 * Types to try: an explicit type alone; with `serverTypeExplicit: false` that type
 * first and then the class's; else the class's candidates.
 */
function machineTypes(provider: CloudProviderName, request: MachineRequest): string[] {
  const explicit = explicitType(request.class, request.serverType)
  // A Mac is the one type its dedicated host takes: mac2.metal unless the lease names another.
  if (request.target === 'macos') return [explicit ?? MAC_INSTANCE_TYPE]
  if (explicit && request.serverTypeExplicit === false) return [...new Set([explicit, ...candidateTypes(provider, request.class)])]
  return candidateTypes(provider, request.class, explicit)
}

/** A cloud machine as a lease sees it: the bootstrap's user, ports and work root (Windows: its admin and work root; macOS: ec2-user on 22). */
export function toBrokerMachine(machine: CloudMachine, hourlyUSD?: number): Machine {
  const windows = machine.labels.target === 'windows' ? windowsBootstrap(machine.provider, machine.labels.windows_mode) : undefined
  const mac = machine.labels.target === 'macos'
  return {
    provider: machine.provider,
    id: machine.id,
    name: machine.name,
    host: machine.host ?? '',
    sshUser: mac ? MACOS_DEFAULTS.sshUser : (windows?.sshUser ?? BOOTSTRAP_DEFAULTS.sshUser),
    sshPort: mac ? MACOS_DEFAULTS.sshPort : BOOTSTRAP_DEFAULTS.sshPort,
    sshFallbackPorts: mac ? [] : [...BOOTSTRAP_DEFAULTS.sshFallbackPorts],
    workRoot: mac ? MACOS_DEFAULTS.workRoot : (windows?.workRoot ?? BOOTSTRAP_DEFAULTS.workRoot),
    serverType: machine.serverType,
    ...(machine.region && machine.provider !== 'hetzner' ? { region: machine.region } : {}),
    ...(machine.market ? { market: machine.market } : {}),
    ...(hourlyUSD !== undefined ? { hourlyUSD } : {}),
    labels: machine.labels,
  }
}

/** A Windows runner's user and work root (native `C:\crabbox`, WSL2 `/work/crabbox` in the distribution). */
export function windowsBootstrap(provider: string, mode: string | undefined): { sshUser: string; workRoot: string } {
  return {
    sshUser: provider === 'azure' ? WINDOWS_ADMINS.azure : WINDOWS_ADMINS.aws,
    workRoot: mode === 'wsl2' ? WINDOWS_DEFAULTS.wslWorkRoot : WINDOWS_DEFAULTS.workRoot,
  }
}

/**
 * Maps a cloud API failure for the lease flow. A definite answer (no capacity,
 * bad credentials, bad input) becomes an ApiError the caller sees; an unknown
 * outcome (timeout, 5xx, lost reply) stays a plain error so the broker looks
 * the machine up by its lease label before giving up.
 */
export function cloudFailure(error: unknown): unknown {
  if (!(error instanceof CloudApiError)) return error
  const name = { aws: 'AWS', hetzner: 'Hetzner', azure: 'Azure' }[error.provider]
  switch (error.category) {
    case 'capacity':
    case 'quota':
    case 'unsupported':
      return new ApiError(503, ErrorCode.noCapacity, error.message)
    case 'auth':
      return new ApiError(502, ErrorCode.providerFailed, `${name} rejected the broker's credentials: ${error.message}`)
    case 'fatal':
    case 'conflict':
    case 'not_found':
      return new ApiError(502, ErrorCode.providerFailed, error.message)
    default:
      return error
  }
}
