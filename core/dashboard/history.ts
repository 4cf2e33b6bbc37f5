// Server-side history of the dashboard's time series, so a page opened late still draws the whole
// curve: a fixed-size ring per series (oldest dropped), sampled by the dashboard's own timer whether
// or not a page is open. The loss curves are the node's own (its status keeps every step), so only
// what the status holds as a current value is sampled here.

/** A fixed-capacity buffer of [x, y] points; push is O(1), the oldest point goes when full. */
export class RingBuffer {
  private readonly xs: Float64Array
  private readonly ys: Float64Array
  private start = 0
  private count = 0

  constructor (readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`ring capacity must be a positive integer, got ${capacity}`)
    this.xs = new Float64Array(capacity)
    this.ys = new Float64Array(capacity)
  }

  get length (): number { return this.count }

  push (x: number, y: number): void {
    const i = (this.start + this.count) % this.capacity
    this.xs[i] = x
    this.ys[i] = y
    if (this.count < this.capacity) this.count++
    else this.start = (this.start + 1) % this.capacity
  }

  last (): [number, number] | undefined {
    if (this.count === 0) return undefined
    const i = (this.start + this.count - 1) % this.capacity
    return [this.xs[i], this.ys[i]]
  }

  /** Columns [xs, ys], oldest first (uPlot's data layout). */
  columns (): [number[], number[]] {
    const xs: number[] = []
    const ys: number[] = []
    for (let k = 0; k < this.count; k++) {
      const i = (this.start + k) % this.capacity
      xs.push(this.xs[i])
      ys.push(this.ys[i])
    }
    return [xs, ys]
  }
}

/** Curves sent to the page: at most this many points each (every k-th point of a longer curve, the last one kept). */
export const MAX_CURVE_POINTS = 1000

/** Thins [x, y] pairs to at most `max` points as columns, keeping the first and the last. */
export function thinCurve (points: ReadonlyArray<readonly [number, number]>, max = MAX_CURVE_POINTS): [number[], number[]] {
  const n = points.length
  const stride = n > max ? Math.ceil(n / max) : 1
  const xs: number[] = []
  const ys: number[] = []
  for (let i = 0; i < n; i += stride) { xs.push(points[i][0]); ys.push(points[i][1]) }
  if (n > 0 && (n - 1) % stride !== 0) { xs.push(points[n - 1][0]); ys.push(points[n - 1][1]) }
  return [xs, ys]
}

/** What the dashboard samples each tick: tokens/s (the token counter's rate) and peers in view, against unix seconds. */
export class DashboardHistory {
  readonly tokensPerS: RingBuffer
  readonly peers: RingBuffer
  /** Recent (unix s, tokens) samples: the rate is taken over this window, since a step's tokens arrive at once. */
  private recent: Array<[number, number]> = []

  /** `capacity`: samples kept per series (default 3600: an hour at one a second); `windowS`: the rate's window. */
  constructor (capacity = 3600, private readonly windowS = 10) {
    this.tokensPerS = new RingBuffer(capacity)
    this.peers = new RingBuffer(capacity)
  }

  /** Records one sample at `tMs` (unix ms); returns tokens/s over the window (null until two samples, or after the counter went back). */
  sample (tMs: number, tokens: number | null, peers: number | null): number | null {
    const t = tMs / 1000
    let rate: number | null = null
    if (tokens != null) {
      const prev = this.recent.at(-1)
      // a counter that went back (a restarted runtime) starts the window again
      if (prev != null && (tokens < prev[1] || t <= prev[0])) this.recent = []
      this.recent.push([t, tokens])
      while (this.recent.length > 2 && t - this.recent[1][0] >= this.windowS) this.recent.shift()
      const first = this.recent[0]
      if (this.recent.length >= 2 && t > first[0]) {
        rate = (tokens - first[1]) / (t - first[0])
        this.tokensPerS.push(t, rate)
      }
    }
    if (peers != null) this.peers.push(t, peers)
    return rate
  }
}
