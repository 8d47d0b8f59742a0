import { AwsClient } from 'aws4fetch'
import { parseConsoleHostKeys, type ConsoleHostKey } from './cloud-init.js'
import {
  CloudApiError,
  type CloudClientOptions,
  type CloudErrorCategory,
  type CloudMachine,
  isLeaseKeyName,
  providerKeyName,
  sleep as realSleep,
  touchedLabels,
  timedFetch,
  waitForAddress,
  withRetries,
} from './cloud-machines.js'
import type { CreatedMachine, ProvisioningAttempt } from './hetzner-api.js'

/**
 * EC2 Query API (version 2016-11-15) client and machine lifecycle. Requests
 * are form-encoded POSTs signed with SigV4 by aws4fetch (no hand-written
 * crypto); replies are XML. Plain `fetch(Request)`, so the broker (workerd)
 * and the CLI (Node) share it.
 */

const EC2_API_VERSION = '2016-11-15'
/** Canonical's account: the owner of the official Ubuntu AMIs. */
const UBUNTU_OWNER = '099720109477'
const UBUNTU_AMI_NAME = 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*'
/** The latest public image per target when no AMI is configured: owner and name pattern. */
const TARGET_AMIS = {
  linux: { owner: UBUNTU_OWNER, name: UBUNTU_AMI_NAME, what: 'Ubuntu 24.04' },
  windows: { owner: 'amazon', name: 'Windows_Server-2022-English-Full-Base-*', what: 'Windows Server 2022' },
  macos: { owner: 'amazon', name: 'amzn-ec2-macos-14.*-arm64', what: 'macOS 14 arm64' },
} as const
const SECURITY_GROUP_NAME = 'crabbox-runners'

// ---------------------------------------------------------------- XML

export interface XmlNode {
  name: string
  children: XmlNode[]
  text: string
}

const entities: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }
const decode = (text: string) =>
  text.replace(/&(#x[0-9a-f]+|#\d+|\w+);/gi, (whole, name: string) =>
    name[0] === '#'
      ? String.fromCodePoint(name[1].toLowerCase() === 'x' ? parseInt(name.slice(2), 16) : Number(name.slice(1)))
      : (entities[name] ?? whole),
  )

/** Enough XML for EC2 replies: elements and text; attributes, comments and declarations are skipped. */
export function parseXml(xml: string): XmlNode {
  const root: XmlNode = { name: '#document', children: [], text: '' }
  const stack = [root]
  const tag = /<(\/?)([A-Za-z_][\w.:-]*)[^>]*?(\/?)>|<\?[\s\S]*?\?>|<!--[\s\S]*?-->|<!\[CDATA\[([\s\S]*?)\]\]>|([^<]+)/g
  for (const m of xml.matchAll(tag)) {
    const top = stack[stack.length - 1]
    if (m[5] !== undefined) top.text += decode(m[5])
    else if (m[4] !== undefined) top.text += m[4]
    else if (m[2] === undefined) continue
    else if (m[1]) {
      if (stack.length > 1) stack.pop()
    } else {
      const node: XmlNode = { name: m[2].replace(/^.*:/, ''), children: [], text: '' }
      top.children.push(node)
      if (!m[3]) stack.push(node)
    }
  }
  return root.children[0] ?? root
}

const xmlChild = (node: XmlNode | undefined, name: string): XmlNode | undefined => node?.children.find((c) => c.name === name)
/** Text at a path of child names, trimmed; undefined when any step is missing. */
export const xmlText = (node: XmlNode | undefined, ...path: string[]): string | undefined => {
  let current = node
  for (const name of path) current = xmlChild(current, name)
  return current ? current.text.trim() : undefined
}
/** The `<item>` children of a `...Set` element. */
export const xmlItems = (node: XmlNode | undefined, setName: string): XmlNode[] =>
  xmlChild(node, setName)?.children.filter((c) => c.name === 'item') ?? []

// ---------------------------------------------------------------- client

export interface Ec2Options extends CloudClientOptions {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
  /** Overrides `https://ec2.<region>.amazonaws.com/` for every region (fakes, VPC endpoints). */
  endpoint?: string
}

/** EC2 error codes, by what crabbox does about them. */
const categories: Record<string, CloudErrorCategory> = {
  InsufficientInstanceCapacity: 'capacity',
  InsufficientCapacity: 'capacity',
  InsufficientHostCapacity: 'capacity',
  SpotMaxPriceTooLow: 'capacity',
  MaxSpotInstanceCountExceeded: 'quota',
  VcpuLimitExceeded: 'quota',
  InstanceLimitExceeded: 'quota',
  Unsupported: 'unsupported',
  UnsupportedOperation: 'unsupported',
  InvalidParameterValue: 'unsupported',
  RequestLimitExceeded: 'rate_limit',
  Throttling: 'rate_limit',
  InternalError: 'transient',
  InternalFailure: 'transient',
  ServiceUnavailable: 'transient',
  Unavailable: 'transient',
  'InvalidInstanceID.NotFound': 'not_found',
  'InvalidKeyPair.NotFound': 'not_found',
  'InvalidGroup.NotFound': 'not_found',
  'InvalidAMIID.NotFound': 'not_found',
  'InvalidKeyPair.Duplicate': 'conflict',
  'InvalidGroup.Duplicate': 'conflict',
  'InvalidPermission.Duplicate': 'conflict',
  IdempotentParameterMismatch: 'conflict',
  AuthFailure: 'auth',
  UnauthorizedOperation: 'auth',
  InvalidClientTokenId: 'auth',
  SignatureDoesNotMatch: 'auth',
  OptInRequired: 'auth',
}

export type Ec2Params = Record<string, string | number | boolean | undefined>
export type Ec2Api = ReturnType<typeof createEc2Api>

export function createEc2Api(options: Ec2Options) {
  const fetchImpl = options.fetch ?? ((request: Request) => fetch(request))
  const timeoutMs = options.timeoutMs ?? 30_000
  const signers = new Map<string, AwsClient>()
  const signer = (region: string) => {
    let client = signers.get(region)
    if (!client) {
      client = new AwsClient({
        accessKeyId: options.accessKeyId,
        secretAccessKey: options.secretAccessKey,
        sessionToken: options.sessionToken,
        service: 'ec2',
        region,
        retries: 0,
      })
      signers.set(region, client)
    }
    return client
  }

  async function call(region: string, action: string, params: Ec2Params = {}): Promise<XmlNode> {
    const body = new URLSearchParams({ Action: action, Version: EC2_API_VERSION })
    for (const [key, value] of Object.entries(params)) if (value !== undefined) body.set(key, String(value))
    const url = options.endpoint || `https://ec2.${region}.amazonaws.com/`
    const request = await signer(region).sign(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
      body: body.toString(),
    })
    const response = await timedFetch('aws', fetchImpl, request, timeoutMs)
    const text = await response.text()
    if (response.ok) return parseXml(text)
    const root = parseXml(text)
    const error = xmlChild(xmlChild(root, 'Errors'), 'Error') ?? xmlChild(root, 'Error')
    const code = xmlText(error, 'Code') ?? `http_${response.status}`
    const message = xmlText(error, 'Message') ?? (text.slice(0, 300) || response.statusText)
    let category = categories[code] ?? (response.status >= 500 ? 'transient' : 'fatal')
    if (response.status === 429 || response.status === 503) category = categories[code] ?? 'rate_limit'
    throw new CloudApiError('aws', category, code, `EC2 ${action} in ${region}: ${message} (${code})`, response.status)
  }

  return {
    call,
    options: {
      ...options,
      pollIntervalMs: options.pollIntervalMs ?? 5_000,
      addressTimeoutMs: options.addressTimeoutMs ?? 600_000,
      sleep: options.sleep ?? realSleep,
    },
  }
}

function tagParams(index: number, resourceType: string, tags: Record<string, string>): Ec2Params {
  const out: Ec2Params = { [`TagSpecification.${index}.ResourceType`]: resourceType }
  Object.entries(tags).forEach(([key, value], i) => {
    out[`TagSpecification.${index}.Tag.${i + 1}.Key`] = key
    out[`TagSpecification.${index}.Tag.${i + 1}.Value`] = value
  })
  return out
}

const base64 = (text: string) => {
  const bytes = new TextEncoder().encode(text)
  let binary = ''
  for (const b of bytes) binary += String.fromCharCode(b)
  return btoa(binary)
}
const unbase64 = (text: string) => new TextDecoder().decode(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)))

function toCloudMachine(item: XmlNode, region: string): CloudMachine {
  const labels: Record<string, string> = {}
  for (const tag of xmlItems(item, 'tagSet')) labels[xmlText(tag, 'key') ?? ''] = xmlText(tag, 'value') ?? ''
  return {
    provider: 'aws',
    id: xmlText(item, 'instanceId') ?? '',
    name: labels.Name ?? xmlText(item, 'instanceId') ?? '',
    host: xmlText(item, 'ipAddress') || undefined,
    status: xmlText(item, 'instanceState', 'name') ?? 'unknown',
    serverType: xmlText(item, 'instanceType') ?? '',
    region,
    market: xmlText(item, 'instanceLifecycle') === 'spot' ? 'spot' : 'on-demand',
    labels,
    createdAt: xmlText(item, 'launchTime'),
  }
}

const liveStates = ['pending', 'running', 'stopping', 'stopped']
const retry = (api: Ec2Api) => ({ attempts: 5, delayMs: 1_000, sleep: api.options.sleep })

async function describeAwsMachines(api: Ec2Api, region: string, filters: Record<string, string[]>): Promise<CloudMachine[]> {
  const machines: CloudMachine[] = []
  let nextToken: string | undefined
  do {
    const params: Ec2Params = { MaxResults: 100, NextToken: nextToken }
    Object.entries({ ...filters, 'instance-state-name': liveStates }).forEach(([name, values], i) => {
      params[`Filter.${i + 1}.Name`] = name
      values.forEach((value, j) => (params[`Filter.${i + 1}.Value.${j + 1}`] = value))
    })
    const root = await withRetries(() => api.call(region, 'DescribeInstances', params), retry(api))
    for (const reservation of xmlItems(root, 'reservationSet'))
      for (const item of xmlItems(reservation, 'instancesSet')) machines.push(toCloudMachine(item, region))
    nextToken = xmlText(root, 'nextToken') || undefined
  } while (nextToken)
  return machines
}

/** The live instance tagged with this lease in any of the regions, if one exists. */
export async function findAwsMachine(api: Ec2Api, regions: string[], leaseId: string): Promise<CloudMachine | undefined> {
  for (const region of regions) {
    const [found] = await describeAwsMachines(api, region, { 'tag:lease': [leaseId], 'tag:crabbox': ['true'] })
    if (found) return found
  }
  return undefined
}

export async function listAwsMachines(api: Ec2Api, regions: string[]): Promise<CloudMachine[]> {
  return (await Promise.all(regions.map((region) => describeAwsMachines(api, region, { 'tag:crabbox': ['true'] })))).flat()
}

export interface AwsCreateInput {
  leaseId: string
  name: string
  labels: Record<string, string>
  instanceTypes: string[]
  /** Tried in order; the first is the configured region. */
  regions: string[]
  /** `['spot', 'on-demand']` for spot with on-demand fallback. */
  markets: Array<'spot' | 'on-demand'>
  ami?: string
  /** An AMI for one region only (AMIs are regional): used there instead of `ami`. */
  regionAmi?: { region: string; id: string }
  securityGroupId?: string
  subnetId?: string
  instanceProfile?: string
  rootGB: number
  sshPorts: string[]
  /** Who may reach SSH when crabbox creates the security group; default anywhere. */
  sshCIDRs: string[]
  userData: string
  sshPublicKey: string
  keyName: string
  /** The runner's OS (default linux): picks the image; Windows WSL2 gets nested virtualization. */
  target?: 'linux' | 'windows' | 'macos'
  windowsMode?: 'normal' | 'wsl2'
  /** macOS only: the dedicated host (`mac2.metal`) the instance is placed on. */
  macHostId?: string
}

/** RunInstances settings a target needs beyond the Linux launch: host placement for macOS, nested virtualization for WSL2. */
export function targetLaunchParams(
  input: Pick<AwsCreateInput, 'target' | 'windowsMode' | 'macHostId'>,
  market: 'spot' | 'on-demand',
): Ec2Params {
  if (input.target === 'macos') {
    if (!input.macHostId)
      throw new CloudApiError(
        'aws',
        'fatal',
        'config',
        'macOS instances run on a dedicated host: set aws.macHostId (CRABBOX_AWS_MAC_HOST_ID)',
      )
    if (market === 'spot')
      throw new CloudApiError(
        'aws',
        'fatal',
        'config',
        'macOS instances on a dedicated host are on-demand only: set capacity.market to on-demand',
      )
    return { 'Placement.HostId': input.macHostId, 'Placement.Tenancy': 'host' }
  }
  if (input.target === 'windows' && input.windowsMode === 'wsl2') return { 'CpuOptions.NestedVirtualization': 'enabled' }
  return {}
}

async function latestAmi(api: Ec2Api, region: string, target: AwsCreateInput['target'] = 'linux'): Promise<string> {
  const image = TARGET_AMIS[target]
  const root = await withRetries(
    () =>
      api.call(region, 'DescribeImages', {
        'Owner.1': image.owner,
        'Filter.1.Name': 'name',
        'Filter.1.Value.1': image.name,
        'Filter.2.Name': 'state',
        'Filter.2.Value.1': 'available',
      }),
    retry(api),
  )
  const images = xmlItems(root, 'imagesSet').map((i) => ({ id: xmlText(i, 'imageId') ?? '', created: xmlText(i, 'creationDate') ?? '' }))
  images.sort((a, b) => b.created.localeCompare(a.created))
  if (!images[0]?.id) throw new CloudApiError('aws', 'fatal', 'no_image', `no ${image.what} AMI found in ${region}; set aws.ami`)
  return images[0].id
}

async function ensureSecurityGroup(api: Ec2Api, region: string, input: AwsCreateInput): Promise<string> {
  if (input.securityGroupId) return input.securityGroupId
  if (input.subnetId)
    throw new CloudApiError(
      'aws',
      'fatal',
      'config',
      'aws.subnetId needs aws.securityGroupId too: crabbox only creates its security group in the default VPC',
    )
  const found = await withRetries(
    () => api.call(region, 'DescribeSecurityGroups', { 'Filter.1.Name': 'group-name', 'Filter.1.Value.1': SECURITY_GROUP_NAME }),
    retry(api),
  )
  const existing = xmlText(xmlItems(found, 'securityGroupInfo')[0], 'groupId')
  if (existing) return existing
  const created = await api.call(region, 'CreateSecurityGroup', {
    GroupName: SECURITY_GROUP_NAME,
    GroupDescription: 'crabbox runners: SSH only',
  })
  const groupId = xmlText(created, 'groupId') ?? ''
  const cidrs = input.sshCIDRs.length ? input.sshCIDRs : ['0.0.0.0/0']
  const params: Ec2Params = { GroupId: groupId }
  input.sshPorts.forEach((port, i) => {
    params[`IpPermissions.${i + 1}.IpProtocol`] = 'tcp'
    params[`IpPermissions.${i + 1}.FromPort`] = port
    params[`IpPermissions.${i + 1}.ToPort`] = port
    cidrs.forEach((cidr, j) => (params[`IpPermissions.${i + 1}.IpRanges.${j + 1}.CidrIp`] = cidr))
  })
  await api.call(region, 'AuthorizeSecurityGroupIngress', params)
  return groupId
}

async function importKey(api: Ec2Api, region: string, input: AwsCreateInput): Promise<void> {
  try {
    await api.call(region, 'ImportKeyPair', {
      KeyName: input.keyName,
      PublicKeyMaterial: base64(input.sshPublicKey.trim()),
      ...tagParams(1, 'key-pair', { crabbox: 'true', created_by: 'crabbox', lease: input.labels.lease ?? 'unknown' }),
    })
  } catch (error) {
    // A retried create finds its own key already there; the key name is the lease's.
    if (!(error instanceof CloudApiError && error.code === 'InvalidKeyPair.Duplicate')) throw error
  }
}

/** Idempotency token for one launch attempt: same lease, region, type and market → same instance. */
const clientToken = (leaseId: string, region: string, type: string, market: string) => `${leaseId}-${region}-${type}-${market}`.slice(0, 64)

/** Polls until the instance has a public IPv4 (adopted instances may still be pending). */
export function waitForAwsAddress(api: Ec2Api, machine: CloudMachine): Promise<CloudMachine> {
  return waitForAddress(machine, api.options, `EC2 instance ${machine.id}`, async () => {
    const root = await withRetries(() => api.call(machine.region!, 'DescribeInstances', { 'InstanceId.1': machine.id }), retry(api))
    const item = xmlItems(xmlItems(root, 'reservationSet')[0], 'instancesSet')[0]
    if (!item)
      throw new CloudApiError('aws', 'not_found', 'InvalidInstanceID.NotFound', `EC2 instance ${machine.id} disappeared while starting`)
    const current = toCloudMachine(item, machine.region!)
    if (current.status === 'terminated' || current.status === 'shutting-down')
      throw new CloudApiError('aws', 'capacity', 'terminated', `EC2 instance ${machine.id} was terminated while starting`)
    return current
  })
}

/** The instance's `instance-state-name` (`pending`, `running`...): one DescribeInstances, no retries. */
export async function awsMachineState(api: Ec2Api, region: string, id: string): Promise<string | undefined> {
  const root = await api.call(region, 'DescribeInstances', { 'InstanceId.1': id })
  const item = xmlItems(xmlItems(root, 'reservationSet')[0], 'instancesSet')[0]
  return item ? xmlText(item, 'instanceState', 'name') : undefined
}

/**
 * Creates the lease's instance: adopts one already tagged with the lease,
 * else walks markets (spot first, then on-demand when allowed) × regions ×
 * instance types, falling back on capacity, quota and unsupported-type
 * errors. Launches carry a ClientToken, so a retried RunInstances after a
 * lost reply returns the same instance instead of a second one.
 */
export async function createAwsMachine(api: Ec2Api, input: AwsCreateInput): Promise<CreatedMachine> {
  // A target setting that cannot launch is refused before anything is made.
  for (const market of input.markets) targetLaunchParams(input, market)
  const existing = await findAwsMachine(api, input.regions, input.leaseId)
  if (existing) return { machine: await waitForAwsAddress(api, existing), attempts: [], adopted: true }

  const attempts: ProvisioningAttempt[] = []
  const prepared = new Map<string, { ami: string; securityGroupId: string } | Error>()
  const keyRegions = new Set<string>()
  let launched: CloudMachine | undefined
  try {
    for (const market of input.markets) {
      for (const region of input.regions) {
        let setup = prepared.get(region)
        if (!setup) {
          try {
            keyRegions.add(region)
            await withRetries(() => importKey(api, region, input), retry(api))
            setup = {
              ami:
                (input.regionAmi?.region === region ? input.regionAmi.id : '') || input.ami || (await latestAmi(api, region, input.target)),
              securityGroupId: await ensureSecurityGroup(api, region, input),
            }
          } catch (error) {
            if (!(error instanceof CloudApiError) || error.category === 'auth' || error.code === 'config') throw error
            setup = error
          }
          prepared.set(region, setup)
        }
        if (setup instanceof Error) {
          attempts.push({ region, serverType: input.instanceTypes[0], market, category: 'region', message: setup.message })
          continue
        }
        for (const type of input.instanceTypes) {
          const params: Ec2Params = {
            ...targetLaunchParams(input, market),
            ImageId: setup.ami,
            InstanceType: type,
            MinCount: 1,
            MaxCount: 1,
            KeyName: input.keyName,
            UserData: base64(input.userData),
            ClientToken: clientToken(input.leaseId, region, type, market),
            'BlockDeviceMapping.1.DeviceName': '/dev/sda1',
            'BlockDeviceMapping.1.Ebs.VolumeSize': input.rootGB,
            'BlockDeviceMapping.1.Ebs.VolumeType': 'gp3',
            'BlockDeviceMapping.1.Ebs.DeleteOnTermination': true,
            'BlockDeviceMapping.1.Ebs.Encrypted': true,
            'IamInstanceProfile.Name': input.instanceProfile || undefined,
            InstanceInitiatedShutdownBehavior: 'terminate',
            ...(input.subnetId
              ? {
                  'NetworkInterface.1.DeviceIndex': 0,
                  'NetworkInterface.1.SubnetId': input.subnetId,
                  'NetworkInterface.1.AssociatePublicIpAddress': true,
                  'NetworkInterface.1.SecurityGroupId.1': setup.securityGroupId,
                }
              : { 'SecurityGroupId.1': setup.securityGroupId }),
            ...(market === 'spot'
              ? {
                  'InstanceMarketOptions.MarketType': 'spot',
                  'InstanceMarketOptions.SpotOptions.SpotInstanceType': 'one-time',
                  'InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior': 'terminate',
                }
              : {}),
            ...tagParams(1, 'instance', { ...input.labels, Name: input.name, server_type: type, market }),
            ...tagParams(2, 'volume', { crabbox: 'true', lease: input.labels.lease ?? 'unknown' }),
          }
          try {
            const root = await withRetries(() => api.call(region, 'RunInstances', params), { ...retry(api), attempts: 4 })
            launched = toCloudMachine(xmlItems(root, 'instancesSet')[0] ?? { name: 'item', children: [], text: '' }, region)
            break
          } catch (error) {
            if (!(error instanceof CloudApiError)) throw error
            if (error.fallback) {
              attempts.push({ region, serverType: type, market, category: error.category, message: error.message })
              continue
            }
            // After retries, a launch may still have happened: look by tag before failing.
            const found = error.retryable ? await findAwsMachine(api, [region], input.leaseId) : undefined
            if (found) {
              launched = found
              break
            }
            throw error
          }
        }
        if (launched) break
      }
      if (launched) break
    }
  } finally {
    // Keys imported into regions that did not get the machine are not needed.
    for (const region of keyRegions) if (region !== launched?.region) await deleteAwsKey(api, region, input.keyName).catch(() => undefined)
  }
  if (!launched) {
    throw new CloudApiError(
      'aws',
      'capacity',
      'no_capacity',
      `no EC2 capacity for ${input.instanceTypes.join(', ')} in ${input.regions.join(', ')} (${input.markets.join(' then ')}): ${attempts.map((a) => `${a.region}/${a.serverType}/${a.market}: ${a.message}`).join('; ')}`,
    )
  }
  try {
    return { machine: await waitForAwsAddress(api, launched), attempts, adopted: false }
  } catch (error) {
    // The instance exists: it must not outlive the failed create.
    const made = { id: launched.id, region: launched.region, regions: input.regions, leaseId: input.leaseId, keyName: input.keyName }
    await deleteAwsMachine(api, made).catch(() => undefined)
    throw error
  }
}

async function deleteAwsKey(api: Ec2Api, region: string, keyName: string): Promise<void> {
  if (!isLeaseKeyName(keyName)) return
  await withRetries(async () => {
    try {
      await api.call(region, 'DeleteKeyPair', { KeyName: keyName })
    } catch (error) {
      if (!(error instanceof CloudApiError && error.category === 'not_found')) throw error
    }
  }, retry(api))
}

/**
 * Terminates the lease's instance (by ID and by lease tag in every region, so
 * an instance whose launch reply was lost goes too) and deletes its key pair.
 * Already-terminated instances count as deleted.
 */
export async function deleteAwsMachine(
  api: Ec2Api,
  target: { id?: string; region?: string; regions: string[]; leaseId: string; keyName?: string },
): Promise<void> {
  const byRegion = new Map<string, Set<string>>()
  const add = (region: string, id: string) => byRegion.set(region, (byRegion.get(region) ?? new Set()).add(id))
  if (target.id && target.region) add(target.region, target.id)
  const regions = [...new Set([...(target.region ? [target.region] : []), ...target.regions])]
  for (const region of regions)
    for (const m of await describeAwsMachines(api, region, { 'tag:lease': [target.leaseId], 'tag:crabbox': ['true'] })) add(region, m.id)
  for (const [region, ids] of byRegion) {
    for (const id of ids) {
      await withRetries(async () => {
        try {
          await api.call(region, 'TerminateInstances', { 'InstanceId.1': id })
        } catch (error) {
          if (!(error instanceof CloudApiError && error.category === 'not_found')) throw error
        }
      }, retry(api))
    }
  }
  const keyName = target.keyName ?? providerKeyName(target.leaseId)
  for (const region of regions) await deleteAwsKey(api, region, keyName)
}

/** Worst current spot price (USD/hour) across the region's zones for a Linux instance type. */
export async function awsSpotHourlyUSD(api: Ec2Api, region: string, instanceType: string, now = new Date()): Promise<number | undefined> {
  const root = await withRetries(
    () =>
      api.call(region, 'DescribeSpotPriceHistory', {
        'InstanceType.1': instanceType,
        'ProductDescription.1': 'Linux/UNIX',
        StartTime: now.toISOString(),
        MaxResults: 100,
      }),
    retry(api),
  )
  const prices = xmlItems(root, 'spotPriceHistorySet')
    .map((i) => Number(xmlText(i, 'spotPrice')))
    .filter((n) => Number.isFinite(n) && n > 0)
  return prices.length ? Math.max(...prices) : undefined
}

/** SSH host keys the bootstrap printed to the serial console, once EC2 has captured it. */
export async function awsConsoleHostKeys(api: Ec2Api, region: string, instanceId: string): Promise<ConsoleHostKey[]> {
  const root = await api.call(region, 'GetConsoleOutput', { InstanceId: instanceId, Latest: true })
  const output = xmlText(root, 'output')
  return output ? parseConsoleHostKeys(unbase64(output)) : []
}

/** Spot first, then on-demand when the fallback policy allows it (`on-demand…`). */
export function awsMarkets(market: 'spot' | 'on-demand' | undefined, fallback: string | undefined): Array<'spot' | 'on-demand'> {
  if ((market ?? 'spot') === 'on-demand') return ['on-demand']
  return (fallback ?? 'on-demand-after-120s').startsWith('on-demand') ? ['spot', 'on-demand'] : ['spot']
}

/** The configured region first, then the capacity regions, without repeats. */
export const awsRegions = (primary: string, extra: string[] = []): string[] => [
  ...new Set([primary, ...extra].map((r) => r.trim()).filter(Boolean)),
]

/** Heartbeat for a direct-mode lease: moves the `expires_at` tag forward (never past the TTL). */
export async function touchAwsMachine(api: Ec2Api, region: string, id: string, now = new Date()): Promise<void> {
  const root = await withRetries(() => api.call(region, 'DescribeInstances', { 'InstanceId.1': id }), retry(api))
  const item = xmlItems(xmlItems(root, 'reservationSet')[0], 'instancesSet')[0]
  if (!item) return
  const labels = touchedLabels(toCloudMachine(item, region).labels, now)
  if (!labels) return
  await withRetries(
    () =>
      api.call(region, 'CreateTags', {
        'ResourceId.1': id,
        'Tag.1.Key': 'last_touched_at',
        'Tag.1.Value': labels.last_touched_at,
        'Tag.2.Key': 'expires_at',
        'Tag.2.Value': labels.expires_at,
      }),
    retry(api),
  )
}

// ---------------------------------------------------------------- images

export interface AwsImage {
  id: string
  name: string
  /** EC2's `imageState`: pending, available, failed, … */
  state: string
  region: string
  tags: Record<string, string>
}

/**
 * Bakes an AMI from an instance (`CreateImage`), tagged so crabbox can find what it
 * made. `noReboot` keeps the instance running while its disk is copied.
 */
export async function createAwsImage(
  api: Ec2Api,
  input: { region: string; instanceId: string; name: string; noReboot: boolean; tags: Record<string, string> },
): Promise<AwsImage> {
  const root = await api.call(input.region, 'CreateImage', {
    InstanceId: input.instanceId,
    Name: input.name,
    Description: `crabbox image of ${input.tags.lease ?? input.instanceId}`,
    NoReboot: input.noReboot,
    ...tagParams(1, 'image', input.tags),
    ...tagParams(2, 'snapshot', input.tags),
  })
  const id = xmlText(root, 'imageId')
  if (!id) throw new CloudApiError('aws', 'fatal', 'no_image', `EC2 CreateImage in ${input.region} returned no image ID`)
  return { id, name: input.name, state: 'pending', region: input.region, tags: input.tags }
}

/** One image by ID, or undefined when EC2 does not know it in that region. */
export async function describeAwsImage(api: Ec2Api, region: string, id: string): Promise<AwsImage | undefined> {
  let root: XmlNode
  try {
    root = await withRetries(() => api.call(region, 'DescribeImages', { 'ImageId.1': id }), retry(api))
  } catch (error) {
    if (error instanceof CloudApiError && /^InvalidAMIID\./.test(error.code)) return undefined
    throw error
  }
  const item = xmlItems(root, 'imagesSet')[0]
  if (!item) return undefined
  const tags: Record<string, string> = {}
  for (const tag of xmlItems(item, 'tagSet')) tags[xmlText(tag, 'key') ?? ''] = xmlText(tag, 'value') ?? ''
  return {
    id: xmlText(item, 'imageId') ?? id,
    name: xmlText(item, 'name') ?? '',
    state: xmlText(item, 'imageState') ?? 'unknown',
    region,
    tags,
  }
}
