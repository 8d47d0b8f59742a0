/**
 * Broker-side providers (static pool, Hetzner, AWS) behind one interface.
 * Calls here may be slow or fail: never call them inside a storage transaction.
 */
export interface MachineRequest {
  leaseId: string
  slug: string
  owner: string
  org: string
  profile: string
  class: string
  /** Explicit provider type; otherwise derived from `class`. */
  serverType?: string
  target: string
  market?: 'spot' | 'on-demand'
  /** OpenSSH public key line authorized for the lease's user. */
  sshPublicKey: string
  /** Provider-side key name, `crabbox-cbx-<12 hex>`. */
  providerKey: string
  keep: boolean
  ttlSeconds: number
  idleTimeoutSeconds: number
  expiresAt: string
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
  labels: Record<string, string>
}

export interface BrokerProvider {
  readonly name: string
  /** Creates (or adopts, when one already carries this lease's label) a machine. */
  create(request: MachineRequest): Promise<Machine>
  /** Deletes the lease's machine; resolves when it is gone, including already gone. */
  delete(machine: Pick<Machine, 'id' | 'name' | 'labels'> & { leaseId: string }): Promise<void>
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
