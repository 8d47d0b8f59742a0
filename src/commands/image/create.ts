import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { parseDuration } from '../../config/schema.js'
import { usageError } from '../../errors.js'
import { durationFlag, idFlag, leaseFlags } from '../../flags.js'
import type { ImageRecord } from '../../protocol/images.js'
import { createImage } from '../../services/image.js'
import { renderImage } from '../../ui/image.js'

export default class ImageCreate extends BaseCommand<typeof ImageCreate> {
  static override summary = "Bake an AWS image (AMI) of a lease's machine"
  static override description =
    "Asks the broker (POST /v1/images) to make an AMI of the lease's EC2 instance, without stopping it unless --reboot is given. The lease's owner, a manage sharee or the admin token may do it. With --wait it checks every 15 s until the image is available (a failed image is exit 5). Without a broker, with the aws provider, it calls EC2 directly."
  static override examples = [
    '<%= config.bin %> image create --id cbx_0123456789ab --name crabbox-warm-2026-12 --wait',
    '<%= config.bin %> image create --id blue-prawn --name nightly --json',
  ]
  static override flags = {
    id: { ...idFlag, description: 'Lease ID (cbx_…) or slug whose machine is imaged (required)' },
    name: Flags.string({ description: 'Image name: 3 to 128 letters, digits, spaces and ( ) [ ] . / _ -', required: true }),
    wait: Flags.boolean({ description: 'Wait until the image is available', default: false }),
    'wait-timeout': durationFlag({ description: 'How long --wait waits', default: '45m' }),
    reboot: Flags.boolean({
      description: 'Stop the machine while its disk is copied (--no-reboot, the default, keeps it running)',
      allowNo: true,
      default: false,
    }),
    provider: leaseFlags.provider,
  }

  async run(): Promise<ImageRecord> {
    const { flags } = await this.parse(ImageCreate)
    if (!flags.id)
      throw usageError('image create needs the lease: pass --id ID|SLUG', 'e.g. crabbox image create --id blue-prawn --name my-image')
    const image = await createImage(await this.context(flags), {
      lease: flags.id,
      name: flags.name,
      noReboot: !flags.reboot,
      wait: flags.wait,
      waitTimeoutMs: parseDuration(flags['wait-timeout']),
    })
    if (!this.jsonEnabled()) process.stdout.write(renderImage(image))
    return image
  }
}
