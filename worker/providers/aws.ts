import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { BOOTSTRAP_DEFAULTS } from '../../src/cloud/cloud-init.js'
import { candidateTypes } from '../../src/cloud/classes.js'
import { providerKeyName } from '../../src/cloud/cloud-machines.js'
import {
  awsMarkets,
  awsRegions,
  awsSpotHourlyUSD,
  createAwsImage,
  createAwsMachine,
  createEc2Api,
  deleteAwsMachine,
  describeAwsImage,
  findAwsMachine,
  listAwsMachines,
  waitForAwsAddress,
  type Ec2Options,
} from '../../src/cloud/ec2-api.js'
import { setting } from '../env.js'
import { promotedImage } from '../fleet/images.js'
import { bootstrapSettings, cloudCreatePlan, cloudFailure, toBrokerMachine } from './cloud.js'
import type { BrokerProvider, BrokerProviderContext, ImageProvider, ListableProvider, MachineRequest, Placement } from './types.js'

/** A Windows lease's launch settings (image by target, nested virtualization for WSL2). */
const windowsLaunch = (request: MachineRequest) =>
  request.target === 'windows'
    ? { target: 'windows' as const, windowsMode: request.windowsMode === 'wsl2' ? ('wsl2' as const) : ('normal' as const) }
    : {}

/** A macOS lease's launch settings: the macOS image, on the lease's dedicated host, on-demand only (a host has no spot market). */
const macLaunch = (request: MachineRequest) =>
  request.target === 'macos' ? { target: 'macos' as const, macHostId: request.placement?.macHostId, markets: ['on-demand' as const] } : {}

/**
 * AWS EC2 for the broker: spot first with on-demand fallback, candidate types
 * per class, capacity regions in order. Secrets: `AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), or the same names prefixed `CRABBOX_`. Settings: `CRABBOX_AWS_REGION`,
 * `CRABBOX_CAPACITY_REGIONS`, `CRABBOX_CAPACITY_FALLBACK`, `CRABBOX_AWS_AMI`,
 * `CRABBOX_AWS_SECURITY_GROUP_ID`, `CRABBOX_AWS_SUBNET_ID`,
 * `CRABBOX_AWS_INSTANCE_PROFILE`, `CRABBOX_AWS_ROOT_GB`, `CRABBOX_AWS_SSH_CIDRS`,
 * `CRABBOX_AWS_ENDPOINT`.
 *
 * AMI a lease starts from, first found: the lease's `awsAMI`, the promoted image
 * (`POST /v1/images/{ami}/promote`, in its own region), `CRABBOX_AWS_AMI`, the
 * latest Ubuntu 24.04 image. Windows and macOS leases take their `awsAMI` or the
 * latest image of their OS; a macOS lease runs on its `awsMacHostID`, on-demand.
 */

const list = (text: string | undefined) =>
  (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

/**
 * The regions a lease is tried in: those it asked for (`awsRegion` first, then
 * `capacity.regions`), each one of the broker's regions, else the broker's list.
 * A region outside the list is refused: the broker looks for its machines only there.
 */
export function regionsFor(brokerRegions: string[], placement: Placement): string[] {
  const asked = awsRegions(placement.region ?? '', placement.regions ?? [])
  for (const [field, values] of [
    ['awsRegion', placement.region ? [placement.region] : []],
    ['capacity.regions', placement.regions ?? []],
  ] as const) {
    const outside = values.filter((region) => !brokerRegions.includes(region.trim()))
    if (outside.length)
      throw new ApiError(
        400,
        ErrorCode.invalidRequest,
        `${field}: ${outside.join(', ')} ${outside.length === 1 ? 'is' : 'are'} not among this broker's regions (${brokerRegions.join(', ')})`,
      )
  }
  return asked.length ? asked : brokerRegions
}

/** The broker's own security group opens only the default SSH ports; other ports need a group of the lease's own. */
function checkSharedGroupPorts(settings: { sshPort: string; sshFallbackPorts: string[] }): void {
  const open: readonly string[] = [BOOTSTRAP_DEFAULTS.sshPort, ...BOOTSTRAP_DEFAULTS.sshFallbackPorts]
  for (const [field, ports] of [
    ['sshPort', [settings.sshPort]],
    ['sshFallbackPorts', settings.sshFallbackPorts],
  ] as const) {
    const closed = ports.filter((port) => !open.includes(port))
    if (closed.length)
      throw new ApiError(
        400,
        ErrorCode.invalidRequest,
        `${field}: port ${closed.join(', ')} is closed in the broker's security group (it opens ${open.join(', ')}); pass awsSGID for a group that opens it`,
      )
  }
}

export function createAwsBrokerProvider(
  context: BrokerProviderContext,
  overrides: Partial<Ec2Options> = {},
): BrokerProvider & ListableProvider & ImageProvider {
  const env = context.env
  const region = setting(env, 'CRABBOX_AWS_REGION') ?? 'eu-west-1'
  const regions = awsRegions(region, list(setting(env, 'CRABBOX_CAPACITY_REGIONS')))
  const rootGB = Number(setting(env, 'CRABBOX_AWS_ROOT_GB') ?? 400)
  const api = () => {
    // CRABBOX_AWS_*: `crabbox broker dev` forwards only CRABBOX_* variables to the Worker.
    const accessKeyId = setting(env, 'AWS_ACCESS_KEY_ID') ?? setting(env, 'CRABBOX_AWS_ACCESS_KEY_ID')
    const secretAccessKey = setting(env, 'AWS_SECRET_ACCESS_KEY') ?? setting(env, 'CRABBOX_AWS_SECRET_ACCESS_KEY')
    if (!accessKeyId || !secretAccessKey) {
      throw new ApiError(
        503,
        ErrorCode.providerFailed,
        'this broker has no AWS credentials: set the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY secrets',
      )
    }
    return createEc2Api({
      accessKeyId,
      secretAccessKey,
      sessionToken: setting(env, 'AWS_SESSION_TOKEN') ?? setting(env, 'CRABBOX_AWS_SESSION_TOKEN'),
      endpoint: setting(env, 'CRABBOX_AWS_ENDPOINT'),
      fetch: (request) => context.fetch(request),
      ...overrides,
    })
  }

  return {
    name: 'aws',
    bootstraps: true,
    async create(request) {
      const plan = cloudCreatePlan('aws', request)
      const placement = request.placement ?? {}
      const securityGroupId = placement.securityGroupId ?? setting(env, 'CRABBOX_AWS_SECURITY_GROUP_ID')
      const subnetId = placement.subnetId ?? setting(env, 'CRABBOX_AWS_SUBNET_ID')
      // crabbox makes its own security group only in the default VPC.
      if (subnetId && !securityGroupId)
        throw new ApiError(400, ErrorCode.invalidRequest, 'awsSubnetID needs awsSGID too (or CRABBOX_AWS_SECURITY_GROUP_ID on the broker)')
      if (!securityGroupId) checkSharedGroupPorts(bootstrapSettings(request))
      const leaseRegions = regionsFor(regions, placement)
      const client = api()
      // A promoted image and CRABBOX_AWS_AMI are Linux images: a Windows or macOS lease takes only the AMI it asks for.
      const linux = (request.target ?? 'linux') === 'linux'
      const promoted = placement.ami || !linux ? undefined : promotedImage(context.storage, 'aws')
      try {
        const { machine } = await createAwsMachine(client, {
          leaseId: request.leaseId,
          name: plan.name,
          labels: plan.labels,
          instanceTypes: plan.types,
          regions: leaseRegions,
          markets: awsMarkets(request.market, placement.fallback ?? setting(env, 'CRABBOX_CAPACITY_FALLBACK')),
          ami: placement.ami ?? (linux ? setting(env, 'CRABBOX_AWS_AMI') : undefined),
          ...(promoted ? { regionAmi: { region: promoted.region, id: promoted.id } } : {}),
          securityGroupId,
          subnetId,
          // Only the operator picks an IAM role for runners: a lease request cannot.
          instanceProfile: setting(env, 'CRABBOX_AWS_INSTANCE_PROFILE'),
          rootGB: placement.rootGB ?? (Number.isInteger(rootGB) && rootGB > 0 ? rootGB : 400),
          sshPorts: [BOOTSTRAP_DEFAULTS.sshPort, ...BOOTSTRAP_DEFAULTS.sshFallbackPorts],
          sshCIDRs: list(setting(env, 'CRABBOX_AWS_SSH_CIDRS')),
          userData: plan.userData,
          sshPublicKey: request.sshPublicKey,
          keyName: plan.keyName,
          ...windowsLaunch(request),
          ...macLaunch(request),
        })
        const hourly =
          machine.market === 'spot'
            ? await awsSpotHourlyUSD(client, machine.region ?? region, machine.serverType).catch(() => undefined)
            : undefined
        return toBrokerMachine(machine, hourly)
      } catch (error) {
        throw cloudFailure(error)
      }
    },
    async delete(machine) {
      try {
        await deleteAwsMachine(api(), {
          id: machine.id || undefined,
          region: machine.region,
          regions,
          leaseId: machine.leaseId,
          keyName: machine.labels.provider_key || providerKeyName(machine.leaseId),
        })
      } catch (error) {
        throw cloudFailure(error)
      }
    },
    async describe(leaseId) {
      const client = api()
      const found = await findAwsMachine(client, regions, leaseId)
      if (!found) return undefined
      return toBrokerMachine(found.host ? found : await waitForAwsAddress(client, found).catch(() => found))
    },
    async price(serverType) {
      try {
        return await awsSpotHourlyUSD(api(), region, candidateTypes('aws', serverType)[0])
      } catch {
        return undefined
      }
    },
    async list() {
      return (await listAwsMachines(api(), regions)).map((m) => toBrokerMachine(m))
    },
    imageRegion: region,
    async createImage(machine, input) {
      try {
        return await createAwsImage(api(), { region: machine.region ?? region, instanceId: machine.id, ...input })
      } catch (error) {
        throw cloudFailure(error)
      }
    },
    async describeImage(id, imageRegion) {
      try {
        return await describeAwsImage(api(), imageRegion, id)
      } catch (error) {
        throw cloudFailure(error)
      }
    },
  }
}
