import { setTimeout as sleep } from 'node:timers/promises'
import { setUserConfigValues } from '../config/write.js'
import { CrabboxError, usageError } from '../errors.js'
import { AMI_ID_FORM, AMI_ID_PATTERN, IMAGE_NAME_FORM, IMAGE_NAME_PATTERN, ImageResponse, type ImageRecord } from '../protocol/images.js'
import { awsImages } from '../providers/aws.js'
import { brokerClient, type BrokerClient } from '../transport/broker/client.js'
import type { ServiceContext } from './context.js'
import { requireAdminBroker } from './broker-access.js'

/**
 * `image create` and `image promote`: AWS images (AMIs) baked from a lease's
 * machine. With a broker, through its image routes (the admin token when one is
 * set, else the user token: a lease's owner may image it). Without one, with
 * the aws provider, straight to EC2; promoting there sets `aws.ami` in the user
 * config, the AMI direct-mode AWS leases start from.
 */

export interface ImageCreateOptions {
  lease: string
  name: string
  noReboot: boolean
  wait: boolean
  waitTimeoutMs: number
  /** Between state checks while waiting (15 s). */
  pollMs?: number
}

/** Where an image comes from: the broker, or EC2 directly. */
interface ImageSource {
  create(lease: string, name: string, noReboot: boolean): Promise<ImageRecord>
  get(id: string, region: string): Promise<ImageRecord>
}

const imagePath = (id: string) => `/v1/images/${encodeURIComponent(id)}`

function brokerSource(client: BrokerClient, admin: boolean): ImageSource {
  return {
    create: async (lease, name, noReboot) =>
      (await client.request('POST', '/v1/images', { admin, body: { leaseID: lease, name, noReboot }, schema: ImageResponse })).image,
    get: async (id) => (await client.request('GET', imagePath(id), { admin, schema: ImageResponse })).image,
  }
}

function directSource(context: ServiceContext, what: string): ImageSource {
  if (context.config.provider !== 'aws')
    throw usageError(
      `${what} makes AWS images: it needs a broker or the aws provider (provider is ${context.config.provider})`,
      'Configure a broker (`crabbox login`), or run with --provider aws (AWS credentials in the environment).',
    )
  const images = awsImages(context.config)
  const notFound = (id: string, region: string) =>
    new CrabboxError(`image ${id} not found in ${region}`, { exit: 'notFound', hint: 'Check the AMI ID and aws.region.' })
  return {
    create: async (lease, name, noReboot) => {
      const image = await images.create(lease, { name, noReboot })
      return { id: image.id, name: image.name, state: image.state, region: image.region, leaseID: image.leaseID }
    },
    get: async (id, region) => {
      const image = await images.describe(id, region)
      if (!image) throw notFound(id, region)
      return { id: image.id, name: image.name, state: image.state, region: image.region }
    },
  }
}

function checkName(name: string): void {
  if (!IMAGE_NAME_PATTERN.test(name)) throw usageError(`invalid --name ${JSON.stringify(name)}: expected ${IMAGE_NAME_FORM}`)
}

function checkAmi(id: string): void {
  if (!AMI_ID_PATTERN.test(id)) throw usageError(`invalid image ID ${JSON.stringify(id)}: expected ${AMI_ID_FORM}`)
}

/** Polls until the image is available; `failed` (or any end state but available) is exit 5, the timeout exit 1. */
async function waitAvailable(context: ServiceContext, source: ImageSource, image: ImageRecord, options: ImageCreateOptions) {
  const deadline = Date.now() + options.waitTimeoutMs
  context.progress.phase(`waiting for image ${image.id} (${image.state})`)
  let current = image
  for (;;) {
    current = { ...current, ...(await source.get(current.id, current.region)) }
    if (current.state === 'available') {
      context.progress.done(`image ${current.id} available`)
      return current
    }
    if (current.state !== 'pending') {
      context.progress.fail()
      throw new CrabboxError(`image ${current.id} is ${current.state}`, {
        exit: 'provisioning',
        code: 'image_failed',
        hint: 'The cloud could not make the image; check the lease machine and try again.',
      })
    }
    if (Date.now() >= deadline) {
      context.progress.fail()
      throw new CrabboxError(`image ${current.id} is still ${current.state} after the --wait-timeout`, {
        hint: `It may still finish: \`crabbox image promote ${current.id}\` works once it is available.`,
      })
    }
    context.progress.phase(`waiting for image ${current.id} (${current.state})`)
    await sleep(Math.min(options.pollMs ?? 15_000, Math.max(0, deadline - Date.now())))
  }
}

/** `image create`: bakes an image of the lease's machine; with `wait`, returns once it is available. */
export async function createImage(context: ServiceContext, options: ImageCreateOptions): Promise<ImageRecord> {
  checkName(options.name)
  const client = brokerClient(context.config)
  const source = client ? brokerSource(client, Boolean(context.config.broker.adminToken)) : directSource(context, 'image create')
  context.progress.phase(`creating image ${options.name} of ${options.lease}`)
  let image: ImageRecord
  try {
    image = await source.create(options.lease, options.name, options.noReboot)
  } catch (error) {
    context.progress.fail()
    throw error
  }
  context.progress.done(`image ${image.id} ${image.state}`)
  return options.wait && image.state !== 'available' ? waitAvailable(context, source, image, options) : image
}

/**
 * `image promote`: with a broker, new brokered AWS leases start from this image
 * (admin token). Without one, `aws.ami` in the user config is set to it, once
 * EC2 says it is available.
 */
export async function promoteImage(context: ServiceContext, id: string): Promise<ImageRecord & { config?: string }> {
  checkAmi(id)
  if (brokerClient(context.config)) {
    const client = requireAdminBroker(context, 'image promote')
    return (await client.request('POST', `${imagePath(id)}/promote`, { admin: true, schema: ImageResponse })).image
  }
  const image = await directSource(context, 'image promote').get(id, context.config.aws.region)
  if (image.state !== 'available')
    throw new CrabboxError(`image ${id} is ${image.state}; promote it once it is available`, {
      exit: 'usage',
      code: 'image_not_available',
      hint: `\`crabbox image create … --wait\` waits for it.`,
    })
  const config = await setUserConfigValues({ 'aws.ami': id })
  return { ...image, promotedAt: new Date().toISOString(), config }
}
