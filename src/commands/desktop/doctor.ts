import { BaseCommand } from '../../base-command.js'
import type { CrabboxError } from '../../errors.js'
import { desktopTargetFlags } from '../../flags.js'
import type { DoctorResult } from '../../services/desktop/doctor.js'
import { doctorLines } from '../../ui/desktop.js'

export default class DesktopDoctor extends BaseCommand<typeof DesktopDoctor> {
  static override summary = "Check each layer of a lease's desktop and print the exact fix for what is broken"
  static override description =
    'Checks the X server on :99, the window manager, the loopback VNC server (and that it listens nowhere else), the browser, ' +
    'the input tools (xdotool, xclip) and the screenshot tool. Each broken layer is printed as `problem:` with `rescue:` commands; ' +
    'exit 1 when any layer is broken.'
  static override examples = ['<%= config.bin %> desktop doctor --id blue-crab']
  static override flags = { ...desktopTargetFlags }

  private result?: DoctorResult

  /** Under --json a doctor that found problems still gives every check, beside the error. */
  protected override failureJson(failure: CrabboxError): unknown {
    return { ...this.result, ...(super.failureJson(failure) as object) }
  }

  async run(): Promise<DoctorResult> {
    const { flags } = await this.parse(DesktopDoctor)
    const { desktopDoctor, doctorFailure } = await import('../../services/desktop/doctor.js')
    const result = await desktopDoctor(await this.context(flags), flags)
    this.result = result
    if (!this.jsonEnabled()) for (const line of doctorLines(result.checks)) this.log(line)
    const failure = doctorFailure(result)
    if (failure) throw failure
    return result
  }
}
