import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { createAzureApi, type AzureOptions } from '../../src/cloud/azure-api.js'
import {
  AZURE_WINDOWS_IMAGE,
  createAzureMachine,
  deleteAzureMachine,
  findAzureMachine,
  listAzureMachines,
  type AzureNetworkSettings,
} from '../../src/cloud/azure-machines.js'
import { WINDOWS_ADMINS, windowsFirstStageCommand } from '../../src/cloud/windows-bootstrap.js'
import { setting, type Env } from '../env.js'
import { bootstrapSettings, cloudCreatePlan, cloudFailure, toBrokerMachine } from './cloud.js'
import type { BrokerProvider, BrokerProviderContext, ListableProvider } from './types.js'

/**
 * Azure for the broker: one VM (with its public IP and NIC) per lease in the
 * broker's resource group, bootstrapped by the shared cloud-init and tagged
 * with the lease so a lost create is adopted and an expiry finds it. Secrets:
 * `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
 * `AZURE_SUBSCRIPTION_ID` (or the same names with `CRABBOX_`). Settings:
 * `CRABBOX_AZURE_LOCATION`, `_RESOURCE_GROUP`, `_IMAGE`, `_VNET`, `_SUBNET`,
 * `_NSG`, `_SSH_CIDRS`, `_ENDPOINT`, `_LOGIN_ENDPOINT`, `_POLL_MS`, `CRABBOX_CAPACITY_MARKET`,
 * `CRABBOX_CAPACITY_FALLBACK`. Azure has no price lookup: spend caps use the static rate.
 */

const SECRETS = ['AZURE_TENANT_ID', 'AZURE_CLIENT_ID', 'AZURE_CLIENT_SECRET', 'AZURE_SUBSCRIPTION_ID'] as const

/** `AZURE_X`, else `CRABBOX_AZURE_X` (`crabbox broker dev` forwards only CRABBOX_* variables). */
const secret = (env: Env, name: (typeof SECRETS)[number]) => setting(env, name) ?? setting(env, `CRABBOX_${name}`)

/** `CRABBOX_AZURE_POLL_MS`: how often a long-running ARM operation is polled when Azure names no Retry-After (default 5 s). */
function pollInterval(env: Env): Partial<AzureOptions> {
  const ms = Number(setting(env, 'CRABBOX_AZURE_POLL_MS'))
  return Number.isInteger(ms) && ms > 0 ? { pollIntervalMs: ms } : {}
}

function azureApi(context: BrokerProviderContext, overrides: Partial<AzureOptions>) {
  const env = context.env
  const missing = SECRETS.filter((name) => !secret(env, name))
  if (missing.length)
    throw new ApiError(
      503,
      ErrorCode.providerFailed,
      `this broker has no Azure service principal: set the ${missing.join(', ')} secret${missing.length > 1 ? 's' : ''} (wrangler secret put ${missing[0]})`,
    )
  return createAzureApi({
    tenantId: secret(env, 'AZURE_TENANT_ID')!,
    clientId: secret(env, 'AZURE_CLIENT_ID')!,
    clientSecret: secret(env, 'AZURE_CLIENT_SECRET')!,
    subscriptionId: secret(env, 'AZURE_SUBSCRIPTION_ID')!,
    endpoint: setting(env, 'CRABBOX_AZURE_ENDPOINT'),
    loginEndpoint: setting(env, 'CRABBOX_AZURE_LOGIN_ENDPOINT'),
    fetch: (request) => context.fetch(request),
    ...pollInterval(env),
    ...overrides,
  })
}

export function createAzureBrokerProvider(
  context: BrokerProviderContext,
  overrides: Partial<AzureOptions> = {},
): BrokerProvider & ListableProvider {
  const env = context.env
  const group = setting(env, 'CRABBOX_AZURE_RESOURCE_GROUP') ?? 'crabbox-leases'
  const location = setting(env, 'CRABBOX_AZURE_LOCATION') ?? 'eastus'
  const image = setting(env, 'CRABBOX_AZURE_IMAGE') ?? 'Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest'
  const fallback = setting(env, 'CRABBOX_CAPACITY_FALLBACK') ?? 'on-demand-after-120s'
  const network = (where: string, ports: string[]): AzureNetworkSettings => ({
    location: where,
    resourceGroup: group,
    vnet: setting(env, 'CRABBOX_AZURE_VNET') ?? 'crabbox-vnet',
    subnet: setting(env, 'CRABBOX_AZURE_SUBNET') ?? 'crabbox-subnet',
    nsg: setting(env, 'CRABBOX_AZURE_NSG') ?? 'crabbox-nsg',
    sshPorts: ports,
    sshCIDRs: (setting(env, 'CRABBOX_AZURE_SSH_CIDRS') ?? '')
      .split(',')
      .map((cidr) => cidr.trim())
      .filter(Boolean),
  })

  return {
    name: 'azure',
    bootstraps: true,
    async create(request) {
      const plan = cloudCreatePlan('azure', request)
      const boot = bootstrapSettings(request)
      // Windows: the operator's CRABBOX_AZURE_IMAGE is a Linux image; the admin gets the key from the extension.
      const windows = request.target === 'windows'
      const market = request.market ?? (setting(env, 'CRABBOX_CAPACITY_MARKET') === 'on-demand' ? 'on-demand' : 'spot')
      const onDemandPass = (request.placement?.fallback ?? fallback).startsWith('on-demand')
      try {
        const { machine } = await createAzureMachine(azureApi(context, overrides), {
          leaseId: request.leaseId,
          name: plan.name,
          labels: plan.labels,
          sizes: plan.types,
          markets: market === 'spot' ? (onDemandPass ? ['spot', 'on-demand'] : ['spot']) : ['on-demand'],
          image: request.placement?.image ?? (windows ? AZURE_WINDOWS_IMAGE : image),
          sshUser: windows ? WINDOWS_ADMINS.azure : boot.sshUser,
          sshPublicKey: request.sshPublicKey,
          userData: plan.userData,
          network: network(request.placement?.location ?? location, [boot.sshPort, ...boot.sshFallbackPorts]),
          ...(windows && { windows: { bootstrapCommand: windowsFirstStageCommand(request.sshPublicKey) } }),
        })
        return toBrokerMachine(machine)
      } catch (error) {
        throw cloudFailure(error)
      }
    },
    async delete(machine) {
      try {
        await deleteAzureMachine(azureApi(context, overrides), { group, leaseId: machine.leaseId, name: machine.id || undefined })
      } catch (error) {
        throw cloudFailure(error)
      }
    },
    async describe(leaseId) {
      const found = await findAzureMachine(azureApi(context, overrides), group, leaseId)
      return found ? toBrokerMachine(found) : undefined
    },
    price: async () => undefined,
    async list() {
      return (await listAzureMachines(azureApi(context, overrides), group)).map((m) => toBrokerMachine(m))
    },
  }
}
