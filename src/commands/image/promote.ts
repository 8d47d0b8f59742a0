import { Args } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { leaseFlags } from '../../flags.js'
import type { ImageRecord } from '../../protocol/images.js'
import { promoteImage } from '../../services/image.js'
import { renderImage } from '../../ui/image.js'

export default class ImagePromote extends BaseCommand<typeof ImagePromote> {
  static override summary = 'Make an image the one new AWS leases start from (admin token)'
  static override description =
    'With a broker (POST /v1/images/{ami}/promote, admin token), new brokered AWS leases start from this AMI unless a lease names its own. Without a broker, with the aws provider, it sets aws.ami in the user config. The image must be available.'
  static override examples = ['<%= config.bin %> image promote ami-0123456789abcdef0']
  static override args = { ami: Args.string({ description: 'AMI ID (ami-…)', required: true }) }
  static override flags = { provider: leaseFlags.provider }

  async run(): Promise<ImageRecord> {
    const { args, flags } = await this.parse(ImagePromote)
    const image = await promoteImage(await this.context(flags), args.ami)
    if (!this.jsonEnabled()) process.stdout.write(renderImage(image, 'promoted'))
    return image
  }
}
