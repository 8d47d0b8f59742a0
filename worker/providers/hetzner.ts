import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { candidateTypes, eurToUsdRate } from '../../src/cloud/classes.js'
import { providerKeyName } from '../../src/cloud/cloud-machines.js'
import {
  createHetznerApi,
  createHetznerMachine,
  deleteHetznerMachine,
  findHetznerMachine,
  hetznerHourlyUSD,
  listHetznerMachines,
  waitForHetznerAddress,
  type HetznerOptions,
} from '../../src/cloud/hetzner-api.js'
import { setting } from '../env.js'
import { cloudCreatePlan, cloudFailure, toBrokerMachine } from './cloud.js'
import type { BrokerProvider, BrokerProviderContext, ListableProvider } from './types.js'

/**
 * Hetzner Cloud for the broker: one server per lease, bootstrapped by the
 * shared cloud-init, labelled with the lease so a lost create is adopted and
 * an expiry finds it. Secrets: `HETZNER_TOKEN` (or `CRABBOX_HETZNER_TOKEN`). Settings:
 * `CRABBOX_HETZNER_API_URL`, `CRABBOX_HETZNER_LOCATION`, `CRABBOX_HETZNER_IMAGE`,
 * `CRABBOX_EUR_TO_USD`.
 */

export function createHetznerBrokerProvider(
  context: BrokerProviderContext,
  overrides: Partial<HetznerOptions> = {},
): BrokerProvider & ListableProvider {
  const env = context.env
  const location = setting(env, 'CRABBOX_HETZNER_LOCATION') ?? 'fsn1'
  const image = setting(env, 'CRABBOX_HETZNER_IMAGE') ?? 'ubuntu-24.04'
  const eurToUsd = eurToUsdRate(setting(env, 'CRABBOX_EUR_TO_USD'))
  const api = () => {
    // CRABBOX_HETZNER_TOKEN: `crabbox broker dev` forwards only CRABBOX_* variables to the Worker.
    const token = setting(env, 'HETZNER_TOKEN') ?? setting(env, 'HCLOUD_TOKEN') ?? setting(env, 'CRABBOX_HETZNER_TOKEN')
    if (!token)
      throw new ApiError(
        503,
        ErrorCode.providerFailed,
        'this broker has no Hetzner token: set the HETZNER_TOKEN secret (wrangler secret put HETZNER_TOKEN)',
      )
    return createHetznerApi({
      token,
      apiUrl: setting(env, 'CRABBOX_HETZNER_API_URL'),
      fetch: (request) => context.fetch(request),
      ...overrides,
    })
  }
  const price = async (serverType: string, where = location) => {
    try {
      return await hetznerHourlyUSD(api(), serverType, where, eurToUsd)
    } catch {
      return undefined
    }
  }

  return {
    name: 'hetzner',
    bootstraps: true,
    async create(request) {
      const plan = cloudCreatePlan('hetzner', request)
      const client = api()
      try {
        const { machine } = await createHetznerMachine(client, {
          leaseId: request.leaseId,
          name: plan.name,
          labels: plan.labels,
          serverTypes: plan.types,
          location: request.placement?.location ?? location,
          image: request.placement?.image ?? image,
          userData: plan.userData,
          sshPublicKey: request.sshPublicKey,
          keyName: plan.keyName,
        })
        return toBrokerMachine(machine, await price(machine.serverType, request.placement?.location))
      } catch (error) {
        throw cloudFailure(error)
      }
    },
    async delete(machine) {
      try {
        await deleteHetznerMachine(api(), {
          id: machine.id || undefined,
          leaseId: machine.leaseId,
          keyName: machine.labels.provider_key || providerKeyName(machine.leaseId),
        })
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
