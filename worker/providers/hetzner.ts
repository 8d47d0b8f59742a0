import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { BOOTSTRAP_DEFAULTS, renderCloudInit } from '../../src/protocol/cloud-init.js'
import { candidateTypes, eurToUsdRate, explicitType, unsupportedTargetMessage } from '../../src/protocol/classes.js'
import { type CloudMachine, machineLabels, machineName, providerKeyName } from '../../src/protocol/cloud-machines.js'
import {
  createHetznerApi,
  createHetznerMachine,
  deleteHetznerMachine,
  findHetznerMachine,
  hetznerHourlyUSD,
  listHetznerMachines,
  waitForHetznerAddress,
  type HetznerOptions,
} from '../../src/protocol/hetzner-api.js'
import { setting } from '../env.js'
import { cloudFailure } from './cloud-errors.js'
import type { BrokerProvider, BrokerProviderContext, ListableProvider, Machine } from './types.js'

/**
 * Hetzner Cloud for the broker: one server per lease, bootstrapped by the
 * shared cloud-init, labelled with the lease so a lost create is adopted and
 * an expiry finds it. Secrets: `HETZNER_TOKEN` (or `CRABBOX_HETZNER_TOKEN`). Settings:
 * `CRABBOX_HETZNER_API_URL`, `CRABBOX_HETZNER_LOCATION`, `CRABBOX_HETZNER_IMAGE`,
 * `CRABBOX_EUR_TO_USD`.
 */

export function toBrokerMachine(machine: CloudMachine, hourlyUSD?: number): Machine {
  return {
    provider: machine.provider,
    id: machine.id,
    name: machine.name,
    host: machine.host ?? '',
    sshUser: BOOTSTRAP_DEFAULTS.sshUser,
    sshPort: BOOTSTRAP_DEFAULTS.sshPort,
    sshFallbackPorts: [...BOOTSTRAP_DEFAULTS.sshFallbackPorts],
    workRoot: BOOTSTRAP_DEFAULTS.workRoot,
    serverType: machine.serverType,
    ...(machine.region && machine.provider === 'aws' ? { region: machine.region } : {}),
    ...(machine.market ? { market: machine.market } : {}),
    ...(hourlyUSD !== undefined ? { hourlyUSD } : {}),
    labels: machine.labels,
  }
}

/** The shared bootstrap for a broker lease; a key that is not one OpenSSH line is the caller's error. */
export function brokerUserData(sshPublicKey: string): string {
  try {
    return renderCloudInit({ ...BOOTSTRAP_DEFAULTS, sshFallbackPorts: [...BOOTSTRAP_DEFAULTS.sshFallbackPorts], sshPublicKey })
  } catch (error) {
    throw new ApiError(400, ErrorCode.invalidRequest, `sshPublicKey: ${(error as Error).message}`)
  }
}

export function createHetznerBrokerProvider(context: BrokerProviderContext, overrides: Partial<HetznerOptions> = {}): BrokerProvider & ListableProvider {
  const env = context.env
  const location = setting(env, 'CRABBOX_HETZNER_LOCATION') ?? 'fsn1'
  const image = setting(env, 'CRABBOX_HETZNER_IMAGE') ?? 'ubuntu-24.04'
  const eurToUsd = eurToUsdRate(setting(env, 'CRABBOX_EUR_TO_USD'))
  const api = () => {
    // CRABBOX_HETZNER_TOKEN: `crabbox broker dev` forwards only CRABBOX_* variables to the Worker.
    const token = setting(env, 'HETZNER_TOKEN') ?? setting(env, 'HCLOUD_TOKEN') ?? setting(env, 'CRABBOX_HETZNER_TOKEN')
    if (!token) throw new ApiError(503, ErrorCode.providerFailed, 'this broker has no Hetzner token: set the HETZNER_TOKEN secret (wrangler secret put HETZNER_TOKEN)')
    return createHetznerApi({ token, apiUrl: setting(env, 'CRABBOX_HETZNER_API_URL'), fetch: (request) => context.fetch(request), ...overrides })
  }
  const price = async (serverType: string) => {
    try {
      return await hetznerHourlyUSD(api(), serverType, location, eurToUsd)
    } catch {
      return undefined
    }
  }

  return {
    name: 'hetzner',
    async create(request) {
      const refused = unsupportedTargetMessage('hetzner', request.target)
      if (refused) throw new ApiError(400, ErrorCode.unsupportedTarget, refused)
      const client = api()
      const types = candidateTypes('hetzner', request.class, explicitType(request.class, request.serverType))
      const keyName = request.providerKey || providerKeyName(request.leaseId)
      const userData = brokerUserData(request.sshPublicKey)
      try {
        const { machine } = await createHetznerMachine(client, {
          leaseId: request.leaseId,
          name: machineName(request.leaseId, request.slug),
          labels: machineLabels({ ...request, provider: 'hetzner', serverType: types[0], providerKey: keyName, createdAt: new Date() }),
          serverTypes: types,
          location,
          image,
          userData,
          sshPublicKey: request.sshPublicKey,
          keyName,
        })
        return toBrokerMachine(machine, await price(machine.serverType))
      } catch (error) {
        throw cloudFailure(error)
      }
    },
    async delete(machine) {
      try {
        await deleteHetznerMachine(api(), { id: machine.id || undefined, leaseId: machine.leaseId, keyName: machine.labels.provider_key || providerKeyName(machine.leaseId) })
      } catch (error) {
        throw cloudFailure(error)
      }
    },
    async describe(leaseId) {
      const client = api()
      const found = await findHetznerMachine(client, leaseId)
      if (!found) return undefined
      // Adopting after a lost create: the lease needs the address, which may still be coming.
      return toBrokerMachine(found.host ? found : await waitForHetznerAddress(client, found).catch(() => found))
    },
    price: (serverType) => price(candidateTypes('hetzner', serverType)[0]),
    async list() {
      return (await listHetznerMachines(api())).map((m) => toBrokerMachine(m))
    },
  }
}
