// How long to wait for a peer: per-peer round-trip and throughput estimates, and the deadline rule
// every timed exchange with a peer follows (pipeline hops, averaging parts, state-sync chunks).
//
//   round trip   RFC 6298 (TCP's retransmission timer): the first sample R gives srtt = R,
//                rttvar = R/2; each later one rttvar = 3/4 rttvar + 1/4 |srtt - R|, then
//                srtt = 7/8 srtt + 1/8 R. Samples: libp2p pings (rtt-probe.ts) and other small exchanges.
//   throughput   an EWMA (weight 1/4) of bytes/s of completed transfers, the transfer's time less
//                one srtt (never less than half of it): an averaging part, a state chunk.
//   deadline     clamp(srtt + 4 rttvar + bytes / throughput + extra, floor, ceiling): each caller
//                gives its floor and ceiling (the exchange's own slack: the peer's compute, a
//                queue) and `extra` (its service time). A peer not measured yet takes the median
//                of the peers that are (a new peer is as far as the others until it shows
//                otherwise), and with none measured the defaults (250 ms, 1 MB/s: a slow home link).
//
// One estimator per node (createNode binds it under Tokens.PeerTiming); parts built without a node
// make their own. Pure arithmetic and maps: no timers, no I/O; the clock is a parameter.
import { ConfigError } from '../errors.ts'

export interface PeerTimingOptions {
  /** Round trip assumed before any peer was measured (ms). Default 250. */
  readonly defaultRttMs?: number
  /** Throughput assumed before any peer was measured (bytes/s). Default 1e6. */
  readonly defaultThroughput?: number
  /** Peers tracked at most; the least recently updated is forgotten first. Default 4096. */
  readonly maxPeers?: number
  /** Clock (ms). Default Date.now. */
  readonly now?: () => number
}

/** Bounds of one kind of exchange (each caller documents its own). */
export interface DeadlineBounds {
  readonly floorMs: number
  readonly ceilingMs: number
  /** Added before clamping: the peer's expected service time for this exchange (ms). Default 0. */
  readonly extraMs?: number
}

/** One peer's figures (status and tests). */
export interface PeerTimingStats {
  readonly peer: string
  readonly srttMs: number | null
  readonly rttvarMs: number | null
  readonly rttSamples: number
  /** bytes/s */
  readonly throughput: number | null
  readonly transferSamples: number
}

interface PeerState {
  srtt: number
  rttvar: number
  rttSamples: number
  throughput: number
  transferSamples: number
  updated: number
}

const ALPHA = 1 / 8
const BETA = 1 / 4
const K = 4
const TP_WEIGHT = 1 / 4

export class PeerTiming {
  private readonly peers = new Map<string, PeerState>()
  private readonly opts: Required<Omit<PeerTimingOptions, 'now'>>
  private readonly now: () => number

  constructor (options: PeerTimingOptions = {}) {
    this.opts = {
      defaultRttMs: options.defaultRttMs ?? 250,
      defaultThroughput: options.defaultThroughput ?? 1e6,
      maxPeers: options.maxPeers ?? 4096
    }
    this.now = options.now ?? Date.now
    if (!(this.opts.defaultRttMs > 0) || !(this.opts.defaultThroughput > 0)) throw new ConfigError('peer timing defaults must be positive')
    if (!Number.isSafeInteger(this.opts.maxPeers) || this.opts.maxPeers < 1) throw new ConfigError('maxPeers must be a positive integer')
  }

  /** A round trip to `peer` took `ms` (a ping, a small request). Non-finite or negative samples are ignored. */
  observeRtt (peer: string, ms: number): void {
    if (!(Number.isFinite(ms) && ms >= 0)) return
    const s = this.state(peer)
    if (s.rttSamples === 0) {
      s.srtt = ms
      s.rttvar = ms / 2
    } else {
      s.rttvar = (1 - BETA) * s.rttvar + BETA * Math.abs(s.srtt - ms)
      s.srtt = (1 - ALPHA) * s.srtt + ALPHA * ms
    }
    s.rttSamples++
  }

  /** A transfer of `bytes` from or to `peer` completed in `ms` (request to last byte). */
  observeTransfer (peer: string, bytes: number, ms: number): void {
    if (!(Number.isFinite(bytes) && bytes > 0 && Number.isFinite(ms) && ms > 0)) return
    const s = this.state(peer)
    const wire = s.rttSamples > 0 ? Math.max(ms - s.srtt, ms / 2) : ms
    const rate = bytes * 1000 / Math.max(1, wire)
    s.throughput = s.transferSamples === 0 ? rate : (1 - TP_WEIGHT) * s.throughput + TP_WEIGHT * rate
    s.transferSamples++
  }

  /** srtt + 4 rttvar + bytes / throughput for `peer` (ms), unclamped: the network's share of an exchange. */
  networkMs (peer: string, bytes: number): number {
    const { srtt, rttvar } = this.rttOf(peer)
    return srtt + K * rttvar + Math.max(0, bytes) * 1000 / this.throughputOf(peer)
  }

  /** The deadline rule: clamp(srtt + 4 rttvar + bytes / throughput + extra, floor, ceiling) in ms. */
  deadline (peer: string, bytes: number, bounds: DeadlineBounds): number {
    const ms = this.networkMs(peer, bytes) + (bounds.extraMs ?? 0)
    return Math.min(bounds.ceilingMs, Math.max(bounds.floorMs, Number.isFinite(ms) ? ms : bounds.ceilingMs))
  }

  /** Whether `peer` has a round-trip sample. */
  hasRtt (peer: string): boolean {
    return (this.peers.get(peer)?.rttSamples ?? 0) > 0
  }

  /** The round trip used for `peer`: its own, else the measured peers' medians, else the default. */
  rttOf (peer: string): { srtt: number, rttvar: number } {
    const s = this.peers.get(peer)
    if (s != null && s.rttSamples > 0) return { srtt: s.srtt, rttvar: s.rttvar }
    const known = [...this.peers.values()].filter(x => x.rttSamples > 0)
    if (known.length > 0) return { srtt: median(known.map(x => x.srtt)), rttvar: median(known.map(x => x.rttvar)) }
    return { srtt: this.opts.defaultRttMs, rttvar: this.opts.defaultRttMs / 2 }
  }

  /** The throughput used for `peer` (bytes/s): its own, else the measured peers' median, else the default. */
  throughputOf (peer: string): number {
    const s = this.peers.get(peer)
    if (s != null && s.transferSamples > 0) return s.throughput
    const known = [...this.peers.values()].filter(x => x.transferSamples > 0).map(x => x.throughput)
    return known.length > 0 ? median(known) : this.opts.defaultThroughput
  }

  /** Forgets `peer` (it left the swarm). */
  forget (peer: string): void {
    this.peers.delete(peer)
  }

  stats (): PeerTimingStats[] {
    return [...this.peers.entries()].map(([peer, s]) => ({
      peer,
      srttMs: s.rttSamples > 0 ? s.srtt : null,
      rttvarMs: s.rttSamples > 0 ? s.rttvar : null,
      rttSamples: s.rttSamples,
      throughput: s.transferSamples > 0 ? s.throughput : null,
      transferSamples: s.transferSamples
    }))
  }

  private state (peer: string): PeerState {
    let s = this.peers.get(peer)
    if (s == null) {
      if (this.peers.size >= this.opts.maxPeers) this.evictOldest()
      s = { srtt: 0, rttvar: 0, rttSamples: 0, throughput: 0, transferSamples: 0, updated: 0 }
      this.peers.set(peer, s)
    }
    s.updated = this.now()
    return s
  }

  private evictOldest (): void {
    let oldest: string | undefined
    let at = Infinity
    for (const [p, s] of this.peers) if (s.updated < at) { at = s.updated; oldest = p }
    if (oldest != null) this.peers.delete(oldest)
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

const perNode = new WeakMap<object, PeerTiming>()

/**
 * The one estimator of the node that owns `libp2p` (made on first use): every part that talks to
 * peers through that libp2p instance shares its figures. createNode binds it as Tokens.PeerTiming.
 */
export function timingFor (libp2p: object): PeerTiming {
  let t = perNode.get(libp2p)
  if (t == null) {
    t = new PeerTiming()
    perNode.set(libp2p, t)
  }
  return t
}
