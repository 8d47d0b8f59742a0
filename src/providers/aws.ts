import {
  awsConsoleHostKeys,
  awsMachineState,
  awsMarkets,
  awsRegions,
  createAwsMachine,
  createEc2Api,
  deleteAwsMachine,
  findAwsMachine,
  listAwsMachines,
  touchAwsMachine,
} from '../cloud/ec2-api.js'
import type { Config } from '../config/schema.js'
import { awsCredentials } from './cloud/credentials.js'
import { directCloudProvider, type CloudBackend } from './cloud/direct.js'

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
