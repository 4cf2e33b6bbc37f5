// The demo's one live display. On a TTY: a panel redrawn in place (cursor up, clear to end) with
// the step and ETA, loss, microbatch rate, bytes sent and nodes per stage; notes (a node joined,
// exited, ...) print above it. Elsewhere (a pipe, a CI log): one plain line every `intervalS`
// seconds, and notes as their own lines.
import type { SwarmSnapshot } from './swarm-view.ts'

export interface DisplayOptions {
  readonly tty: boolean
  /** Seconds between plain lines (non-TTY); default 5. */
  readonly intervalS?: number
  readonly title: string
  /** Seconds since the demo started, for the notes' timestamps (default: the last snapshot's). */
  readonly clock?: () => number
}

interface Sample { t: number, mb: number, tokens: number, step: number }

export class LiveDisplay {
  private readonly out: NodeJS.WritableStream
  private readonly opts: DisplayOptions
  private panelLines = 0
  private lastPlain = -Infinity
  private printed?: SwarmSnapshot
  private readonly history: Sample[] = []
  private last?: SwarmSnapshot
  private firstLoss: number | null = null
  /** After done(): notes are plain lines, the panel is not redrawn. */
  private finished = false

  constructor (out: NodeJS.WritableStream, opts: DisplayOptions) {
    this.out = out
    this.opts = opts
  }

  update (s: SwarmSnapshot): void {
    this.last = s
    this.firstLoss ??= s.lossCurve[0]?.[1] ?? null
    this.history.push({ t: s.elapsedS, mb: s.microbatchesDone, tokens: s.tokens, step: s.step })
    while (this.history.length > 2 && this.history[0].t < s.elapsedS - 15) this.history.shift()
    if (this.opts.tty) {
      this.redraw(this.panel(s))
    } else if (s.elapsedS - this.lastPlain >= (this.opts.intervalS ?? 5)) {
      this.lastPlain = s.elapsedS
      this.printed = s
      this.out.write(this.plainLine(s) + '\n')
    }
  }

  /** A line above the panel (TTY) or in the log. */
  note (text: string): void {
    if (this.opts.tty && this.finished) {
      this.out.write(text + '\n')
    } else if (this.opts.tty) {
      this.clear()
      this.out.write(text + '\n')
      if (this.last != null) this.redraw(this.panel(this.last))
    } else {
      this.out.write(`[${clock(this.opts.clock?.() ?? this.last?.elapsedS ?? 0)}] ${text}\n`)
    }
  }

  /** Leaves the last panel on screen (TTY) or writes a final line. */
  done (): void {
    if (!this.opts.tty && this.last != null && this.last !== this.printed) this.out.write(this.plainLine(this.last) + '\n')
    this.panelLines = 0
    this.finished = true
  }

  /** Microbatches/s and tokens/s over the last ~15 s. */
  rates (): { mbPerS: number, tokensPerS: number } {
    const a = this.history[0]
    const b = this.history[this.history.length - 1]
    if (a == null || b == null || b.t - a.t < 1e-6) return { mbPerS: 0, tokensPerS: 0 }
    return { mbPerS: (b.mb - a.mb) / (b.t - a.t), tokensPerS: (b.tokens - a.tokens) / (b.t - a.t) }
  }

  /** Seconds left, from the step rate since the first step; null before two steps. */
  eta (s: SwarmSnapshot): number | null {
    const firstStep = this.history.find(h => h.step > 0)
    if (firstStep == null || s.step <= firstStep.step || s.steps <= 0) return null
    return (s.steps - s.step) * (s.elapsedS - firstStep.t) / (s.step - firstStep.step)
  }

  panel (s: SwarmSnapshot): string[] {
    const { mbPerS, tokensPerS } = this.rates()
    const eta = this.eta(s)
    const frac = s.steps > 0 ? Math.min(1, s.step / s.steps) : 0
    const bar = '#'.repeat(Math.round(frac * 30)).padEnd(30, '.')
    const nodes = s.nodesPerStage.reduce((a, b) => a + b, 0)
    const lines = [
      `${this.opts.title}  |  ${s.stages} stages, ${nodes} training nodes  |  ${clock(s.elapsedS)}`,
      `step  ${s.step}/${s.steps} [${bar}] ${(frac * 100).toFixed(0)}%  ETA ${eta != null ? clock(eta) : '--'}`,
      `loss  ${fmtLoss(s.lossLast)}${this.firstLoss != null ? ` (first ${fmtLoss(this.firstLoss)})` : ''}  eval ${fmtLoss(s.evalLoss)}`,
      `work  ${s.microbatchesDone} microbatches, ${mbPerS.toFixed(1)}/s, ${s.microbatchesDropped} dropped, ${s.microbatchesRetried} retried; ${Math.round(tokensPerS)} tokens/s`,
      `sent  ${bytes(s.bytesForward)} forward, ${bytes(s.bytesBackward)} backward${perToken(s)}`
    ]
    for (let st = 0; st < s.stages; st++) {
      const seen = s.peersPerStage != null ? `, seen by peers: ${s.peersPerStage[st]}` : ''
      lines.push(`stage ${st}  ${s.nodesPerStage[st]} node${s.nodesPerStage[st] === 1 ? '' : 's'}${seen}`)
    }
    return lines
  }

  plainLine (s: SwarmSnapshot): string {
    const { mbPerS } = this.rates()
    const eta = this.eta(s)
    return `[${clock(s.elapsedS)}] step ${s.step}/${s.steps} loss ${fmtLoss(s.lossLast)} eval ${fmtLoss(s.evalLoss)} ` +
      `mb/s ${mbPerS.toFixed(1)} dropped ${s.microbatchesDropped} sent ${bytes(s.bytesForward + s.bytesBackward)} ` +
      `nodes/stage ${s.nodesPerStage.join('/')} eta ${eta != null ? clock(eta) : '--'}`
  }

  private redraw (lines: string[]): void {
    this.clear()
    this.out.write(lines.join('\n') + '\n')
    this.panelLines = lines.length
  }

  private clear (): void {
    // cursor to the start of the panel's first line, then erase to the end of the screen
    if (this.panelLines > 0) this.out.write(`\x1b[${this.panelLines}F\x1b[J`)
    this.panelLines = 0
  }
}

export function clock (seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`
}

export function bytes (n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`
  return `${n} B`
}

function fmtLoss (x: number | null): string {
  return x != null ? x.toFixed(3) : '--'
}

/** "; 68.4 B/token per boundary" (encoded activations + gradients), once there is traffic to measure. */
function perToken (s: SwarmSnapshot): string {
  if (s.boundaryTokensForward <= 0 || s.boundaryTokensBackward <= 0) return ''
  const b = s.boundaryBytesForward / s.boundaryTokensForward + s.boundaryBytesBackward / s.boundaryTokensBackward
  return `; ${b.toFixed(1)} B/token per boundary`
}
