// Publishers cut off for flooding the membership topic. A publisher that delivers its own heartbeats
// far beyond its rate (publisher-rates.ts: REJECT) has its connections aborted and refused for
// `banMs`, both ways (createNode's connection gater reads `isBanned`): gossipsub's graylist only stops
// the validation of what a flooder sends, while its connection still makes the node decrypt and
// decode every frame of the flood. Only a publisher's own deliveries count (membership-service.ts),
// so an honest neighbour that forwards a flood is never cut off. Bounded: the oldest ban goes first.

export interface FloodBanOptions {
  /** How long a flooder stays cut off (ms). Default 10 minutes. */
  readonly banMs?: number
  /** Bans kept at most. Default 4096. */
  readonly maxBans?: number
  readonly now?: () => number
}

export class FloodBans {
  readonly banMs: number
  private readonly until = new Map<string, number>()
  private readonly now: () => number

  constructor (private readonly opts: FloodBanOptions = {}) {
    this.banMs = opts.banMs ?? 600_000
    if (!(this.banMs > 0)) throw new RangeError(`banMs must be positive, got ${this.banMs}`)
    this.now = opts.now ?? Date.now
  }

  /** Bans `peer` from now on; true when it was not banned already (the caller then cuts it off). */
  ban (peer: string): boolean {
    const t = this.now()
    const was = this.isBanned(peer)
    this.until.delete(peer)
    if (this.until.size >= (this.opts.maxBans ?? 4096)) this.until.delete(this.until.keys().next().value as string)
    this.until.set(peer, t + this.banMs)
    return !was
  }

  isBanned (peer: string): boolean {
    const u = this.until.get(peer)
    if (u == null) return false
    if (u > this.now()) return true
    this.until.delete(peer)
    return false
  }

  /** Bans held now (expired ones are dropped when next asked about). */
  get size (): number {
    return this.until.size
  }
}
