import type { DoctorReport } from '../services/doctor.js'

/** One `ok`/`FAIL` line per check, with the fix under a failed one. */
export function renderDoctorReport(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((check) => check.name.length))
  return report.checks
    .map(
      (check) =>
        `${check.ok ? 'ok  ' : 'FAIL'}  ${check.name.padEnd(width)}  ${check.detail}${check.fix ? `\n      ${''.padEnd(width)}  fix: ${check.fix}` : ''}`,
    )
    .join('\n')
    .concat('\n')
}
