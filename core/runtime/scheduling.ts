// The runtime's side of the scheduler seam (Tokens.Scheduler, core/contracts/scheduler.ts): the
// peer source the pipeline router routes by, and the load the node reports back.
//
// Core does not import the scheduler plugin; it talks to whatever Scheduler the container holds.
// Routing reads the node's one membership view (core/membership), which the scheduler writes its
// placement into: there is nothing left to merge.
import type { Scheduler, StageLoad, SteerableScheduler } from '../contracts/scheduler.ts'

/** The built-in scheduler plugin's name: `start` loads it for every training node. */
export const SCHEDULER_PLUGIN = 'scheduler'

export function isSteerable (s: Scheduler): s is SteerableScheduler {
  const o = s as Partial<SteerableScheduler>
  return typeof o.setMoveHooks === 'function' && typeof o.setLoadSource === 'function'
}

/** What the meter reads from the serving pipeline: cumulative completions and busy milliseconds. */
export interface BusySample {
  readonly done: number
  readonly busyMs: number
}

/**
 * Microbatches per second of busy time over a sliding window. In a pipeline every stage runs at the
 * bottleneck's wall-clock rate, so only busy time shows which stage is short of capacity.
 */
export class BusyRate {
  private samples: Array<BusySample & { t: number }> = []

  constructor (private readonly windowMs = 30_000, private readonly minBusyMs = 200) {}

  /** Forget the samples (a new stage: its rate is another quantity). */
  reset (): void {
    this.samples = []
  }

  /** Adds a sample (at most one per second is kept) and returns the rate; 0 while unmeasured. */
  update (s: BusySample, now: number): number {
    const last = this.samples.at(-1)
    if (last == null || now - last.t >= 1000) this.samples.push({ ...s, t: now })
    while (this.samples.length > 2 && now - this.samples[1].t > this.windowMs) this.samples.shift()
    const first = this.samples[0]
    const busy = s.busyMs - first.busyMs
    if (busy < this.minBusyMs) return 0
    return (s.done - first.done) / (busy / 1000)
  }
}

/** A load source that recomputes at most once per `everyMs` (the scheduler asks on every routing decision). */
export function cachedLoad (compute: () => StageLoad, everyMs = 1000, now: () => number = Date.now): () => StageLoad {
  let at = -Infinity
  let value: StageLoad = { throughput: 0, queueLength: 0 }
  return () => {
    const t = now()
    if (t - at >= everyMs) {
      value = compute()
      at = t
    }
    return value
  }
}
