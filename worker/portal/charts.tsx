/**
 * Inline SVG charts (no script, no style attributes: the CSP allows neither): sparklines
 * of a telemetry series and horizontal bars with a cap drawn on them.
 */

export interface SparklineProps {
  label: string
  values: number[]
  /** The top of the scale (100 for percentages); else the series' own maximum. */
  max?: number
  unit?: string
}

const WIDTH = 240
const HEIGHT = 48

export function Sparkline(props: SparklineProps) {
  const values = props.values.filter((value) => Number.isFinite(value))
  const last = values.at(-1)
  const caption = `${props.label}: ${last === undefined ? 'no samples' : `${round(last)}${props.unit ?? ''} now`}${
    values.length > 1 ? `, ${values.length} samples, low ${round(Math.min(...values))}, high ${round(Math.max(...values))}` : ''
  }`
  if (values.length < 2)
    return (
      <figure>
        <figcaption>{caption}</figcaption>
      </figure>
    )
  const top = Math.max(props.max ?? 0, ...values, 1e-9)
  const step = WIDTH / (values.length - 1)
  const points = values.map((value, i) => `${(i * step).toFixed(1)},${(HEIGHT - 2 - (value / top) * (HEIGHT - 4)).toFixed(1)}`).join(' ')
  return (
    <figure>
      <svg class="spark" viewBox={`0 0 ${WIDTH} ${HEIGHT}`} preserveAspectRatio="none" role="img" aria-label={caption}>
        <polyline points={points} />
      </svg>
      <figcaption>{caption}</figcaption>
    </figure>
  )
}

const round = (value: number) => (Math.abs(value) >= 10 ? Math.round(value) : Math.round(value * 100) / 100)

export interface Bar {
  label: string
  value: number
  /** A second, lighter figure drawn behind (e.g. the reservation). */
  behind?: number
  text: string
}

/** One bar per row, all on one scale; `cap` (when > 0) is drawn as a line across every bar. */
export function Bars({ bars, cap, label }: { bars: Bar[]; cap: number; label: string }) {
  const rowHeight = 28
  const labelWidth = 220
  const chartWidth = 560
  const top = Math.max(cap, ...bars.map((bar) => Math.max(bar.value, bar.behind ?? 0)), 1e-9) * 1.05
  const x = (value: number) => labelWidth + (value / top) * (chartWidth - labelWidth)
  const height = rowHeight * Math.max(1, bars.length) + 8
  return (
    <svg class="bars" width={chartWidth + 120} height={height} viewBox={`0 0 ${chartWidth + 120} ${height}`} role="img" aria-label={label}>
      <title>{label}</title>
      {bars.map((bar, i) => {
        const y = 4 + i * rowHeight
        return (
          <g>
            <text x={0} y={y + 17}>
              {bar.label.length > 30 ? `${bar.label.slice(0, 29)}…` : bar.label}
            </text>
            <rect class="track" x={labelWidth} y={y + 4} width={chartWidth - labelWidth} height={16} rx={3} />
            {bar.behind !== undefined ? (
              <rect
                class="bar"
                opacity="0.35"
                x={labelWidth}
                y={y + 4}
                width={Math.max(0, x(bar.behind) - labelWidth)}
                height={16}
                rx={3}
              />
            ) : null}
            <rect class="bar" x={labelWidth} y={y + 4} width={Math.max(0, x(bar.value) - labelWidth)} height={16} rx={3} />
            <text x={chartWidth + 6} y={y + 17}>
              {bar.text}
            </text>
          </g>
        )
      })}
      {cap > 0 ? <line class="cap" x1={x(cap)} x2={x(cap)} y1={0} y2={height} /> : null}
    </svg>
  )
}
