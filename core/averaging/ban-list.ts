// Peers this node refuses in averaging rounds for a while: one that sent bad data or a dishonest
// average (averager.ts bans on a 'reject' verdict). A ban expires by itself; the peer stays in the
// shard layout meanwhile, so members that have not banned it still agree on the group.
export class BanList {
  private readonly until = new Map<string, { until: number, reason: string }>()
  constructor (private readonly banMs: number) {}
  /** Bans `peer` for the list's ban length, or for good (`forever`: a peer convicted of cheating). */
  ban (peer: string, reason: string, forever = false): void {
    this.until.set(peer, { until: forever ? Infinity : Date.now() + this.banMs, reason })
  }

  isBanned (peer: string): boolean {
    const b = this.until.get(peer)
    if (b == null) return false
    if (b.until <= Date.now()) { this.until.delete(peer); return false }
    return true
  }

  /** peer -> reason of every current ban. */
  list (): Map<string, string> {
    const out = new Map<string, string>()
    for (const [p, b] of this.until) if (this.isBanned(p)) out.set(p, b.reason)
    return out
  }
}
