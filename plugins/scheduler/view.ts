// The swarm view: the latest accepted heartbeat of every peer, forgotten `ttlMs` after it arrived
// (a dead node stops publishing and drops out within one TTL). Receive time, not the heartbeat's own
// time, drives expiry, so a peer's skewed clock cannot keep its entry alive.
import type { Heartbeat } from './heartbeat.ts'

export interface ViewEntry extends Heartbeat {
  /** Local receive time (unix ms). */
  readonly seen: number
}

export class HeartbeatView {
  private readonly entries = new Map<string, ViewEntry>()

  constructor (readonly ttlMs: number) {}

  /** The last seq accepted from `peer` while its entry lives (an expired entry's replays are stale by time anyway). */
  lastSeq (peer: string): number | undefined {
    return this.entries.get(peer)?.seq
  }

  put (hb: Heartbeat, seen: number): void {
    this.entries.set(hb.peer, { ...hb, seen })
  }

  get (peer: string, now: number): ViewEntry | undefined {
    const e = this.entries.get(peer)
    if (e == null) return undefined
    if (now - e.seen > this.ttlMs) {
      this.entries.delete(peer)
      return undefined
    }
    return e
  }

  /** Live entries; expired ones are dropped. */
  live (now: number): ViewEntry[] {
    for (const [k, e] of this.entries) if (now - e.seen > this.ttlMs) this.entries.delete(k)
    return [...this.entries.values()]
  }

  get size (): number {
    return this.entries.size
  }
}
