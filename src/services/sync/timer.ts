export interface SyncPhase {
  name: string
  ms: number
  skipped?: boolean
  reason?: string
}

const PHASES = ['manifest', 'fingerprint', 'fingerprint_remote', 'prune', 'transfer', 'git_seed', 'hydrate', 'finalize'] as const

/** Per-phase timings for `--timing-json`: each phase named once, in pipeline order. */
export class Timer {
  readonly phases: SyncPhase[] = []
  /** `start`: when the step began, if before this timer existed (performance.now()). */
  constructor(private readonly start = performance.now()) {}
  async phase<T>(name: string, work: () => Promise<T>): Promise<T> {
    const t0 = performance.now()
    try {
      return await work()
    } finally {
      this.add(name, performance.now() - t0)
    }
  }
  add(name: string, ms: number, extra: Partial<SyncPhase> = {}): void {
    const existing = this.phases.find((phase) => phase.name === name && !phase.skipped)
    if (existing) existing.ms += Math.round(ms)
    else this.phases.push({ name, ms: Math.round(ms), ...extra })
  }
  /** Says why a phase that ran took the way it did (e.g. which check proved the checkout unchanged). */
  note(name: string, reason: string): void {
    const existing = this.phases.find((phase) => phase.name === name)
    if (existing) existing.reason = reason
  }
  skip(name: string, reason: string): void {
    const existing = this.phases.find((phase) => phase.name === name)
    if (!existing) this.phases.push({ name, ms: 0, skipped: true, reason })
    else if (existing.ms === 0) Object.assign(existing, { skipped: true, reason })
  }
  /** Phases in pipeline order, each named once. */
  result(): { phases: SyncPhase[]; totalMs: number } {
    const order = (name: string) => {
      const i = (PHASES as readonly string[]).indexOf(name)
      return i === -1 ? PHASES.length : i
    }
    return { phases: [...this.phases].sort((a, b) => order(a.name) - order(b.name)), totalMs: Math.round(performance.now() - this.start) }
  }
}
