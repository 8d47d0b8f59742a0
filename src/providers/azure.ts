import {
  AZURE_WINDOWS_IMAGE,
  azureMachineState,
  createAzureMachine,
  deleteAzureMachine,
  findAzureMachine,
  listAzureMachines,
  touchAzureMachine,
} from '../cloud/azure-machines.js'
import { createAzureApi } from '../cloud/azure-api.js'
import { WINDOWS_ADMINS, windowsFirstStageCommand } from '../cloud/windows-bootstrap.js'
import type { Config } from '../config/schema.js'
import { azureCredentials } from './cloud/credentials.js'
import { directCloudProvider, type CloudBackend } from './cloud/direct.js'

/** Spot first unless `capacity.market` is on-demand; an `on-demand…` fallback adds an on-demand pass. */
export function azureMarkets(market: string, fallback: string): Array<'spot' | 'on-demand'> {
  if (market !== 'spot') return ['on-demand']
  return fallback.startsWith('on-demand') ? ['spot', 'on-demand'] : ['spot']
}

/**
 * Azure in direct mode: a service principal from the environment, machines in
 * `azure.resourceGroup` at `azure.location`, reached through a per-lease
 * public IP. Azure has no console read here, so host keys are trusted on first use.
 */
export function azureBackend(config: Config): CloudBackend {
  const api = createAzureApi({
    ...azureCredentials(config),
    endpoint: config.azure.endpoint,
    loginEndpoint: config.azure.loginEndpoint,
    ...(process.env.CRABBOX_AZURE_POLL_MS ? { pollIntervalMs: Number(process.env.CRABBOX_AZURE_POLL_MS) } : {}),
  })
  const group = config.azure.resourceGroup
  const deleteRetry = process.env.CRABBOX_AZURE_DELETE_RETRY_MS ? { delayMs: Number(process.env.CRABBOX_AZURE_DELETE_RETRY_MS) } : {}
  return {
    where: `${config.azure.location} (${group})`,
    create: (request) =>
      createAzureMachine(api, {
        leaseId: request.leaseId,
        name: request.name,
        labels: request.labels,
        sizes: request.types,
        markets: azureMarkets(config.capacity.market, config.capacity.fallback),
        // Windows: Windows Server 2022 unless azure.image was set; the admin crabbox's key is installed for.
        image: request.target === 'windows' && config.sources['azure.image'] === undefined ? AZURE_WINDOWS_IMAGE : config.azure.image,
        sshUser: request.target === 'windows' ? WINDOWS_ADMINS.azure : config.ssh.user,
        sshPublicKey: request.sshPublicKey,
        userData: request.userData,
        network: {
          location: config.azure.location,
          resourceGroup: group,
          vnet: config.azure.vnet,
          subnet: config.azure.subnet,
          nsg: config.azure.nsg,
          sshPorts: [config.ssh.port, ...config.ssh.fallbackPorts],
          sshCIDRs: config.azure.sshCIDRs,
        },
        ...(request.target === 'windows' && { windows: { bootstrapCommand: windowsFirstStageCommand(request.sshPublicKey) } }),
      }),
    find: (leaseId) => findAzureMachine(api, group, leaseId),
    list: () => listAzureMachines(api, group),
    delete: (target) => deleteAzureMachine(api, { group, leaseId: target.leaseId, name: target.id, ...deleteRetry }),
    touch: (target) => touchAzureMachine(api, group, target.id),
    state: (target) => azureMachineState(api, group, target.id),
  }
}

export const azureProvider = directCloudProvider('azure', azureBackend)
