import { BaseCommand } from '../base-command.js'
import { CrabboxError } from '../errors.js'
import { runDoctor, type DoctorReport } from '../services/doctor.js'
import { renderDoctorReport } from '../ui/doctor.js'

export default class Doctor extends BaseCommand<typeof Doctor> {
  static override summary = 'Check local tools, config, the broker and provider credentials'
  static override description =
    'Prints one line per check; every failed check comes with its fix. Exits 1 when anything failed. With a broker configured it checks health, your login and the admin token; without one, the direct-mode provider prerequisites.'
  static override examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --json']

  async run(): Promise<DoctorReport> {
    const report = await runDoctor({ cwd: process.cwd(), warn: (message) => this.progress.warn(message) })
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
