// What any peer may make this node hold: bytes of inbound frames in flight and open inbound
// streams, per peer and node-wide, plus per-peer rate limits (rate-limit.ts). Enforced before
// memory is committed: a frame's payload length is reserved when its header is decoded, and only
// then is the one payload buffer of that size allocated; the reservation is released when the
// application reads the frame, or the stream fails. A peer past its share is refused with a
// 'reject' (PeerBudgetError); a node that is merely full refuses with an 'ignore' (NodeBudgetError),
// since honest peers fill it too.
//
// One budget per node: createNode makes it (Tokens.WireBudget) and attaches it to its libp2p, where
// every handleFramed on that libp2p finds it (wireBudgetOf), so no protocol can forget it.
import { NodeBudgetError, PeerBlockedError, PeerBudgetError, RateLimitError, WireOptionError } from './errors.ts'
import { PeerRateLimiter, type Clock, type RateLimitOptions } from './rate-limit.ts'

const MiB = 1024 * 1024

export interface WireBudgetOptions {
  /** Inbound payload bytes in flight on the whole node. Default: 1/4 of the machine's memory, 64 MiB .. 1 GiB. */
  readonly nodeBytes: number
  /** Inbound payload bytes in flight from one peer. Default: 1/4 of nodeBytes, at least 64 MiB (one largest frame). */
  readonly peerBytes: number
  /** Open inbound (handled) streams on the node. Default 1024. */
  readonly nodeStreams: number
  /** Open inbound streams from one peer. Default 128. */
  readonly peerStreams: number
  /** Idle limit (ms) of a stream with a frame half received or half sent. Default 30 s. */
  readonly idleMs: number
  readonly rate: Partial<RateLimitOptions>
}

/** The machine's memory, where the runtime tells it (Node); 4 GiB elsewhere. */
function totalMemory (): number {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
  const os = proc?.getBuiltinModule?.('node:os') as { totalmem?: () => number } | undefined
  return os?.totalmem?.() ?? 4096 * MiB
}

/** Defaults sized from `totalMem` (the machine's memory by default). */
export function defaultBudgetOptions (totalMem = totalMemory()): WireBudgetOptions {
  const nodeBytes = Math.min(1024 * MiB, Math.max(64 * MiB, Math.floor(totalMem / 4)))
  return { nodeBytes, peerBytes: Math.max(64 * MiB, Math.floor(nodeBytes / 4)), nodeStreams: 1024, peerStreams: 128, idleMs: 30_000, rate: {} }
}

/** Something held against a budget; release() is idempotent. */
export interface Reservation {
  readonly amount: number
  release: () => void
}

const NOTHING: Reservation = { amount: 0, release: () => {} }

interface Usage { bytes: number, streams: number }

export interface WireBudgetStatus {
  bytes: number
  nodeBytes: number
  peakBytes: number
  streams: number
  nodeStreams: number
  /** Refusals by error code since start. */
  refused: Record<string, number>
}

export class WireBudget {
  readonly options: WireBudgetOptions
  readonly rates: PeerRateLimiter
  private readonly usage = new Map<string, Usage>()
  private bytes = 0
  private streams = 0
  private peakBytes = 0
  private readonly refused: Record<string, number> = {}

  constructor (options: Partial<WireBudgetOptions> = {}, now: Clock = Date.now) {
    const d = defaultBudgetOptions()
    const nodeBytes = options.nodeBytes ?? d.nodeBytes
    const peerBytes = options.peerBytes ?? (options.nodeBytes == null ? d.peerBytes : Math.max(1, Math.floor(nodeBytes / 4)))
    this.options = { ...d, ...options, nodeBytes, peerBytes }
    for (const k of ['nodeBytes', 'peerBytes', 'nodeStreams', 'peerStreams', 'idleMs'] as const) {
      const v = this.options[k]
      if (!Number.isSafeInteger(v) || v < 1) throw new WireOptionError(`budget.${k}`, `must be a positive integer, got ${v}`)
    }
    this.rates = new PeerRateLimiter(this.options.rate, now)
  }

  /**
   * A new inbound stream from `peer`: refused while the peer is blocked for flooding, or past its
   * share (PeerBudgetError) or the node's (NodeBudgetError) of open streams.
   */
  openStream (peer: string): Reservation {
    const blocked = this.rates.blockedFor(peer)
    if (blocked > 0) throw this.count(new PeerBlockedError(blocked))
    const u = this.usageOf(peer)
    if (u.streams + 1 > this.options.peerStreams) throw this.strike(peer, new PeerBudgetError('streams', 1, u.streams, this.options.peerStreams))
    if (this.streams + 1 > this.options.nodeStreams) throw this.count(new NodeBudgetError('streams', 1, this.streams, this.options.nodeStreams))
    u.streams++
    this.streams++
    return this.hold(peer, 1, u => { u.streams--; this.streams-- })
  }

  /**
   * A frame header from `peer` declared `bytes` of payload: takes its rate tokens and reserves the
   * bytes, or throws (RateLimitError, PeerBudgetError, NodeBudgetError) before anything is allocated.
   */
  admitFrame (peer: string, bytes: number): Reservation {
    const rate = this.rates.take(peer, bytes)
    if (rate != null) throw this.count(new RateLimitError(rate))
    if (bytes === 0) return NOTHING
    const u = this.usageOf(peer)
    if (u.bytes + bytes > this.options.peerBytes) throw this.strike(peer, new PeerBudgetError('bytes', bytes, u.bytes, this.options.peerBytes))
    if (this.bytes + bytes > this.options.nodeBytes) throw this.count(new NodeBudgetError('bytes', bytes, this.bytes, this.options.nodeBytes))
    u.bytes += bytes
    this.bytes += bytes
    if (this.bytes > this.peakBytes) this.peakBytes = this.bytes
    return this.hold(peer, bytes, u => { u.bytes -= bytes; this.bytes -= bytes })
  }

  /** Bytes and streams `peer` holds now. */
  usageOf (peer: string): Usage {
    let u = this.usage.get(peer)
    if (u == null) {
      u = { bytes: 0, streams: 0 }
      this.usage.set(peer, u)
    }
    return u
  }

  status (): WireBudgetStatus {
    return { bytes: this.bytes, nodeBytes: this.options.nodeBytes, peakBytes: this.peakBytes, streams: this.streams, nodeStreams: this.options.nodeStreams, refused: { ...this.refused } }
  }

  private hold (peer: string, amount: number, undo: (u: Usage) => void): Reservation {
    let held = true
    return {
      amount,
      release: () => {
        if (!held) return
        held = false
        const u = this.usageOf(peer)
        undo(u)
        if (u.bytes === 0 && u.streams === 0) this.usage.delete(peer)
      }
    }
  }

  /** A peer past its share: counted like a rate violation (repeated, it blocks the peer). */
  private strike<E extends { code: string }> (peer: string, err: E): E {
    this.rates.strike(peer)
    return this.count(err)
  }

  private count<E extends { code: string }> (err: E): E {
    this.refused[err.code] = (this.refused[err.code] ?? 0) + 1
    return err
  }
}

// ---- the node's budget, found from its libp2p ------------------------------------------------

const budgets = new WeakMap<object, WireBudget>()

/** Makes `budget` the one every handleFramed on `libp2p` enforces (createNode does this). */
export function attachWireBudget (libp2p: object, budget: WireBudget): void {
  budgets.set(libp2p, budget)
}

/** The budget attached to `libp2p`, if any. */
export function wireBudgetOf (libp2p: object): WireBudget | undefined {
  return budgets.get(libp2p)
}
