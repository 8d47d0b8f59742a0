import { color } from './colors.js'
import { rescueLines } from './rescue.js'

export interface DoctorCheckView {
  layer: string
  status: 'ok' | 'problem' | 'skip'
  detail: string
  rescue: string[]
}

/** `ok <layer>: <detail>` per healthy layer, `problem:`/`rescue:` lines per broken one. */
export function doctorLines(checks: DoctorCheckView[]): string[] {
  return checks.flatMap((check) => {
    if (check.status === 'ok') return [`${color.green('ok')} ${check.layer}: ${check.detail}`]
    if (check.status === 'skip') return [`${color.dim('skip')} ${check.layer}: ${check.detail} (not asked for on this lease)`]
    return rescueLines({ layer: check.layer, problem: check.detail, rescue: check.rescue })
  })
}
