// Per-publisher heartbeat rates: the first check of the membership topic's validator, before any
// JSON is parsed, so a flood of valid heartbeats (20,000 from a fresh identity stalled training for
// about 55 s: issue 15) costs the node a map lookup per message. Each publisher has a token bucket
// (`perSec`, `burst`); a heartbeat beyond it is IGNOREd (not entered, not forwarded: a flood then
// reaches only the flooder's direct neighbours) and adds one to the publisher's excess, which drains
// at the same rate; an excess above `hardExcess` (no honest node gets near it, however late its
// heartbeats arrive in a bunch) is REJECTed, which costs the sender gossipsub score. Publishers kept:
// bounded, the least recently heard forgotten first.
import { TokenBucket } from '../wire/rate-limit.ts'
import { HeartbeatFloodError, HeartbeatRateLimitedError } from './errors.ts'

export interface PublisherRateOptions {
  /** Heartbeats per second a publisher may send (refill). */
  readonly perSec: number
  /** Heartbeats it may send at once. */
  readonly burst: number
  /** Heartbeats beyond the rate (draining at perSec) above which it is REJECTed. */
  readonly hardExcess: number
  /** Publishers tracked at most. Default 4096. */
  readonly maxPublishers?: number
  readonly now?: () => number
}

interface Publisher { readonly bucket: TokenBucket, excess: number, at: number }

export class PublisherRates {
  private readonly publishers = new Map<string, Publisher>()
  private readonly now: () => number

  constructor (private readonly opts: PublisherRateOptions) {
    this.now = opts.now ?? Date.now
  }

  /** Throws HeartbeatRateLimitedError (IGNORE) or HeartbeatFloodError (REJECT) when `peer` is over its rate. */
  take (peer: string): void {
    const t = this.now()
    let p = this.publishers.get(peer)
    if (p == null) {
      p = { bucket: new TokenBucket(this.opts.perSec, this.opts.burst, this.now), excess: 0, at: t }
      if (this.publishers.size >= (this.opts.maxPublishers ?? 4096)) this.publishers.delete(this.publishers.keys().next().value as string)
    }
    // most recently heard last: the first key is the one to forget
    this.publishers.delete(peer)
    this.publishers.set(peer, p)
    p.excess = Math.max(0, p.excess - (t - p.at) * this.opts.perSec / 1000)
    p.at = t
    if (p.bucket.take(1)) return
    p.excess++
    if (p.excess > this.opts.hardExcess) throw new HeartbeatFloodError(peer, p.excess)
    throw new HeartbeatRateLimitedError(peer)
  }

  /** Publishers tracked now. */
  get size (): number {
    return this.publishers.size
  }
}
