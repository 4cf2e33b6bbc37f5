// Peers a node refuses for a while, each with why. One class for every place that shuts a peer out
// by time: the membership topic's flooders (core/membership: connections refused by the gater) and
// averaging's bad senders and cheats (core/averaging: refused as partners). A ban expires by itself;
// `forever` holds for the process's life (a convicted cheat). Bounded: when full, the ban that would
// end soonest goes first, so a flood of fresh identities cannot push out a lasting ban early.

export interface TimedBanOptions {
  /** How long a ban holds (ms). Default 10 minutes. */
  readonly banMs?: number
  /** Bans kept at most. Default 4096. */
  readonly maxBans?: number
  readonly now?: () => number
}

interface Ban { until: number, reason: string }

export class TimedBans {
  readonly banMs: number
  private readonly maxBans: number
  private readonly bans = new Map<string, Ban>()
  private readonly now: () => number

  constructor (opts: TimedBanOptions = {}) {
    this.banMs = opts.banMs ?? 600_000
    this.maxBans = opts.maxBans ?? 4096
    if (!(this.banMs > 0)) throw new RangeError(`banMs must be positive, got ${this.banMs}`)
    if (!(Number.isInteger(this.maxBans) && this.maxBans > 0)) throw new RangeError(`maxBans must be a positive integer, got ${this.maxBans}`)
    this.now = opts.now ?? Date.now
  }

  /** Bans `peer` from now on (for good with `forever`); true when it was not banned already (the caller then cuts it off). */
  ban (peer: string, reason = '', forever = false): boolean {
    const was = this.isBanned(peer)
    const until = forever ? Infinity : Math.max(this.now() + this.banMs, this.bans.get(peer)?.until ?? 0)
    this.bans.delete(peer)
    if (this.bans.size >= this.maxBans) this.evict()
    this.bans.set(peer, { until, reason })
    return !was
  }

  isBanned (peer: string): boolean {
    const b = this.bans.get(peer)
    if (b == null) return false
    if (b.until > this.now()) return true
    this.bans.delete(peer)
    return false
  }

  /** peer -> reason of every ban in force. */
  list (): Map<string, string> {
    const out = new Map<string, string>()
    for (const [p, b] of [...this.bans]) if (this.isBanned(p)) out.set(p, b.reason)
    return out
  }

  /** Bans held now (expired ones are dropped when next asked about). */
  get size (): number {
    return this.bans.size
  }

  /** Drops the expired bans, else the one that ends soonest. */
  private evict (): void {
    const t = this.now()
    let soonest: string | undefined
    let end = Infinity
    for (const [p, b] of this.bans) {
      if (b.until <= t) this.bans.delete(p)
      else if (soonest == null || b.until < end) { soonest = p; end = b.until }
    }
    if (this.bans.size >= this.maxBans && soonest != null) this.bans.delete(soonest)
  }
}
