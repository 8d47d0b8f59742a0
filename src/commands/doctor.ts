import { Flags } from '@oclif/core'
import { BaseCommand } from '../base-command.js'
import { CrabboxError } from '../errors.js'
import { idFlag } from '../flags.js'
import { runDoctor, type DoctorReport } from '../services/doctor.js'
import { renderDoctorReport } from '../ui/doctor.js'

export default class Doctor extends BaseCommand<typeof Doctor> {
  static override summary = 'Check local tools, config, the broker and provider credentials'
  static override description =
    'Prints one line per check; every failed check comes with its fix. Exits 1 when anything failed. With a broker configured it checks health, your login and the admin token; without one, the direct-mode provider prerequisites. With --id it also runs the remote doctor on that lease over SSH: tools, free disk, a writable work root.'
  static override examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --json', '<%= config.bin %> doctor --id blue-crab']
  static override flags = {
    id: idFlag,
    provider: Flags.string({ description: 'Provider that holds the --id lease (direct mode)' }),
  }

  async run(): Promise<DoctorReport> {
    const { flags } = await this.parse(Doctor)
    const report = await runDoctor({
      cwd: process.cwd(),
      warn: (message) => this.progress.warn(message),
      id: flags.id,
      flags: { provider: flags.provider },
      progress: this.progress,
    })
    if (this.jsonEnabled()) {
      if (!report.ok) {
        this.logJson(report)
        this.exit(1)
      }
      return report
    }
    process.stdout.write(renderDoctorReport(report))
    const problems = report.checks.filter((check) => !check.ok).length
    if (problems > 0)
      throw new CrabboxError(`doctor found ${problems} problem${problems === 1 ? '' : 's'}`, { exit: 'error', code: 'doctor' })
    return report
  }
}
