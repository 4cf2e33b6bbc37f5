// The members of the view: the latest accepted heartbeat of every peer, forgotten `ttlMs` after it
// arrived (a silent node drops out within one TTL) or at once when dropped (its last connection
// closed). Receive time, not the heartbeat's own time, drives expiry, so a peer's skewed clock
// cannot keep its entry alive.
import type { Member } from '../contracts/membership.ts'

export class MemberView {
  private readonly entries = new Map<string, Member>()

  constructor (readonly ttlMs: number) {}

  /** The last seq accepted from `peer` while its entry lives (an expired entry's replays are stale by time anyway). */
  lastSeq (peer: string): number | undefined {
    return this.entries.get(peer)?.seq
  }

  put (member: Member): void {
    this.entries.set(member.peer, member)
  }

  /** Forgets `peer` now; whether it was there. */
  drop (peer: string): boolean {
    return this.entries.delete(peer)
  }

  get (peer: string, now: number): Member | undefined {
    const e = this.entries.get(peer)
    if (e == null) return undefined
    if (now - e.seen > this.ttlMs) {
      this.entries.delete(peer)
      return undefined
    }
    return e
  }

  /** Live entries; expired ones are dropped. */
  live (now: number): Member[] {
    for (const [k, e] of this.entries) if (now - e.seen > this.ttlMs) this.entries.delete(k)
    return [...this.entries.values()]
  }
}
