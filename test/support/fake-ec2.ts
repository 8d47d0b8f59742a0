/**
 * A fake EC2 Query API (version 2016-11-15): form-encoded POSTs signed with
 * SigV4 (the region comes from the signature's credential scope, as on AWS),
 * XML replies in the documented shapes, XML errors
 * (`<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`,
 * 4xx for client errors, 5xx for server errors such as
 * InsufficientInstanceCapacity), ClientToken idempotency, and switches for
 * capacity, quota and injected failures. A plain `(Request) => Promise<Response>`
 * handler, like the Hetzner fake; serve it with `serveFake`.
 *
 * Checked against the EC2 API reference
 * (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/): RunInstances,
 * DescribeInstances, TerminateInstances, ImportKeyPair, DeleteKeyPair (true
 * even for a missing key), DescribeKeyPairs, DescribeImages,
 * CreateImage (pending, then available after `imagePolls` DescribeImages by ID),
 * DescribeSecurityGroups, CreateSecurityGroup, AuthorizeSecurityGroupIngress,
 * DescribeSpotPriceHistory, GetConsoleOutput, and "Error codes for the Amazon
 * EC2 API" (client errors 4xx, server errors such as
 * InsufficientInstanceCapacity 5xx).
 */
import { AwsV4Signer } from 'aws4fetch'
import { asFetch, faultSwitch, type FaultSpec } from './fake-faults.js'
import type { RecordedCall } from './fake-hetzner.js'

export { serveFake } from './fake-faults.js'

export interface Ec2Failure extends FaultSpec {
  action: string
  region?: string
  when?: (params: Record<string, string>) => boolean
}

interface Instance {
  id: string
  region: string
  az: string
  type: string
  state: string
  market: 'spot' | 'on-demand'
  tags: Record<string, string>
  ip?: string
  keyName?: string
  imageId: string
  userData: string
  groupIds: string[]
  subnetId?: string
  rootGB?: string
  clientToken?: string
  launchTime: string
  describes: number
}

export interface FakeEc2Options {
  accessKeyId?: string
  /** Regions that exist; others answer like an unknown endpoint. */
  regions?: string[]
  /** `[region/]type[/market]` patterns with no capacity (InsufficientInstanceCapacity, HTTP 500). */
  noCapacity?: string[]
  /** `[region/]market` patterns over quota (MaxSpotInstanceCountExceeded / VcpuLimitExceeded, HTTP 400). */
  overQuota?: string[]
  /** DescribeImages-by-ID calls before a new image is `available` (default 1). */
  imagePolls?: number
  /** DescribeInstances calls before a new instance has a public IP (default 1). */
  bootPolls?: number
  addressFor?: (instance: { id: string; region: string; userData: string; type: string }) => string
  /** Serial console text for GetConsoleOutput (e.g. host keys a real bootstrap prints). */
  consoleFor?: (instance: { id: string; region: string; userData: string }) => string | undefined
  onLaunch?: (instance: { id: string; region: string; userData: string; tags: Record<string, string> }) => void | Promise<void>
}

const NS = 'http://ec2.amazonaws.com/doc/2016-11-15/'
const SECRET = 'fake/secret/key/for/tests'
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
const stateCodes: Record<string, number> = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80 }
const requestId = () => crypto.randomUUID()
const hex = (n: number) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('')

const spotUSD: Record<string, number> = {
  'c7a.48xlarge': 3.9,
  'c7i.48xlarge': 3.6,
  'c7a.8xlarge': 0.61,
  'c7i.8xlarge': 0.58,
  'c7a.4xlarge': 0.31,
  't3.small': 0.008,
}

function xmlReply(action: string, inner: string, status = 200): Response {
  return new Response(
    `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${NS}">\n    <requestId>${requestId()}</requestId>\n${inner}\n</${action}Response>`,
    {
      status,
      headers: { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId() },
    },
  )
}

export function ec2Error(status: number, code: string, message: string): Response {
  return new Response(
    `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${esc(code)}</Code><Message>${esc(message)}</Message></Error></Errors><RequestID>${requestId()}</RequestID></Response>`,
    {
      status,
      headers: { 'content-type': 'text/xml;charset=UTF-8' },
    },
  )
}

/** `Prefix.N` / `Prefix.N.Sub` params back into arrays. */
function indexed(params: Record<string, string>, prefix: string): string[] {
  return Object.keys(params)
    .filter((k) => new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.\\d+$`).test(k))
    .sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()))
    .map((k) => params[k])
}

function filters(params: Record<string, string>): Array<{ name: string; values: string[] }> {
  const out: Array<{ name: string; values: string[] }> = []
  for (let i = 1; params[`Filter.${i}.Name`]; i++)
    out.push({ name: params[`Filter.${i}.Name`], values: indexed(params, `Filter.${i}.Value`) })
  return out
}

function tagSpecs(params: Record<string, string>, resourceType: string): Record<string, string> {
  const tags: Record<string, string> = {}
  for (let i = 1; params[`TagSpecification.${i}.ResourceType`]; i++) {
    if (params[`TagSpecification.${i}.ResourceType`] !== resourceType) continue
    for (let j = 1; params[`TagSpecification.${i}.Tag.${j}.Key`] !== undefined; j++)
      tags[params[`TagSpecification.${i}.Tag.${j}.Key`]] = params[`TagSpecification.${i}.Tag.${j}.Value`] ?? ''
  }
  return tags
}

const matchesPattern = (patterns: string[], parts: string[]) =>
  patterns.some((p) => {
    const want = p.split('/')
    return want.every((w) => parts.includes(w))
  })

// eslint-disable-next-line max-lines-per-function -- one closure holds the fake cloud's state and every action it speaks
export function createFakeEc2(options: FakeEc2Options = {}) {
  const accessKeyId = options.accessKeyId ?? 'AKIDFAKEEC2EXAMPLE'
  const regions = options.regions ?? ['eu-west-1', 'eu-west-2', 'eu-central-1', 'us-east-1']
  const instances = new Map<string, Instance>()
  const keyPairs = new Map<string, { name: string; id: string; material: string; fingerprint: string; tags: Record<string, string> }>() // `${region}/${name}`
  const groups = new Map<string, { id: string; name: string; region: string; permissions: string[] }>()
  const amis = new Map<
    string,
    {
      id: string
      region: string
      name: string
      instanceId: string
      noReboot: string
      state: string
      tags: Record<string, string>
      describes: number
      created: string
    }
  >()
  const calls: Array<RecordedCall & { action: string; region: string; params: Record<string, string> }> = []
  const faults = faultSwitch<Ec2Failure>()
  let noCapacity = [...(options.noCapacity ?? [])]
  let overQuota = [...(options.overQuota ?? [])]
  let ipCounter = 10

  const instanceXml = (i: Instance) => `            <item>
                <instanceId>${i.id}</instanceId>
                <imageId>${i.imageId}</imageId>
                <instanceState><code>${stateCodes[i.state]}</code><name>${i.state}</name></instanceState>
                <privateDnsName>ip-10-0-0-${ipCounter}.${i.region}.compute.internal</privateDnsName>
                <dnsName>${i.ip ? `ec2-${i.ip.replaceAll('.', '-')}.${i.region}.compute.amazonaws.com` : ''}</dnsName>
                ${i.keyName ? `<keyName>${esc(i.keyName)}</keyName>` : ''}
                <amiLaunchIndex>0</amiLaunchIndex>
                <instanceType>${i.type}</instanceType>
                <launchTime>${i.launchTime}</launchTime>
                <placement><availabilityZone>${i.az}</availabilityZone><groupName/><tenancy>default</tenancy></placement>
                ${i.ip ? `<ipAddress>${i.ip}</ipAddress>` : ''}
                ${i.subnetId ? `<subnetId>${i.subnetId}</subnetId>` : ''}
                <groupSet>${i.groupIds.map((g) => `<item><groupId>${g}</groupId><groupName>${esc(groups.get(g)?.name ?? 'default')}</groupName></item>`).join('')}</groupSet>
                ${i.market === 'spot' ? '<instanceLifecycle>spot</instanceLifecycle>' : ''}
                ${i.clientToken ? `<clientToken>${esc(i.clientToken)}</clientToken>` : ''}
                <tagSet>${Object.entries(i.tags)
                  .map(([k, v]) => `<item><key>${esc(k)}</key><value>${esc(v)}</value></item>`)
                  .join('')}</tagSet>
            </item>`

  const boot = (i: Instance) => {
    if (i.state !== 'pending') return
    i.state = 'running'
    i.ip ??= options.addressFor?.(i) ?? `198.51.100.${ipCounter++ % 250}`
  }

  // eslint-disable-next-line max-lines-per-function -- one case per EC2 action the fake answers, each a few lines
  async function action(name: string, region: string, p: Record<string, string>): Promise<Response> {
    switch (name) {
      case 'ImportKeyPair': {
        const key = `${region}/${p.KeyName}`
        if (!p.KeyName || !p.PublicKeyMaterial)
          return ec2Error(400, 'MissingParameter', 'The request must contain the parameter KeyName and PublicKeyMaterial')
        let material: string
        try {
          material = atob(p.PublicKeyMaterial)
        } catch {
          return ec2Error(400, 'InvalidKey.Format', 'Key is not in valid OpenSSH public key format')
        }
        if (!/^(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/=]+/.test(material))
          return ec2Error(400, 'InvalidKey.Format', 'Key is not in valid OpenSSH public key format')
        if (keyPairs.has(key)) return ec2Error(400, 'InvalidKeyPair.Duplicate', `The keypair already exists`)
        const pair = { name: p.KeyName, id: `key-${hex(8)}`, material, fingerprint: `SHA256:${hex(16)}`, tags: tagSpecs(p, 'key-pair') }
        keyPairs.set(key, pair)
        return xmlReply(
          name,
          `    <keyFingerprint>${pair.fingerprint}</keyFingerprint>\n    <keyName>${esc(pair.name)}</keyName>\n    <keyPairId>${pair.id}</keyPairId>`,
        )
      }
      case 'DeleteKeyPair': {
        // EC2 answers true even when the key does not exist.
        keyPairs.delete(`${region}/${p.KeyName}`)
        return xmlReply(name, '    <return>true</return>')
      }
      case 'DescribeKeyPairs': {
        const names = indexed(p, 'KeyName')
        const found = [...keyPairs]
          .filter(([k]) => k.startsWith(`${region}/`))
          .map(([, v]) => v)
          .filter((k) => !names.length || names.includes(k.name))
        const missing = names.find((n) => !found.some((k) => k.name === n))
        if (missing) return ec2Error(400, 'InvalidKeyPair.NotFound', `The key pair '${missing}' does not exist`)
        return xmlReply(
          name,
          `    <keySet>${found.map((k) => `<item><keyPairId>${k.id}</keyPairId><keyFingerprint>${k.fingerprint}</keyFingerprint><keyName>${esc(k.name)}</keyName></item>`).join('')}</keySet>`,
        )
      }
      case 'CreateImage': {
        const source = instances.get(p.InstanceId)
        if (!source || source.region !== region || source.state === 'terminated')
          return ec2Error(400, 'InvalidInstanceID.NotFound', `The instance ID '${p.InstanceId}' does not exist`)
        if (!p.Name) return ec2Error(400, 'MissingParameter', 'The request must contain the parameter Name')
        if ([...amis.values()].some((i) => i.region === region && i.name === p.Name))
          return ec2Error(400, 'InvalidAMIName.Duplicate', `AMI name ${p.Name} is already in use by another AMI`)
        const image = {
          id: `ami-0${hex(8)}`,
          region,
          name: p.Name,
          instanceId: p.InstanceId,
          noReboot: p.NoReboot ?? 'false',
          state: 'pending',
          tags: tagSpecs(p, 'image'),
          describes: 0,
          created: new Date().toISOString(),
        }
        amis.set(image.id, image)
        return xmlReply(name, `    <imageId>${image.id}</imageId>`)
      }
      case 'DescribeImages': {
        const ids = indexed(p, 'ImageId')
        if (ids.length) {
          const found = ids.map((id) => amis.get(id)).filter((i) => i && i.region === region)
          if (found.length < ids.length)
            return ec2Error(
              400,
              'InvalidAMIID.NotFound',
              `The image id '[${ids.find((id) => amis.get(id)?.region !== region)}]' does not exist`,
            )
          for (const i of found) if (i!.state === 'pending' && ++i!.describes >= (options.imagePolls ?? 1)) i!.state = 'available'
          return xmlReply(
            name,
            `    <imagesSet>${found
              .map(
                (i) =>
                  `<item><imageId>${i!.id}</imageId><imageState>${i!.state}</imageState><imageOwnerId>123456789012</imageOwnerId><creationDate>${i!.created}</creationDate><isPublic>false</isPublic><architecture>x86_64</architecture><imageType>machine</imageType><name>${esc(i!.name)}</name><rootDeviceType>ebs</rootDeviceType><tagSet>${Object.entries(
                    i!.tags,
                  )
                    .map(([k, v]) => `<item><key>${esc(k)}</key><value>${esc(v)}</value></item>`)
                    .join('')}</tagSet></item>`,
              )
              .join('')}</imagesSet>`,
          )
        }
        const owners = indexed(p, 'Owner')
        if (owners.includes('amazon')) {
          // Amazon's own Windows Server and macOS images, filtered by the name pattern like EC2 does.
          const pattern = indexed(p, 'Filter.1.Value')[0] ?? '*'
          const glob = new RegExp(
            `^${pattern
              .replace(/[.+^${}()|[\]\\]/g, '\\$&')
              .replace(/\*/g, '.*')
              .replace(/\?/g, '.')}$`,
          )
          const amazon = [
            {
              id: `ami-0${region.length}aa11bb22cc33d0`,
              name: 'Windows_Server-2022-English-Full-Base-2025.06.11',
              created: '2025-06-11T00:00:00.000Z',
            },
            {
              id: `ami-0${region.length}aa11bb22cc33d1`,
              name: 'Windows_Server-2022-English-Full-Base-2025.01.15',
              created: '2025-01-15T00:00:00.000Z',
            },
            {
              id: `ami-0${region.length}ee55ff66aa77b0`,
              name: 'amzn-ec2-macos-14.7.1-20250601-arm64',
              created: '2025-06-01T00:00:00.000Z',
            },
          ].filter((i) => glob.test(i.name))
          return xmlReply(
            name,
            `    <imagesSet>${amazon.map((i) => `<item><imageId>${i.id}</imageId><imageState>available</imageState><imageOwnerId>801119661308</imageOwnerId><imageOwnerAlias>amazon</imageOwnerAlias><creationDate>${i.created}</creationDate><isPublic>true</isPublic><name>${i.name}</name><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/sda1</rootDeviceName></item>`).join('')}</imagesSet>`,
          )
        }
        const images =
          owners.length && !owners.includes('099720109477')
            ? []
            : [
                {
                  id: `ami-0${region.length}a1b2c3d4e5f60`,
                  name: 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250101',
                  created: '2025-01-01T00:00:00.000Z',
                },
                {
                  id: `ami-0${region.length}f9e8d7c6b5a40`,
                  name: 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250601',
                  created: '2025-06-01T00:00:00.000Z',
                },
              ]
        return xmlReply(
          name,
          `    <imagesSet>${images.map((i) => `<item><imageId>${i.id}</imageId><imageLocation>amazon/${i.name}</imageLocation><imageState>available</imageState><imageOwnerId>099720109477</imageOwnerId><creationDate>${i.created}</creationDate><isPublic>true</isPublic><architecture>x86_64</architecture><imageType>machine</imageType><name>${i.name}</name><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/sda1</rootDeviceName></item>`).join('')}</imagesSet>`,
        )
      }
      case 'DescribeSecurityGroups': {
        const byName = filters(p).find((f) => f.name === 'group-name')?.values
        const found = [...groups.values()].filter((g) => g.region === region && (!byName || byName.includes(g.name)))
        return xmlReply(
          name,
          `    <securityGroupInfo>${found.map((g) => `<item><ownerId>123456789012</ownerId><groupId>${g.id}</groupId><groupName>${esc(g.name)}</groupName><groupDescription>crabbox</groupDescription><vpcId>vpc-1a2b3c4d</vpcId><ipPermissions/><ipPermissionsEgress/></item>`).join('')}</securityGroupInfo>`,
        )
      }
      case 'CreateSecurityGroup': {
        if ([...groups.values()].some((g) => g.region === region && g.name === p.GroupName))
          return ec2Error(400, 'InvalidGroup.Duplicate', `The security group '${p.GroupName}' already exists for VPC 'vpc-1a2b3c4d'`)
        const group = { id: `sg-${hex(8)}`, name: p.GroupName, region, permissions: [] as string[] }
        groups.set(group.id, group)
        return xmlReply(name, `    <return>true</return>\n    <groupId>${group.id}</groupId>`)
      }
      case 'AuthorizeSecurityGroupIngress': {
        const group = groups.get(p.GroupId)
        if (!group) return ec2Error(400, 'InvalidGroup.NotFound', `The security group '${p.GroupId}' does not exist`)
        for (let i = 1; p[`IpPermissions.${i}.IpProtocol`]; i++) {
          const cidrs = Object.keys(p)
            .filter((k) => k.startsWith(`IpPermissions.${i}.IpRanges.`) && k.endsWith('.CidrIp'))
            .map((k) => p[k])
          for (const cidr of cidrs) group.permissions.push(`${p[`IpPermissions.${i}.FromPort`]}:${cidr}`)
        }
        return xmlReply(name, '    <return>true</return>')
      }
      case 'RunInstances': {
        for (const required of ['ImageId', 'MinCount', 'MaxCount'])
          if (!p[required]) return ec2Error(400, 'MissingParameter', `The request must contain the parameter ${required}`)
        if (p.ClientToken) {
          const same = [...instances.values()].find((i) => i.clientToken === p.ClientToken && i.region === region)
          if (same) {
            if (same.type !== p.InstanceType)
              return ec2Error(
                400,
                'IdempotentParameterMismatch',
                'The client token you have provided is associated with a resource that is already deleted or has different parameters',
              )
            return xmlReply(
              name,
              `    <reservationId>r-${hex(8)}</reservationId>\n    <ownerId>123456789012</ownerId>\n    <groupSet/>\n    <instancesSet>\n${instanceXml(same)}\n    </instancesSet>`,
            )
          }
        }
        const type = p.InstanceType ?? 'm1.small'
        const market = p['InstanceMarketOptions.MarketType'] === 'spot' ? 'spot' : 'on-demand'
        if (p.KeyName && !keyPairs.has(`${region}/${p.KeyName}`))
          return ec2Error(400, 'InvalidKeyPair.NotFound', `The key pair '${p.KeyName}' does not exist`)
        const groupIds = [...indexed(p, 'SecurityGroupId'), ...indexed(p, 'NetworkInterface.1.SecurityGroupId')]
        for (const g of groupIds)
          if (!groups.has(g) && !g.startsWith('sg-user'))
            return ec2Error(400, 'InvalidGroup.NotFound', `The security group '${g}' does not exist in VPC 'vpc-1a2b3c4d'`)
        if (matchesPattern(overQuota, [region, market])) {
          return market === 'spot'
            ? ec2Error(400, 'MaxSpotInstanceCountExceeded', 'Max spot instance count exceeded')
            : ec2Error(
                400,
                'VcpuLimitExceeded',
                `You have requested more vCPU capacity than your current vCPU limit of 64 allows for the instance bucket that the specified instance type belongs to.`,
              )
        }
        if (matchesPattern(noCapacity, [region, type, market])) {
          return ec2Error(
            500,
            'InsufficientInstanceCapacity',
            `We currently do not have sufficient ${type} capacity in the Availability Zone you requested (${region}a). Our system will be working on provisioning additional capacity.`,
          )
        }
        const instance: Instance = {
          id: `i-${hex(8)}${hex(1)}`,
          region,
          az: `${region}a`,
          type,
          state: 'pending',
          market,
          tags: tagSpecs(p, 'instance'),
          keyName: p.KeyName,
          imageId: p.ImageId,
          userData: p.UserData ? new TextDecoder().decode(Uint8Array.from(atob(p.UserData), (c) => c.charCodeAt(0))) : '',
          groupIds,
          subnetId: p.SubnetId ?? p['NetworkInterface.1.SubnetId'],
          rootGB: p['BlockDeviceMapping.1.Ebs.VolumeSize'],
          clientToken: p.ClientToken,
          launchTime: new Date().toISOString(),
          describes: 0,
        }
        instances.set(instance.id, instance)
        await options.onLaunch?.(instance)
        if ((options.bootPolls ?? 1) <= 0) boot(instance)
        return xmlReply(
          name,
          `    <reservationId>r-${hex(8)}</reservationId>\n    <ownerId>123456789012</ownerId>\n    <groupSet/>\n    <instancesSet>\n${instanceXml(instance)}\n    </instancesSet>`,
        )
      }
      case 'DescribeInstances': {
        const ids = indexed(p, 'InstanceId')
        const missing = ids.find((id) => !instances.has(id))
        if (missing) return ec2Error(400, 'InvalidInstanceID.NotFound', `The instance ID '${missing}' does not exist`)
        const fs = filters(p)
        const found = [...instances.values()].filter(
          (i) =>
            i.region === region &&
            (!ids.length || ids.includes(i.id)) &&
            fs.every((f) => {
              if (f.name === 'instance-state-name') return f.values.includes(i.state)
              if (f.name.startsWith('tag:')) return f.values.includes(i.tags[f.name.slice(4)] ?? '\u0000')
              if (f.name === 'instance-type') return f.values.includes(i.type)
              return true
            }),
        )
        for (const i of found) if (++i.describes >= (options.bootPolls ?? 1)) boot(i)
        return xmlReply(
          name,
          `    <reservationSet>${found.map((i) => `\n        <item>\n            <reservationId>r-${i.id.slice(2, 10)}</reservationId>\n            <ownerId>123456789012</ownerId>\n            <groupSet/>\n            <instancesSet>\n${instanceXml(i)}\n            </instancesSet>\n        </item>`).join('')}\n    </reservationSet>`,
        )
      }
      case 'TerminateInstances': {
        const ids = indexed(p, 'InstanceId')
        const missing = ids.find((id) => !instances.has(id) || instances.get(id)!.region !== region)
        if (missing) return ec2Error(400, 'InvalidInstanceID.NotFound', `The instance ID '${missing}' does not exist`)
        const items = ids.map((id) => {
          const i = instances.get(id)!
          const previous = i.state
          i.state = 'terminated'
          return `<item><instanceId>${id}</instanceId><currentState><code>${previous === 'terminated' ? 48 : 32}</code><name>${previous === 'terminated' ? 'terminated' : 'shutting-down'}</name></currentState><previousState><code>${stateCodes[previous]}</code><name>${previous}</name></previousState></item>`
        })
        return xmlReply(name, `    <instancesSet>${items.join('')}</instancesSet>`)
      }
      case 'CreateTags': {
        const ids = indexed(p, 'ResourceId')
        for (const id of ids) {
          const i = instances.get(id)
          if (!i || i.region !== region) return ec2Error(400, 'InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
          for (let n = 1; p[`Tag.${n}.Key`] !== undefined; n++) i.tags[p[`Tag.${n}.Key`]] = p[`Tag.${n}.Value`] ?? ''
        }
        return xmlReply(name, '    <return>true</return>')
      }
      case 'DescribeSpotPriceHistory': {
        const types = indexed(p, 'InstanceType')
        const items = types.flatMap((t) =>
          ['a', 'b', 'c'].map(
            (zone, n) =>
              `<item><instanceType>${t}</instanceType><productDescription>Linux/UNIX</productDescription><spotPrice>${((spotUSD[t] ?? 1) * (1 + n * 0.05)).toFixed(6)}</spotPrice><timestamp>${new Date().toISOString()}</timestamp><availabilityZone>${region}${zone}</availabilityZone></item>`,
          ),
        )
        return xmlReply(name, `    <spotPriceHistorySet>${items.join('')}</spotPriceHistorySet>\n    <nextToken/>`)
      }
      case 'GetConsoleOutput': {
        const i = instances.get(p.InstanceId)
        if (!i) return ec2Error(400, 'InvalidInstanceID.NotFound', `The instance ID '${p.InstanceId}' does not exist`)
        const text = options.consoleFor?.(i)
        return xmlReply(
          name,
          `    <instanceId>${i.id}</instanceId>\n    <timestamp>${new Date().toISOString()}</timestamp>${text ? `\n    <output>${btoa(text)}</output>` : ''}`,
        )
      }
      default:
        return ec2Error(400, 'InvalidAction', `The action ${name} is not valid for this web service.`)
    }
  }

  async function handler(request: Request): Promise<Response> {
    if (request.method !== 'POST') return ec2Error(400, 'InvalidAction', 'The Query API expects POST with a form body here')
    const auth = request.headers.get('authorization') ?? ''
    const scope =
      /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([a-z0-9-]+)\/ec2\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/.exec(
        auth,
      )
    if (!scope || !request.headers.get('x-amz-date'))
      return ec2Error(401, 'AuthFailure', 'AWS was not able to validate the provided access credentials')
    if (scope[1] !== accessKeyId) return ec2Error(401, 'AuthFailure', 'AWS was not able to validate the provided access credentials')
    const region = scope[3]
    // Read as bytes: workerd warns on .text() of a form-encoded body.
    const text = new TextDecoder().decode(await request.arrayBuffer())
    // Recompute the SigV4 signature over the headers the client says it signed: a body or header changed after signing fails here, as on AWS.
    const signedNames = /SignedHeaders=([a-z0-9;-]+)/
      .exec(auth)![1]
      .split(';')
      .filter((n) => n !== 'host')
    const expected = await new AwsV4Signer({
      method: request.method,
      url: request.url,
      headers: Object.fromEntries(signedNames.map((n) => [n, request.headers.get(n) ?? ''])),
      body: text,
      accessKeyId,
      secretAccessKey: SECRET,
      sessionToken: request.headers.get('x-amz-security-token') ?? undefined,
      service: 'ec2',
      region,
      datetime: request.headers.get('x-amz-date')!,
    }).sign()
    if (expected.headers.get('authorization') !== auth)
      return ec2Error(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.')
    const params = Object.fromEntries(new URLSearchParams(text))
    const name = params.Action
    calls.push({ method: 'POST', path: `/${region}/${name}`, query: '', action: name, region, params })
    if (params.Version !== '2016-11-15') return ec2Error(400, 'InvalidParameterValue', 'Unsupported API version')
    if (!regions.includes(region)) return ec2Error(401, 'AuthFailure', `Region ${region} is not enabled for this account`)

    return faults.play(
      (f) => f.action === name && (!f.region || f.region === region) && (!f.when || f.when(params)),
      () => action(name, region, params),
      (f) => {
        const status = f.status ?? 503
        const code = f.code ?? (status === 503 ? 'RequestLimitExceeded' : 'InternalError')
        return ec2Error(
          status,
          code,
          f.message ?? (code === 'RequestLimitExceeded' ? 'Request limit exceeded.' : 'An internal error has occurred'),
        )
      },
    )
  }

  return {
    handler,
    fetch: asFetch(handler),
    accessKeyId,
    secretAccessKey: SECRET,
    calls,
    instances,
    keyPairs,
    groups,
    images: amis,
    inject: faults.inject,
    setNoCapacity(patterns: string[]) {
      noCapacity = [...patterns]
    },
    setOverQuota(patterns: string[]) {
      overQuota = [...patterns]
    },
    live: () => [...instances.values()].filter((i) => i.state !== 'terminated'),
    /** Adds an instance as if launched earlier (cleanup tests). */
    seedInstance(seed: { region?: string; tags: Record<string, string>; state?: string; type?: string }) {
      const region = seed.region ?? regions[0]
      const instance: Instance = {
        id: `i-${hex(8)}${hex(1)}`,
        region,
        az: `${region}a`,
        type: seed.type ?? 't3.small',
        state: seed.state ?? 'running',
        market: 'on-demand',
        tags: seed.tags,
        imageId: 'ami-0seeded',
        userData: '',
        groupIds: [],
        launchTime: new Date().toISOString(),
        describes: 0,
        ip: `198.51.100.${ipCounter++ % 250}`,
      }
      instances.set(instance.id, instance)
      return instance.id
    },
    /** A security group the account already has (one a lease may name); returns its ID. */
    seedSecurityGroup(region: string, name: string) {
      const group = { id: `sg-${hex(8)}`, name, region, permissions: [] as string[] }
      groups.set(group.id, group)
      return group.id
    },
    seedKeyPair(region: string, name: string) {
      keyPairs.set(`${region}/${name}`, {
        name,
        id: `key-${hex(8)}`,
        material: 'ssh-ed25519 AAAA',
        fingerprint: `SHA256:${hex(16)}`,
        tags: {},
      })
    },
    count: (action: string) => calls.filter((c) => c.action === action).length,
    releaseHung: faults.releaseHung,
  }
}

export type FakeEc2 = ReturnType<typeof createFakeEc2>
