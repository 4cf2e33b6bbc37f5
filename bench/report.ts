// Bench report shape shared by every `layerswarm bench <suite>`, the machine description, timing
// helpers and the human-readable table.
import os from 'node:os'

export interface BenchBaseline { name: string, value: number }

export interface BenchResult {
  name: string
  value: number
  unit: string
  /** The same measurement by the baseline in the same run; null when the baseline is missing. */
  baseline: BenchBaseline | null
  /** value / baseline.value, for every unit (rates: > 1 is better; times, bytes, errors: < 1 is better); null without a baseline. */
  ratio: number | null
}

export interface MachineInfo {
  cpu: string
  cores: number
  node: string
  os: string
  memoryGiB: number
  /** 1-minute load average when the suite started and ended (other work on the machine skews timings). */
  loadAvgStart: number
  loadAvgEnd?: number
}

export interface BenchReport {
  suite: string
  backend: string
  device: string
  machine: MachineInfo
  /** What the baseline was (name, version, library), or why it is missing. */
  baseline: Record<string, unknown>
  results: BenchResult[]
}

export function machineInfo (): MachineInfo {
  return {
    cpu: os.cpus()[0]?.model?.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    node: process.version,
    os: `${os.platform()} ${os.release()} ${os.arch()}`,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30 * 10) / 10,
    loadAvgStart: round(os.loadavg()[0], 2)
  }
}

/** Median of `reps` timed runs (ms) after `warmup` untimed ones. */
export async function medianMs (fn: () => Promise<unknown>, warmup: number, reps: number): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn()
  const times: number[] = []
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now()
    await fn()
    times.push(performance.now() - t0)
  }
  times.sort((a, b) => a - b)
  const mid = times.length >> 1
  return times.length % 2 === 1 ? times[mid] : (times[mid - 1] + times[mid]) / 2
}

export function round (x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x
  const p = 10 ** digits
  return Math.round(x * p) / p
}

/** Fixed-width table for the terminal. */
export function formatTable (report: BenchReport): string {
  const rows = report.results.map(r => [
    r.name,
    `${fmt(r.value)} ${r.unit}`,
    r.baseline === null ? 'missing' : `${fmt(r.baseline.value)} ${r.unit}`,
    r.ratio === null ? '-' : `${fmt(r.ratio)}x`
  ])
  const head = ['result', report.backend, String(report.baseline.name ?? 'baseline'), 'ratio']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ')
  const m = report.machine
  return [
    `${report.suite} on ${report.device}`,
    `machine: ${m.cpu}, ${m.cores} cores, ${m.os}, node ${m.node}, load ${m.loadAvgStart} -> ${m.loadAvgEnd ?? '?'}`,
    `baseline: ${JSON.stringify(report.baseline)}`,
    '',
    line(head),
    line(widths.map(w => '-'.repeat(w))),
    ...rows.map(line),
    '',
    'ratio = value / baseline (rates: > 1 is better; times, bytes and errors: < 1 is better)'
  ].join('\n')
}

function fmt (x: number): string {
  if (!Number.isFinite(x)) return String(x)
  return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2)
}
