/**
 * Broker-side providers (static pool, Hetzner, AWS) behind one interface.
 * Calls here may be slow or fail: never call them inside a storage transaction.
 */
import type { LabelInput } from '../../src/cloud/cloud-machines.js'
import type { TailscaleBootstrap } from '../../src/cloud/tailscale-init.js'

/**
 * Where and from what a lease asked its machine to be made (lease request
 * fields `location`, `image`, `awsRegion`, `capacity.regions`, `awsAMI`, `awsSGID`,
 * `awsSubnetID`, `awsRootGB`, `capacity.fallback`, `awsMacHostID`); unset fields fall back to the
 * broker's settings. AWS regions are only ever a choice among the broker's own
 * regions, so it can always find and delete what it made.
 */
export interface Placement {
  location?: string
  image?: string
  /** AWS: the region to try first. */
  region?: string
  /** AWS: the regions to try, in order. */
  regions?: string[]
  ami?: string
  securityGroupId?: string
  subnetId?: string
  rootGB?: number
  fallback?: string
  /** AWS macOS: the dedicated host (`awsMacHostID`) the instance is placed on. */
  macHostId?: string
}

/** What a provider gets for one lease: the label inputs (src/cloud/cloud-machines.ts) plus the key and asks. */
export interface MachineRequest extends Omit<LabelInput, 'provider' | 'serverType' | 'market' | 'createdAt'> {
  /** Explicit provider type; otherwise derived from `class`. */
  serverType?: string
  /** False: `serverType` is tried first, then the class's types. Otherwise only `serverType` is tried. */
  serverTypeExplicit?: boolean
  market?: 'spot' | 'on-demand'
  /** OpenSSH public key line authorized for the lease's user. */
  sshPublicKey: string
  expiresAt: string
  placement?: Placement
  /** How the lease asked to reach the machine; unset fields are the provider's defaults. */
  bootstrap?: BootstrapAsk
}

/**
 * SSH user, ports and work root a lease asked for (`sshUser`, `sshPort`, `sshFallbackPorts`, `workRoot`),
 * and the capabilities (`desktop`, `browser`, `code`): clouds install them, the static pool picks a host that has them.
 */
export interface BootstrapAsk {
  sshUser?: string
  sshPort?: string
  sshFallbackPorts?: string[]
  workRoot?: string
  desktop?: boolean
  browser?: boolean
  code?: boolean
  /** Join the tailnet with this one-off key (worker/fleet/tailscale.ts); never stored or logged. */
  tailscale?: TailscaleBootstrap
}

export interface Machine {
  provider: string
  /** Provider's own ID for the machine (server ID, instance ID, pool host name). */
  id: string
  name: string
  host: string
  sshUser: string
  sshPort: string
  sshFallbackPorts: string[]
  workRoot: string
  serverType: string
  region?: string
  market?: 'spot' | 'on-demand'
  /** USD per hour when known. */
  hourlyUSD?: number
  /** The machine's SSH host keys (`type base64`) when the provider knows them; lessees pin them. */
  hostKeys?: string[]
  labels: Record<string, string>
}

export interface BrokerProvider {
  readonly name: string
  /**
   * True when the provider makes machines with the lease's SSH user, ports and
   * work root (cloud-init): a machine adopted after a lost create reports the
   * defaults, so the lease keeps what it asked for.
   */
  readonly bootstraps?: boolean
  /** Creates (or adopts, when one already carries this lease's label) a machine. */
  create(request: MachineRequest): Promise<Machine>
  /** Deletes the lease's machine; resolves when it is gone, including already gone. */
  delete(machine: Pick<Machine, 'id' | 'name' | 'labels' | 'region'> & { leaseId: string }): Promise<void>
  /** Finds the machine that carries this lease's label, if any. */
  describe(leaseId: string): Promise<Machine | undefined>
  /** Worst-case USD per hour for a class/type, for spend caps. */
  price(serverType: string): Promise<number | undefined>
}

/** What a provider factory receives from the broker (see worker/providers/registry.ts). */
export interface BrokerProviderContext {
  env: import('../env.js').Env
  /** The Fleet object's storage, for providers that keep state (the static pool's claims). */
  storage: import('../fleet/storage.js').FleetStorage
  /** Outbound fetch; cloud providers take their API base URL from env so tests point at fakes. */
  fetch: typeof fetch
}

export type BrokerProviderFactory = (context: BrokerProviderContext) => BrokerProvider

/** Optional capability: list the provider's crabbox machines for `GET /v1/pool`. */
export interface ListableProvider {
  list(): Promise<Machine[]>
}

/** A machine image as the cloud reports it. */
export interface CloudImage {
  id: string
  name: string
  /** `pending`, `available`, `failed`, … */
  state: string
  region: string
}

/** Optional capability: bake images of lease machines and read them back (AWS). */
export interface ImageProvider {
  /** The region images are looked up in when the broker has no record of one. */
  readonly imageRegion: string
  createImage(
    machine: { id: string; region?: string; leaseId: string },
    input: { name: string; noReboot: boolean; tags: Record<string, string> },
  ): Promise<CloudImage>
  describeImage(id: string, region: string): Promise<CloudImage | undefined>
}
