// Training progress on a terminal: one redrawn line with a bar (step, loss, tokens/s, ETA) on a
// TTY; plain lines every `every` steps otherwise (logs, CI, pipes).

export interface ProgressStream {
  write(s: string): unknown
  readonly isTTY?: boolean
  readonly columns?: number
}

export interface ProgressUpdate {
  step: number // steps completed
  totalSteps: number
  loss: number
  tokensPerSecond: number
  /** Seconds left at the current rate. */
  etaSeconds: number
  lr: number
  evalLoss?: number
}

export class ProgressReporter {
  private drawn = false

  /** `every`: plain-line cadence in steps when not a TTY. */
  constructor (private readonly out: ProgressStream, private readonly every: number) {}

  update (u: ProgressUpdate): void {
    const text = `step ${u.step}/${u.totalSteps} | loss ${u.loss.toFixed(4)} | ${formatRate(u.tokensPerSecond)} tok/s | lr ${u.lr.toExponential(2)}` +
      (u.evalLoss != null ? ` | eval ${u.evalLoss.toFixed(4)}` : '') + ` | ETA ${formatDuration(u.etaSeconds)}`
    if (this.out.isTTY === true) {
      const width = 24
      const filled = Math.round(width * Math.min(1, u.step / Math.max(1, u.totalSteps)))
      const bar = `[${'='.repeat(filled)}${filled < width ? '>' : ''}${' '.repeat(Math.max(0, width - filled - 1))}]`
      let line = `${bar} ${text}`
      const cols = this.out.columns ?? 120
      if (line.length > cols - 1) line = line.slice(0, cols - 1)
      this.out.write(`\r\x1b[2K${line}`)
      this.drawn = true
    } else if (u.step % this.every === 0 || u.step === u.totalSteps || u.step === 1) {
      this.out.write(text + '\n')
    }
  }

  /** A message on its own line (eval results, checkpoints), keeping the bar below it. */
  note (msg: string): void {
    if (this.drawn) this.out.write('\r\x1b[2K')
    this.out.write(msg + '\n')
    this.drawn = false
  }

  /** Ends the bar's line. */
  done (): void {
    if (this.drawn) this.out.write('\n')
    this.drawn = false
  }
}

export function formatDuration (s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?'
  s = Math.round(s)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`
}

function formatRate (x: number): string {
  return x >= 10000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0)
}
