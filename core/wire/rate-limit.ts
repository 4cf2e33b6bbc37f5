// Per-peer token buckets on inbound work (frames and payload bytes per second), and the penalty
// box a flooding peer lands in. A bucket holds at most `burst` tokens and refills at `perSec`; a
// frame takes one frame token and its payload length in byte tokens, or is refused. Refusals count
// as violations: `maxViolations` of them within `violationWindowMs` block the peer's new streams for
// `blockMs` (doubling per repeat, capped), so a flood costs the node a header decode per frame and
// then nothing at all. Times come from an injectable clock (tests) in milliseconds.

export interface RateLimitOptions {
  /** Inbound data frames per second per peer (refill). Default 200. */
  readonly framesPerSec: number
  /** Frames a peer may send at once (bucket size). Default 2 s worth. */
  readonly frameBurst: number
  /** Inbound payload bytes per second per peer. Default 128 MiB/s. */
  readonly bytesPerSec: number
  /** Payload bytes a peer may send at once. Default 2 s worth. */
  readonly byteBurst: number
  /** Refusals within violationWindowMs that block the peer. Default 3. */
  readonly maxViolations: number
  readonly violationWindowMs: number
  /** First block length (ms); each repeat doubles it up to maxBlockMs. Defaults 30 s and 10 min. */
  readonly blockMs: number
  readonly maxBlockMs: number
}

export const DEFAULT_RATE_LIMITS: RateLimitOptions = {
  framesPerSec: 200,
  frameBurst: 400,
  bytesPerSec: 128 * 1024 * 1024,
  byteBurst: 256 * 1024 * 1024,
  maxViolations: 3,
  violationWindowMs: 10_000,
  blockMs: 30_000,
  maxBlockMs: 600_000
}

export type Clock = () => number

/** One token bucket; starts full. */
export class TokenBucket {
  private tokens: number
  private last: number

  constructor (readonly perSec: number, readonly burst: number, private readonly now: Clock = Date.now) {
    this.tokens = burst
    this.last = now()
  }

  /** Tokens available now. */
  available (): number {
    const t = this.now()
    if (t > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + (t - this.last) * this.perSec / 1000)
      this.last = t
    }
    return this.tokens
  }

  /** Takes `n` tokens if there are that many; returns whether it did. */
  take (n: number): boolean {
    if (this.available() < n) return false
    this.tokens -= n
    return true
  }
}

/** Why a frame was refused by the rate limiter, or null when it passed. */
export type RateRefusal = 'frames' | 'bytes' | null

interface PeerRate {
  frames: TokenBucket
  bytes: TokenBucket
  violations: number[]
  blockedUntil: number
  blocks: number
  lastSeen: number
}

/** Token buckets and blocks per peer; idle peers are forgotten after a while (bounded memory). */
export class PeerRateLimiter {
  readonly options: RateLimitOptions
  private readonly peers = new Map<string, PeerRate>()

  constructor (options: Partial<RateLimitOptions> = {}, private readonly now: Clock = Date.now) {
    this.options = { ...DEFAULT_RATE_LIMITS, ...options }
    if (options.frameBurst == null) this.options = { ...this.options, frameBurst: Math.max(1, this.options.framesPerSec * 2) }
    if (options.byteBurst == null) this.options = { ...this.options, byteBurst: Math.max(1, this.options.bytesPerSec * 2) }
  }

  /** Takes one frame and `bytes` payload bytes from `peer`'s buckets; a refusal is a violation. */
  take (peer: string, bytes: number): RateRefusal {
    const p = this.peer(peer)
    // a frame larger than the whole byte burst could never pass: it is charged the whole bucket
    const charge = Math.min(bytes, this.options.byteBurst)
    if (p.frames.available() < 1) return this.violation(p, 'frames')
    if (!p.bytes.take(charge)) return this.violation(p, 'bytes')
    p.frames.take(1)
    return null
  }

  /** Milliseconds `peer` stays blocked (0 when it is not). */
  blockedFor (peer: string): number {
    const p = this.peers.get(peer)
    if (p == null) return 0
    return Math.max(0, p.blockedUntil - this.now())
  }

  /** Peers tracked now (for status and tests). */
  get size (): number {
    return this.peers.size
  }

  /** Counts a violation against `peer` found elsewhere (a frame past its byte share): floods of any kind end in a block. */
  strike (peer: string): void {
    this.violation(this.peer(peer), 'bytes')
  }

  private violation (p: PeerRate, why: 'frames' | 'bytes'): RateRefusal {
    const t = this.now()
    p.violations = p.violations.filter(v => t - v < this.options.violationWindowMs)
    p.violations.push(t)
    if (p.violations.length >= this.options.maxViolations) {
      p.violations = []
      p.blockedUntil = t + Math.min(this.options.maxBlockMs, this.options.blockMs * 2 ** p.blocks)
      p.blocks++
    }
    return why
  }

  private peer (id: string): PeerRate {
    const t = this.now()
    let p = this.peers.get(id)
    if (p == null) {
      if (this.peers.size >= 4096) this.prune(t)
      p = {
        frames: new TokenBucket(this.options.framesPerSec, this.options.frameBurst, this.now),
        bytes: new TokenBucket(this.options.bytesPerSec, this.options.byteBurst, this.now),
        violations: [],
        blockedUntil: 0,
        blocks: 0,
        lastSeen: t
      }
      this.peers.set(id, p)
    }
    p.lastSeen = t
    return p
  }

  /** Forgets peers idle for a minute whose buckets are full again and who are not blocked. */
  private prune (t: number): void {
    for (const [id, p] of this.peers) {
      if (t - p.lastSeen > 60_000 && p.blockedUntil <= t) this.peers.delete(id)
    }
  }
}
