import {
  awsConsoleHostKeys,
  awsMachineState,
  awsMarkets,
  awsRegions,
  createAwsImage,
  createAwsMachine,
  createEc2Api,
  deleteAwsMachine,
  describeAwsImage,
  findAwsMachine,
  type AwsImage,
  listAwsMachines,
  touchAwsMachine,
} from '../cloud/ec2-api.js'
import type { Config } from '../config/schema.js'
import { awsCredentials } from './cloud/credentials.js'
import { cloudError, directCloudProvider, type CloudBackend } from './cloud/direct.js'
import { pickByIdOrSlug } from './pick.js'

/**
 * AWS EC2 in direct mode: local credentials (env or ~/.aws/credentials),
 * `aws.region` then `capacity.regions`, spot first unless `capacity.market` is
 * on-demand. EC2 exposes the serial console, so the runner's host keys are
 * pinned from it before the first SSH connection when they show up in time.
 */
export function awsBackend(config: Config): CloudBackend {
  const api = createEc2Api({ ...awsCredentials(), endpoint: config.aws.endpoint })
  const regions = awsRegions(config.aws.region, config.capacity.regions)
  return {
    where: regions.join(', '),
    create: (request) =>
      createAwsMachine(api, {
        ...request,
        instanceTypes: request.types,
        regions,
        markets: awsMarkets(config.capacity.market, config.capacity.fallback),
        ami: config.aws.ami,
        securityGroupId: config.aws.securityGroupId,
        subnetId: config.aws.subnetId,
        instanceProfile: config.aws.instanceProfile,
        rootGB: config.aws.rootGB,
        sshPorts: [config.ssh.port, ...config.ssh.fallbackPorts],
        sshCIDRs: config.aws.sshCIDRs,
        target: request.target,
        windowsMode: request.windowsMode,
        // macOS: on the user's dedicated host, on-demand only (a dedicated host has no spot market); sshd on 22.
        ...(request.target === 'macos' ? { macHostId: config.aws.macHostId, markets: ['on-demand' as const], sshPorts: ['22'] } : {}),
      }),
    find: (leaseId) => findAwsMachine(api, regions, leaseId),
    list: () => listAwsMachines(api, regions),
    delete: (target) => deleteAwsMachine(api, { ...target, regions }),
    touch: (target) => touchAwsMachine(api, target.region ?? config.aws.region, target.id),
    state: (target) => awsMachineState(api, target.region ?? config.aws.region, target.id),
    consoleHostKeys: (machine) => awsConsoleHostKeys(api, machine.region ?? config.aws.region, machine.id),
    consoleWaitMs: Number(process.env.CRABBOX_AWS_CONSOLE_WAIT_MS ?? 90_000),
  }
}

export const awsProvider = directCloudProvider('aws', awsBackend)

/** Images in direct mode: EC2 called with the local credentials, no broker in between. */
export interface AwsImages {
  /** Bakes an image of the direct-mode lease's instance (by lease ID or slug). */
  create(lease: string, input: { name: string; noReboot: boolean }): Promise<AwsImage & { leaseID: string }>
  /** The image in `region` (default `aws.region`), or undefined. */
  describe(id: string, region?: string): Promise<AwsImage | undefined>
}

export function awsImages(config: Config): AwsImages {
  const api = createEc2Api({ ...awsCredentials(), endpoint: config.aws.endpoint })
  const regions = awsRegions(config.aws.region, config.capacity.regions)
  return {
    async create(lease, input) {
      try {
        const machines = (await listAwsMachines(api, regions)).map((machine) => ({
          id: machine.labels.lease ?? '',
          slug: machine.labels.slug ?? '',
          machine,
        }))
        const { id, machine } = pickByIdOrSlug(machines, lease, 'direct-mode aws')
        const image = await createAwsImage(api, {
          region: machine.region ?? config.aws.region,
          instanceId: machine.id,
          ...input,
          tags: { crabbox: 'true', created_by: 'crabbox', lease: id },
        })
        return { ...image, leaseID: id }
      } catch (error) {
        throw cloudError('aws', error)
      }
    },
    async describe(id, region) {
      try {
        return await describeAwsImage(api, region ?? config.aws.region, id)
      } catch (error) {
        throw cloudError('aws', error)
      }
    },
  }
}
