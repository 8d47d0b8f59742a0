/** One line of `crabbox doctor`: local checks (`services/doctor.ts`) and the remote ones (`services/remote-doctor.ts`). */
export interface DoctorCheck {
  name: string
  ok: boolean
  detail: string
  /** What to do about a failed check. */
  fix?: string
}

export const pass = (name: string, detail: string): DoctorCheck => ({ name, ok: true, detail })
export const fail = (name: string, detail: string, fix: string): DoctorCheck => ({ name, ok: false, detail, fix })
