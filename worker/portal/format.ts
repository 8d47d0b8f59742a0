/** Small formatting helpers the portal pages share (pure; no HTML). */

/** `3 min ago`, `in 2 h`, from the server's clock (pages are snapshots; live pages update themselves). */
export function relativeTime(iso: string | undefined, now: Date): string {
  if (!iso) return '—'
  const at = Date.parse(iso)
  if (!Number.isFinite(at)) return '—'
  const seconds = Math.round((at - now.getTime()) / 1000)
  const abs = Math.abs(seconds)
  const [value, unit] =
    abs < 60
      ? [abs, 's']
      : abs < 3600
        ? [Math.round(abs / 60), 'min']
        : abs < 86_400
          ? [Math.round(abs / 3600), 'h']
          : [Math.round(abs / 86_400), 'd']
  if (abs < 5) return 'just now'
  return seconds < 0 ? `${value} ${unit} ago` : `in ${value} ${unit}`
}

/** `1.2 GiB`. */
export function bytes(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let n = value
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

/** `1 m 05 s`, `850 ms`. */
export function duration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '—'
  if (ms < 1000) return `${Math.round(ms)} ms`
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} m ${String(s % 60).padStart(2, '0')} s`
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} m`
}

export const usd = (value: number | undefined): string => (value === undefined ? '—' : `$${value.toFixed(2)}`)

export type Tone = 'ok' | 'warn' | 'bad' | 'info'

/** The colour of a lease or run state pill. */
export function stateTone(state: string): Tone {
  if (state === 'active' || state === 'succeeded') return 'ok'
  if (state === 'provisioning' || state === 'running') return 'info'
  if (state === 'failed' || state === 'expired') return 'bad'
  return 'warn'
}

/** Shell-quotes one argument for a copyable command (POSIX single quotes when needed). */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`
}
