// The runtime's side of the scheduler seam (Tokens.Scheduler, core/contracts/scheduler.ts): the
// peer source the pipeline router routes by, and the load the node reports back.
//
// Core does not import the scheduler plugin (plugins/scheduler: schedulerPeerSource is the same
// adapter without the merge below); it talks to whatever Scheduler the container holds.
import type { PeerSource } from '../pipeline/router.ts'
import type { Scheduler, StageLoad, SteerableScheduler } from '../contracts/scheduler.ts'

/** The built-in scheduler plugin's name: `start` loads it for every training node. */
export const SCHEDULER_PLUGIN = 'scheduler'

export function isSteerable (s: Scheduler): s is SteerableScheduler {
  const o = s as Partial<SteerableScheduler>
  return typeof o.setMoveHooks === 'function' && typeof o.setLoadSource === 'function'
}

/**
 * Peers per stage for the router: the scheduler's serving peers (best first), then peers the
 * pipeline's own StageDirectory has heard at that stage that the scheduler's view does not hold at
 * all (its heartbeats are sparser, so a new peer shows there first; a node without the scheduler
 * shows only there). A peer the scheduler knows as joining or leaving is not routed to.
 */
export function schedulerSource (scheduler: Scheduler, self: string): (directory: PeerSource | undefined) => PeerSource {
  return directory => ({
    peersForStage (stage: number): string[] {
      const served = scheduler.peersForStage(stage).filter(p => p !== self)
      if (directory == null) return served
      const known = new Set(scheduler.view().peers.map(p => p.peerId))
      return [...served, ...directory.peersForStage(stage).filter(p => p !== self && !known.has(p))]
    },
    throughputOf (peer: string): number | undefined {
      const info = scheduler.view().peers.find(p => p.peerId === peer)
      return info != null && info.throughput > 0 ? info.throughput : directory?.throughputOf?.(peer)
    }
  })
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
