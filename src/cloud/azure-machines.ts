/**
 * Azure lease machines on top of the ARM client: the shared network ensured
 * (only ever changing what is tagged `managed_by=crabbox`), one public IP,
 * NIC and VM per lease, size and market fallback, and a delete that waits out
 * dependency errors until ARM confirms every piece is gone.
 */
import {
  type AzureApi,
  apiVersions as V,
  computePath,
  groupPath,
  isDependencyError,
  type Json,
  networkPath,
  props,
  tagsOf,
  toAzureMachine,
} from './azure-api.js'
import { CloudApiError, type CloudMachine, touchedLabels, withRetries } from './cloud-machines.js'
import type { CreatedMachine, ProvisioningAttempt } from './hetzner-api.js'

export interface AzureNetworkSettings {
  location: string
  resourceGroup: string
  vnet: string
  subnet: string
  nsg: string
  sshPorts: string[]
  sshCIDRs: string[]
}

const MANAGED = { managed_by: 'crabbox' }
const RULE_PREFIX = 'crabbox-ssh-'
const retry = { attempts: 5, delayMs: 2_000 }

function notManaged(kind: string, name: string): CloudApiError {
  return new CloudApiError(
    'azure',
    'fatal',
    'not_managed',
    `Azure ${kind} ${name} exists but is not tagged managed_by=crabbox; crabbox does not change resources it did not create (pick another azure.* name)`,
  )
}

/** Creates `path` when missing; refuses to touch it when it exists without the crabbox tag. */
async function ensureManaged(api: AzureApi, kind: string, path: string, version: string, body: Json): Promise<Json> {
  const existing = await api.get(path, version)
  if (!existing) return api.put(path, version, { ...body, tags: MANAGED })
  if (tagsOf(existing).managed_by !== 'crabbox') throw notManaged(kind, String(existing.name ?? path.split('/').pop()))
  return existing
}

/** The SSH rules crabbox wants (one per port × CIDR), with priorities from 100 that skip everyone else's. */
export function nsgRules(existing: Json[], ports: string[], cidrs: string[]): Json[] {
  const others = existing.filter((rule) => !String(rule.name).startsWith(RULE_PREFIX))
  const taken = new Set(others.map((rule) => Number(props(rule).priority)))
  const sources = cidrs.length ? cidrs : ['*']
  const ours: Json[] = []
  let priority = 100
  for (const port of ports)
    sources.forEach((source, i) => {
      while (taken.has(priority)) priority++
      ours.push({
        name: `${RULE_PREFIX}${port}-${i}`,
        properties: {
          priority: priority++,
          direction: 'Inbound',
          access: 'Allow',
          protocol: 'Tcp',
          sourceAddressPrefix: source,
          sourcePortRange: '*',
          destinationAddressPrefix: '*',
          destinationPortRange: port,
        },
      })
    })
  return [...others, ...ours]
}

const ruleKey = (rule: Json) => {
  const p = props(rule)
  return `${String(rule.name)}|${String(p.priority)}|${String(p.sourceAddressPrefix)}|${String(p.destinationPortRange)}`
}

/** Resource group, VNet, subnet and NSG; returns the IDs a NIC needs. */
export async function ensureAzureNetwork(api: AzureApi, s: AzureNetworkSettings): Promise<{ subnetId: string; nsgId: string }> {
  await ensureManaged(api, 'resource group', groupPath(api, s.resourceGroup), V.resources, { location: s.location })
  const vnetPath = networkPath(api, s.resourceGroup, 'virtualNetworks', s.vnet)
  await ensureManaged(api, 'virtual network', vnetPath, V.network, {
    location: s.location,
    properties: { addressSpace: { addressPrefixes: ['10.42.0.0/16'] } },
  })
  const subnetPath = `${vnetPath}/subnets/${s.subnet}`
  const subnet =
    (await api.get(subnetPath, V.network)) ?? (await api.put(subnetPath, V.network, { properties: { addressPrefix: '10.42.0.0/20' } }))
  const nsgPath = networkPath(api, s.resourceGroup, 'networkSecurityGroups', s.nsg)
  const nsg = await ensureManaged(api, 'network security group', nsgPath, V.network, {
    location: s.location,
    properties: { securityRules: [] },
  })
  const current = (props(nsg).securityRules ?? []) as Json[]
  const wanted = nsgRules(current, s.sshPorts, s.sshCIDRs)
  const same = current.map(ruleKey).sort().join('\n') === wanted.map(ruleKey).sort().join('\n')
  if (!same)
    await api.put(nsgPath, V.network, {
      location: nsg.location ?? s.location,
      tags: tagsOf(nsg),
      properties: { ...props(nsg), securityRules: wanted },
    })
  return { subnetId: String(subnet.id ?? subnetPath), nsgId: String(nsg.id ?? nsgPath) }
}

/** Sizes with a local resource disk (a `d` in the suffix, or the F…s_v2 family) can hold an ephemeral OS disk. */
export const supportsEphemeralOsDisk = (size: string): boolean =>
  /^Standard_[A-Z]+\d+[a-z]*d[a-z]*_v\d+$/.test(size) || /^Standard_F\d+s_v2$/.test(size)

/** `Publisher:Offer:SKU:Version` → an ARM image reference. */
export function imageReference(urn: string): Json {
  const [publisher, offer, sku, version] = urn.split(':')
  if (!publisher || !offer || !sku)
    throw new CloudApiError('azure', 'fatal', 'bad_image', `azure.image ${JSON.stringify(urn)} is not Publisher:Offer:SKU[:Version]`)
  return { publisher, offer, sku, version: version || 'latest' }
}

export interface AzureCreateInput {
  leaseId: string
  name: string
  labels: Record<string, string>
  sizes: string[]
  markets: Array<'spot' | 'on-demand'>
  image: string
  sshUser: string
  sshPublicKey: string
  userData: string
  network: AzureNetworkSettings
  /**
   * A Windows VM: `sshUser` is its admin (with a random password made here, sent
   * only in the VM request), and the CustomScriptExtension runs `bootstrapCommand`
   * (OpenSSH on with the lease key) once the VM exists. No custom data.
   */
  windows?: { bootstrapCommand: string }
}

interface VmSpec {
  input: AzureCreateInput
  nicId: string
  size: string
  market: 'spot' | 'on-demand'
  ephemeral: boolean
  /** Windows only: the admin's password, fresh for this VM. */
  adminPassword?: string
}

/** The image of a Windows lease when none is asked for (`azure.image`, the lease's `azureImage`). */
export const AZURE_WINDOWS_IMAGE = 'MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition:latest'

/** The extension that runs a Windows VM's first stage. */
export const WINDOWS_EXTENSION = 'crabbox-bootstrap'

/**
 * A password Azure accepts for a Windows admin (upper, lower, digit and symbol
 * classes, 24 characters). Made per VM, sent only in its create request and
 * never kept: crabbox logs in with the lease key, and password login is turned
 * off by the bootstrap.
 */
export function randomAdminPassword(): string {
  const classes = ['ABCDEFGHJKLMNPQRSTUVWXYZ', 'abcdefghijkmnopqrstuvwxyz', '23456789', '!@#%^*-_=+.']
  const all = classes.join('')
  const bytes = crypto.getRandomValues(new Uint8Array(24))
  const chars = Array.from(
    bytes,
    (byte, i) => (i < classes.length ? classes[i] : all)[byte % (i < classes.length ? classes[i].length : all.length)],
  )
  return chars.join('')
}

/** Windows: the admin with its password, and no computer name over 15 characters (NetBIOS). */
function windowsOsProfile(input: AzureCreateInput, adminPassword: string): Json {
  return {
    computerName: `cbx${input.leaseId.replace(/^cbx_/, '').slice(-12)}`,
    adminUsername: input.sshUser,
    adminPassword,
    windowsConfiguration: { provisionVMAgent: true, enableAutomaticUpdates: false },
  }
}

function vmBody({ input, nicId, size, market, ephemeral, adminPassword }: VmSpec): Json {
  const osDisk: Json = ephemeral
    ? {
        createOption: 'FromImage',
        caching: 'ReadOnly',
        deleteOption: 'Delete',
        diffDiskSettings: { option: 'Local', placement: 'ResourceDisk' },
      }
    : { createOption: 'FromImage', caching: 'ReadWrite', deleteOption: 'Delete', managedDisk: { storageAccountType: 'StandardSSD_LRS' } }
  return {
    location: input.network.location,
    tags: { ...input.labels, server_type: size, market },
    properties: {
      hardwareProfile: { vmSize: size },
      storageProfile: { imageReference: imageReference(input.image), osDisk: { name: `${input.name}-osdisk`, ...osDisk } },
      osProfile: adminPassword
        ? windowsOsProfile(input, adminPassword)
        : {
            computerName: input.name.slice(0, 63),
            adminUsername: input.sshUser,
            customData: base64(input.userData),
            linuxConfiguration: {
              disablePasswordAuthentication: true,
              ssh: { publicKeys: [{ path: `/home/${input.sshUser}/.ssh/authorized_keys`, keyData: input.sshPublicKey.trim() }] },
            },
          },
      networkProfile: { networkInterfaces: [{ id: nicId, properties: { primary: true, deleteOption: 'Delete' } }] },
      ...(market === 'spot' ? { priority: 'Spot', evictionPolicy: 'Delete', billingProfile: { maxPrice: -1 } } : { priority: 'Regular' }),
    },
  }
}

/** UTF-8 → base64 without Node's Buffer (this module also runs inside workerd). */
function base64(text: string): string {
  let binary = ''
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte)
  return btoa(binary)
}

const pipPath = (api: AzureApi, group: string, name: string) => networkPath(api, group, 'publicIPAddresses', `${name}-pip`)
const nicPath = (api: AzureApi, group: string, name: string) => networkPath(api, group, 'networkInterfaces', `${name}-nic`)
const vmPath = (api: AzureApi, group: string, name: string) => computePath(api, group, 'virtualMachines', name)
const diskPath = (api: AzureApi, group: string, name: string) => computePath(api, group, 'disks', `${name}-osdisk`)

async function publicAddress(api: AzureApi, group: string, name: string): Promise<string | undefined> {
  const pip = await withRetries(() => api.get(pipPath(api, group, name), V.network), { ...retry, sleep: api.options.sleep })
  const address = props(pip).ipAddress
  return typeof address === 'string' ? address : undefined
}

/** The VM carrying this lease's tag, if any. */
export async function findAzureMachine(api: AzureApi, group: string, leaseId: string): Promise<CloudMachine | undefined> {
  const vm = (await listVms(api, group)).find((v) => tagsOf(v).lease === leaseId && props(v).provisioningState !== 'Deleting')
  return vm ? toAzureMachine(vm, await publicAddress(api, group, String(vm.name))) : undefined
}

const listVms = (api: AzureApi, group: string) =>
  withRetries(() => api.list(`${groupPath(api, group)}/providers/Microsoft.Compute/virtualMachines`, V.compute), {
    ...retry,
    sleep: api.options.sleep,
  })

/** VMs in the resource group tagged crabbox=true, with their public addresses. */
export async function listAzureMachines(api: AzureApi, group: string): Promise<CloudMachine[]> {
  const vms = (await listVms(api, group)).filter((vm) => tagsOf(vm).crabbox === 'true')
  if (!vms.length) return []
  const pips = await withRetries(() => api.list(`${groupPath(api, group)}/providers/Microsoft.Network/publicIPAddresses`, V.network), {
    ...retry,
    sleep: api.options.sleep,
  })
  const address = new Map(pips.map((pip) => [String(pip.name), props(pip).ipAddress as string | undefined]))
  return vms.map((vm) => toAzureMachine(vm, address.get(`${String(vm.name)}-pip`)))
}

/** Tries each market × size; capacity/quota errors move on, a failed VM is deleted before the next try. */
async function createVm(api: AzureApi, input: AzureCreateInput, nicId: string, attempts: ProvisioningAttempt[]): Promise<Json> {
  const path = vmPath(api, input.network.resourceGroup, input.name)
  const adminPassword = input.windows ? randomAdminPassword() : undefined
  for (const market of input.markets)
    for (const size of input.sizes) {
      let ephemeral = supportsEphemeralOsDisk(size)
      for (;;) {
        try {
          return await api.put(path, V.compute, vmBody({ input, nicId, size, market, ephemeral, adminPassword }))
        } catch (error) {
          if (!(error instanceof CloudApiError)) throw error
          await deleteVmOnly(api, input.network.resourceGroup, input.name)
          if (ephemeral && /ephemeral|diffdisk/i.test(error.message)) {
            ephemeral = false
            continue
          }
          if (!error.fallback) throw error
          attempts.push({ serverType: size, region: input.network.location, market, category: error.category, message: error.message })
          break
        }
      }
    }
  throw new CloudApiError(
    'azure',
    'capacity',
    'no_capacity',
    `no Azure capacity for ${input.sizes.join(', ')} in ${input.network.location}: ${attempts.map((a) => `${a.serverType} ${a.market}: ${a.message}`).join('; ')}`,
  )
}

/**
 * Creates the lease's machine: adopts a VM already tagged with the lease, else
 * ensures the network, then public IP, NIC and VM. Any failure deletes every
 * piece made for this lease before the error goes up.
 */
export async function createAzureMachine(api: AzureApi, input: AzureCreateInput): Promise<CreatedMachine> {
  const group = input.network.resourceGroup
  const existing = await api
    .get(groupPath(api, group), V.resources)
    .then((rg) => (rg ? findAzureMachine(api, group, input.leaseId) : undefined))
  if (existing?.host) return { machine: existing, attempts: [], adopted: true }
  const { subnetId, nsgId } = await ensureAzureNetwork(api, input.network)
  const tags = { crabbox: 'true', created_by: 'crabbox', lease: input.labels.lease ?? input.leaseId }
  const attempts: ProvisioningAttempt[] = []
  try {
    const pip = await api.put(pipPath(api, group, input.name), V.network, {
      location: input.network.location,
      tags,
      sku: { name: 'Standard' },
      properties: { publicIPAllocationMethod: 'Static', publicIPAddressVersion: 'IPv4' },
    })
    const nic = await api.put(nicPath(api, group, input.name), V.network, {
      location: input.network.location,
      tags,
      properties: {
        networkSecurityGroup: { id: nsgId },
        ipConfigurations: [
          {
            name: 'ipconfig1',
            properties: { subnet: { id: subnetId }, publicIPAddress: { id: pip.id }, privateIPAllocationMethod: 'Dynamic' },
          },
        ],
      },
    })
    const vm = await createVm(api, input, String(nic.id), attempts)
    if (input.windows) await bootstrapExtension(api, input, input.windows.bootstrapCommand)
    const host = (props(pip).ipAddress as string | undefined) ?? (await publicAddress(api, group, input.name))
    if (!host) throw new CloudApiError('azure', 'transient', 'no_address', `Azure public IP ${input.name}-pip has no address`)
    return { machine: toAzureMachine(vm, host), attempts, adopted: false }
  } catch (error) {
    await deleteAzureMachine(api, { group, name: input.name, leaseId: input.leaseId, attempts: 3, delayMs: 2_000 }).catch(() => undefined)
    throw error
  }
}

/**
 * Windows: the CustomScriptExtension that turns OpenSSH on with the lease key.
 * The command goes in `protectedSettings`, which ARM never returns. A failed
 * extension fails the create (and so deletes every piece) with Azure's message.
 */
async function bootstrapExtension(api: AzureApi, input: AzureCreateInput, command: string): Promise<void> {
  const path = `${vmPath(api, input.network.resourceGroup, input.name)}/extensions/${WINDOWS_EXTENSION}`
  await api.put(path, V.compute, {
    location: input.network.location,
    properties: {
      publisher: 'Microsoft.Compute',
      type: 'CustomScriptExtension',
      typeHandlerVersion: '1.10',
      autoUpgradeMinorVersion: true,
      protectedSettings: { commandToExecute: command },
    },
  })
}

async function deleteVmOnly(api: AzureApi, group: string, name: string): Promise<void> {
  await withRetries(() => api.delete(vmPath(api, group, name), V.compute), { ...retry, sleep: api.options.sleep })
}

/** Deletes one resource, waiting out dependency errors (a NIC still attached, an IP still in use). */
async function deleteConfirmed(api: AzureApi, path: string, version: string, attempts: number, delayMs: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await withRetries(() => api.delete(path, version), { ...retry, sleep: api.options.sleep })
    } catch (error) {
      const again = isDependencyError(error) || (error instanceof CloudApiError && error.code === 'AnotherOperationInProgress')
      if (!again || attempt >= attempts) throw error
      await api.options.sleep(delayMs)
    }
  }
}

export interface AzureDeleteTarget {
  group: string
  leaseId: string
  /** The VM name; found by lease tag when absent. */
  name?: string
  /** Dependency-error retries per resource (default 13, 15 s apart). */
  attempts?: number
  delayMs?: number
}

/** Deletes VM, NIC, public IP and OS disk of the lease, in that order, each confirmed by ARM. */
export async function deleteAzureMachine(api: AzureApi, target: AzureDeleteTarget): Promise<void> {
  const names = new Set<string>()
  if (target.name) names.add(target.name)
  const rg = await api.get(groupPath(api, target.group), V.resources)
  if (!rg) return
  for (const vm of await listVms(api, target.group)) if (tagsOf(vm).lease === target.leaseId) names.add(String(vm.name))
  for (const type of ['networkInterfaces', 'publicIPAddresses'])
    for (const item of await api.list(`${groupPath(api, target.group)}/providers/Microsoft.Network/${type}`, V.network))
      if (tagsOf(item).lease === target.leaseId) names.add(String(item.name).replace(/-(nic|pip)$/, ''))
  const attempts = target.attempts ?? 13
  const delayMs = target.delayMs ?? 15_000
  // Every piece is tried even when one fails, so a stuck NIC never keeps an IP or disk alive; the first failure is thrown.
  let failure: unknown
  for (const name of names)
    for (const [path, version] of [
      [vmPath(api, target.group, name), V.compute],
      [nicPath(api, target.group, name), V.network],
      [pipPath(api, target.group, name), V.network],
      [diskPath(api, target.group, name), V.compute],
    ] as const)
      await deleteConfirmed(api, path, version, attempts, delayMs).catch((error: unknown) => (failure ??= error))
  if (failure) throw failure
}

/** Heartbeat: moves the VM's `expires_at` tag forward (never past the TTL). */
export async function touchAzureMachine(api: AzureApi, group: string, name: string, now = new Date()): Promise<void> {
  const vm = await withRetries(() => api.get(vmPath(api, group, name), V.compute), { ...retry, sleep: api.options.sleep })
  const tags = vm && touchedLabels(tagsOf(vm), now)
  if (tags) await withRetries(() => api.put(vmPath(api, group, name), V.compute, { tags }, 'PATCH'), { ...retry, sleep: api.options.sleep })
}

export async function azureMachineState(api: AzureApi, group: string, name: string): Promise<string | undefined> {
  const vm = await api.get(vmPath(api, group, name), V.compute)
  return vm ? toAzureMachine(vm).status : undefined
}
