// A small line chart as SVG text, written by hand (no dependency): axes with "nice" ticks, axis
// labels, a title, one polyline or a row of markers per series, dashed horizontal reference lines
// (e.g. the unigram baseline) and a legend. Used for the demo's loss curve; any viewer or browser
// opens the file.

export interface ChartSeries {
  readonly name: string
  /** [x, y] points; non-finite ones are skipped. */
  readonly points: ReadonlyArray<readonly [number, number]>
  readonly color?: string
  /** 'line' (default) draws a polyline; 'markers' draws a dot per point. */
  readonly style?: 'line' | 'markers'
}

export interface ChartReference {
  readonly label: string
  readonly y: number
  readonly color?: string
}

export interface ChartOptions {
  readonly title: string
  readonly xLabel: string
  readonly yLabel: string
  readonly width?: number
  readonly height?: number
  /** Dashed horizontal lines across the plot. */
  readonly references?: readonly ChartReference[]
}

/** Plot area margins: left leaves room for y tick labels and the rotated y label. */
const MARGIN = { left: 64, right: 20, top: 40, bottom: 52 }
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e']

export function lossChartSvg (series: readonly ChartSeries[], opts: ChartOptions): string {
  const W = opts.width ?? 640
  const H = opts.height ?? 400
  const px0 = MARGIN.left
  const px1 = W - MARGIN.right
  const py0 = MARGIN.top
  const py1 = H - MARGIN.bottom
  const finite = series.map(s => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)))
  const refs = (opts.references ?? []).filter(r => Number.isFinite(r.y))
  const xs = finite.flat().map(p => p[0])
  const ys = [...finite.flat().map(p => p[1]), ...refs.map(r => r.y)]

  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`)
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`)
  out.push(`<text x="${W / 2}" y="${MARGIN.top / 2 + 6}" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(opts.title)}</text>`)
  out.push(`<text x="${(px0 + px1) / 2}" y="${H - 10}" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`)
  out.push(`<text x="16" y="${(py0 + py1) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(py0 + py1) / 2})">${escapeXml(opts.yLabel)}</text>`)

  if (xs.length === 0) {
    out.push(`<rect x="${px0}" y="${py0}" width="${px1 - px0}" height="${py1 - py0}" fill="none" stroke="#333333"/>`)
    out.push(`<text x="${(px0 + px1) / 2}" y="${(py0 + py1) / 2}" text-anchor="middle" fill="#888888">no data</text>`)
    out.push('</svg>')
    return out.join('\n') + '\n'
  }

  const xt = niceTicks(Math.min(...xs), Math.max(...xs), 6)
  const yt = niceTicks(Math.min(...ys), Math.max(...ys), 6)
  const sx = (x: number): number => px0 + (x - xt.min) / (xt.max - xt.min) * (px1 - px0)
  const sy = (y: number): number => py1 - (y - yt.min) / (yt.max - yt.min) * (py1 - py0)

  // grid and tick labels
  for (const t of yt.ticks) {
    const y = fmt(sy(t))
    out.push(`<line x1="${px0}" y1="${y}" x2="${px1}" y2="${y}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${px0 - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${tickLabel(t, yt.step)}</text>`)
  }
  for (const t of xt.ticks) {
    const x = fmt(sx(t))
    out.push(`<line x1="${x}" y1="${py0}" x2="${x}" y2="${py1}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${x}" y="${py1 + 18}" text-anchor="middle">${tickLabel(t, xt.step)}</text>`)
  }
  out.push(`<rect x="${px0}" y="${py0}" width="${px1 - px0}" height="${py1 - py0}" fill="none" stroke="#333333"/>`)

  refs.forEach((r, i) => {
    const y = fmt(sy(r.y))
    const color = r.color ?? '#777777'
    out.push(`<line class="reference" x1="${px0}" y1="${y}" x2="${px1}" y2="${y}" stroke="${color}" stroke-dasharray="6 4"/>`)
    out.push(`<text x="${px1 - 4}" y="${fmt(sy(r.y) - 4 - 12 * i)}" text-anchor="end" fill="${color}">${escapeXml(r.label)}</text>`)
  })

  series.forEach((s, i) => {
    const pts = finite[i]
    const color = s.color ?? PALETTE[i % PALETTE.length]
    if (pts.length === 0) return
    if ((s.style ?? 'line') === 'line') {
      const coords = pts.map(([x, y]) => `${fmt(sx(x))},${fmt(sy(y))}`).join(' ')
      out.push(`<polyline class="series" data-name="${escapeXml(s.name)}" fill="none" stroke="${color}" stroke-width="1.8" stroke-linejoin="round" points="${coords}"/>`)
    } else {
      out.push(`<g class="series" data-name="${escapeXml(s.name)}" fill="${color}">`)
      for (const [x, y] of pts) out.push(`<circle cx="${fmt(sx(x))}" cy="${fmt(sy(y))}" r="3.5"/>`)
      out.push('</g>')
    }
  })

  // legend, top right inside the plot (where a falling loss leaves room), sized to its longest
  // label at ~6.6 px per character of the 12 px font
  const named = series.map((s, i) => ({ s, i })).filter(({ i }) => finite[i].length > 0)
  const legendW = 24 + 6.6 * Math.max(0, ...named.map(({ s }) => s.name.length)) + 12
  const x = fmt(Math.max(px0 + 4, px1 - legendW - 6))
  if (named.length > 0) out.push(`<rect x="${Number(x) - 6}" y="${py0 + 4}" width="${fmt(legendW)}" height="${named.length * 16 + 4}" fill="#ffffff" fill-opacity="0.85" stroke="#cccccc"/>`)
  named.forEach(({ s, i }, row) => {
    const color = s.color ?? PALETTE[i % PALETTE.length]
    const y = py0 + 14 + row * 16
    const x0 = Number(x)
    if ((s.style ?? 'line') === 'line') out.push(`<line x1="${x0}" y1="${y}" x2="${x0 + 18}" y2="${y}" stroke="${color}" stroke-width="2"/>`)
    else out.push(`<circle cx="${x0 + 9}" cy="${y}" r="3.5" fill="${color}"/>`)
    out.push(`<text x="${x0 + 24}" y="${y}" dominant-baseline="middle">${escapeXml(s.name)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}

/** Ticks at 1, 2 or 5 times a power of ten covering [lo, hi]; a flat range is widened. */
export function niceTicks (lo: number, hi: number, target: number): { min: number, max: number, step: number, ticks: number[] } {
  if (hi - lo < 1e-12) {
    const pad = Math.abs(lo) > 1e-12 ? Math.abs(lo) * 0.1 : 1
    lo -= pad
    hi += pad
  }
  const raw = (hi - lo) / Math.max(1, target)
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw) as number
  const min = Math.floor(lo / step) * step
  const max = Math.ceil(hi / step) * step
  const ticks: number[] = []
  for (let k = 0; min + k * step <= max + step * 1e-9; k++) ticks.push(roundTo(min + k * step, step))
  return { min, max, step, ticks }
}

function roundTo (v: number, step: number): number {
  const d = Math.max(0, -Math.floor(Math.log10(step)))
  return Number(v.toFixed(Math.min(12, d)))
}

function tickLabel (v: number, step: number): string {
  const d = Math.max(0, -Math.floor(Math.log10(step) + 1e-9))
  return v.toFixed(Math.min(6, d))
}

function fmt (v: number): string {
  return (Math.round(v * 10) / 10).toString()
}

export function escapeXml (s: string): string {
  return s.replace(/[<>&"']/g, c => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] as string)
}
