// Stochastic wiring (SWARM): which peer of a stage gets the next microbatch.
//
// Each peer has a virtual finish time: the cumulative expected run time of the microbatches this
// node sent it. `choose` takes the peer whose finish time is earliest (random tie-break) and adds
// that peer's expected run time (EWMA of measured round trips) to it, so a peer that answers twice
// as fast gets about twice the work, and a dead or slow one drifts out of use. A peer that enters
// the candidate set (new, or back from a ban) starts at the current minimum, so it is tried next
// but is not flooded to "catch up". Expected run time for an unmeasured peer: the stage's median
// measurement, else its gossiped throughput, else 0 (tried at once).
//
// Timeouts follow measurement: EWMA + k x mean deviation of the peer's round trips (its service
// time: network and the stages behind it), between a floor and a ceiling; a peer not measured yet
// gets its stage's medians (a new peer, or a silent one that never answered, is expected to serve
// like the others, so it is caught within a few of their round trips: docs/pipeline.md), and only
// a stage where nobody was measured yet gets the initial timeout (the ceiling). The dispatcher adds
// the network's share for the bytes it sends (core/net/peer-timing.ts). A peer whose replies report
// their compute time (core/net/hop-timing.ts) is timed by that service time alone (EWMA + k
// deviations of it), and the network's share (both ways) is added once; one that does not keeps the
// whole round trip as its service time. Routing (finish times) always uses the whole round trip. A failure bans the peer with exponential
// backoff (base x 2^(failures-1), capped; x4 for a protocol violation); a success clears the
// failure count. Peers come from a `PeerSource` (the node's membership view). Verdicts come from
// the node's PeerJudge (core/peer-judge.ts), which also keeps the penalty count.
//
// A peer that drops out of the source (its heartbeats stopped: a link outage) and comes back starts
// its backoff again, unless its last failure was a rejection: the deadlines it missed while
// unreachable say nothing of how it serves now, and after an outage its first hops are often slow
// (TCP retransmits with backed-off timers), so an inherited backoff of tens of seconds would keep a
// recovered peer idle. A silent peer that keeps heartbeating never leaves the source and keeps its
// growing ban; one that goes quiet to shed it is absent from routing meanwhile anyway.
//
// Remote drops (a peer answers ERR_PIPELINE_DROPPED: the stages behind it failed) are free while
// occasional, since an honest peer drops under load too; but each peer's recent drops and
// completions are counted (decaying per outcome), and a peer that dropped at least `dropShare` of
// its last several microbatches while another peer of its stage completes nearly all of its own is
// at fault (RepeatedDropsError, 'reject': banned like any rejected peer, with growing backoff). A
// stage whose peers all drop (the stage behind them is gone) blames none of them.

import type { Verdict } from '../errors.ts'
import { RepeatedDropsError } from './errors.ts'

/** Where the router learns which peers serve a stage (seam for Tokens.Scheduler). */
export interface PeerSource {
  /** Peer ids serving `stage`, excluding this node. */
  peersForStage(stage: number): string[]
  /** Gossiped microbatches/s of a peer, when known (a prior for unmeasured peers). */
  throughputOf?(peer: string): number | undefined
}


export interface RouterOptions {
  /** Random numbers in [0, 1) for tie-breaks. Default Math.random. */
  readonly rng?: () => number
  /** Clock in ms. Default Date.now. */
  readonly now?: () => number
  /** First ban length (ms). Default 2000. */
  readonly banBaseMs?: number
  /** Longest ban (ms). Default 60000. */
  readonly banMaxMs?: number
  /** Shortest timeout (ms). Default 2000. */
  readonly timeoutFloorMs?: number
  /** Timeout before any peer of the stage has been measured, and the longest (ms). Default 120000. */
  readonly initialTimeoutMs?: number
  /** Deviations above the mean round trip before a timeout. Default 4. */
  readonly timeoutK?: number
  /** EWMA weight of a new sample. Default 0.25. */
  readonly alpha?: number
  /** Share of a peer's recent outcomes that, dropped, puts it at fault. Default 0.5. */
  readonly dropShare?: number
  /** Recent outcomes (decayed count) needed before a peer's drops are judged. Default 3 (the 4th drop in a row). */
  readonly dropEvidence?: number
}

export interface PeerRouteStats {
  readonly peer: string
  readonly stage: number
  readonly ewmaMs: number | null
  readonly devMs: number | null
  readonly samples: number
  readonly failures: number
  readonly bannedForMs: number
  readonly finish: number
  /** Decayed counts of recent remote drops and completions. */
  readonly drops: number
  readonly completed: number
  /** EWMA of the service time the peer's replies report (net of the network), when they do. */
  readonly serviceMs: number | null
}

interface PeerState {
  stage: number
  ewma: number
  dev: number
  samples: number
  failures: number
  bannedUntil: number
  /** The last failure was a rejection (its ban survives the peer's absence from the source). */
  rejected: boolean
  /** Virtual finish time: cumulative expected ms of the work sent to it. */
  finish: number
  /** Recent remote drops and completions, each decayed by DROP_DECAY per outcome. */
  drops: number
  completed: number
  /** Reported service time (core/net/hop-timing.ts): EWMA, mean deviation, samples. */
  svc: number
  svcDev: number
  svcSamples: number
}

/** Weight kept by the older outcomes at each new one: about the last 10 outcomes count. */
const DROP_DECAY = 0.9

const ENTER_EPSILON_MS = 1e-3

export class Router {
  private readonly peers = new Map<string, PeerState>()
  /** Candidates of the previous choice per stage: a peer not among them is (re)entering. */
  private readonly lastCandidates = new Map<number, Set<string>>()
  /** The source's peers of each stage at the previous choice, banned ones included: one not among them is back. */
  private readonly lastListed = new Map<number, Set<string>>()
  private readonly rng: () => number
  private readonly now: () => number
  private readonly opts: Required<Omit<RouterOptions, 'rng' | 'now'>>

  constructor (private readonly source: PeerSource, options: RouterOptions = {}) {
    this.rng = options.rng ?? Math.random
    this.now = options.now ?? Date.now
    this.opts = {
      banBaseMs: options.banBaseMs ?? 2000,
      banMaxMs: options.banMaxMs ?? 60_000,
      timeoutFloorMs: options.timeoutFloorMs ?? 2000,
      initialTimeoutMs: options.initialTimeoutMs ?? 120_000,
      timeoutK: options.timeoutK ?? 4,
      alpha: options.alpha ?? 0.25,
      dropShare: options.dropShare ?? 0.5,
      dropEvidence: options.dropEvidence ?? 3
    }
  }

  /** Peers of `stage` that are not banned. */
  available (stage: number): string[] {
    const t = this.now()
    return this.source.peersForStage(stage).filter(p => (this.peers.get(p)?.bannedUntil ?? 0) <= t)
  }

  /**
   * The peer of `stage` with the earliest expected finish, not banned and not in `exclude`, or
   * undefined when there is none. Charges the peer its expected run time.
   */
  choose (stage: number, exclude: ReadonlySet<string> = new Set()): string | undefined {
    this.noticeReturns(stage)
    const candidates = this.available(stage).filter(p => !exclude.has(p))
    const previous = this.lastCandidates.get(stage) ?? new Set()
    this.lastCandidates.set(stage, new Set(candidates))
    if (candidates.length === 0) return undefined
    const states = candidates.map(p => this.state(p, stage))
    // entering peers start at the minimum of the continuing ones (tried next, not flooded)
    const continuing = states.filter((_, i) => previous.has(candidates[i]))
    const floor = continuing.length > 0 ? Math.min(...continuing.map(s => s.finish)) : Math.min(...states.map(s => s.finish))
    for (let i = 0; i < states.length; i++) {
      // entering: just below the minimum, so it is the next choice; lagging: caught up
      if (!previous.has(candidates[i]) && continuing.length > 0) states[i].finish = floor - ENTER_EPSILON_MS
      else if (states[i].finish < floor) states[i].finish = floor
    }
    let best: number[] = []
    let bestKey = Infinity
    for (let i = 0; i < states.length; i++) {
      const key = states[i].finish
      if (key < bestKey - 1e-9) { best = [i]; bestKey = key } else if (Math.abs(key - bestKey) <= 1e-9) best.push(i)
    }
    const pick = best[Math.floor(this.rng() * best.length) % best.length]
    const s = states[pick]
    s.finish += this.expectedMs(candidates[pick], stage)
    return candidates[pick]
  }

  /** Expected round trip of one microbatch through `peer` (ms). */
  expectedMs (peer: string, stage: number): number {
    const s = this.peers.get(peer)
    if (s != null && s.samples > 0) return s.ewma
    const measured = [...this.peers.values()].filter(x => x.stage === stage && x.samples > 0).map(x => x.ewma).sort((a, b) => a - b)
    if (measured.length > 0) return measured[Math.floor(measured.length / 2)]
    const tp = this.source.throughputOf?.(peer)
    return tp != null && tp > 0 ? 1000 / tp : 0
  }

  /**
   * How long to wait for `peer` (of `stage`) before giving up on a microbatch (ms): its service
   * time's EWMA + k deviations, else its stage's medians, else the initial timeout; within
   * [floor, initial]. Added before clamping: `extraMs` (the network's share for the bytes sent) to a
   * whole-round-trip basis, `netExtraMs` (the network's share both ways) to a reported service time.
   */
  timeoutMs (peer: string, stage?: number, extraMs = 0, netExtraMs = extraMs): number {
    const s = this.peers.get(peer)
    let b: { mean: number, dev: number, net: boolean }
    if (s != null && s.samples > 0) {
      b = basisOf(s)
    } else {
      const st = stage ?? s?.stage
      const measured = [...this.peers.values()].filter(x => x.stage === st && x.samples > 0)
      if (measured.length === 0) return this.opts.initialTimeoutMs
      // the peers that report their service time speak for the stage when there are any
      const net = measured.filter(x => x.svcSamples > 0)
      const pool = (net.length > 0 ? net : measured).map(basisOf)
      b = { mean: medianOf(pool.map(x => x.mean)), dev: medianOf(pool.map(x => x.dev)), net: net.length > 0 }
    }
    const ms = b.mean + this.opts.timeoutK * b.dev + (b.net ? netExtraMs : extraMs)
    return Math.min(this.opts.initialTimeoutMs, Math.max(this.opts.timeoutFloorMs, ms))
  }

  /** A round trip through `peer` finished in `ms`; `serviceMs`: the part its reply says it spent (hop-timing.ts). */
  succeeded (peer: string, stage: number, ms: number, serviceMs?: number): void {
    const s = this.state(peer, stage)
    const a = this.opts.alpha
    ;({ mean: s.ewma, dev: s.dev } = ewmaStep(s.samples === 0, s.ewma, s.dev, ms, a))
    s.samples++
    if (serviceMs != null && Number.isFinite(serviceMs) && serviceMs >= 0) {
      ;({ mean: s.svc, dev: s.svcDev } = ewmaStep(s.svcSamples === 0, s.svc, s.svcDev, serviceMs, a))
      s.svcSamples++
    }
    s.failures = 0
    s.rejected = false
    s.completed = DROP_DECAY * s.completed + 1
    s.drops *= DROP_DECAY
  }

  /**
   * `peer` answered that the microbatch was dropped behind it. Returns RepeatedDropsError when its
   * drops are its own (see the top of this file): the caller judges it and retries elsewhere.
   */
  remoteDropped (peer: string, stage: number): RepeatedDropsError | undefined {
    const s = this.state(peer, stage)
    s.drops = DROP_DECAY * s.drops + 1
    s.completed *= DROP_DECAY
    const total = s.drops + s.completed
    if (total < this.opts.dropEvidence || s.drops / total < this.opts.dropShare) return undefined
    // the stage behind works for someone: these drops are this peer's
    const healthy = [...this.peers.entries()].some(([p, o]) => p !== peer && o.stage === stage && o.completed >= 1 && o.drops / (o.drops + o.completed) < this.opts.dropShare / 2)
    return healthy ? new RepeatedDropsError(peer, s.drops, total) : undefined
  }

  /**
   * An exchange with `peer` failed. 'reject' and 'ignore' ban it for a while (backoff doubles with
   * consecutive failures; a protocol violation bans four times as long);
   * 'none' (our own abort) changes nothing.
   */
  failed (peer: string, stage: number, verdict: Verdict): void {
    if (verdict === 'none') return
    const s = this.state(peer, stage)
    s.failures++
    if (verdict === 'reject') s.rejected = true
    const base = this.opts.banBaseMs * 2 ** Math.min(s.failures - 1, 30) * (verdict === 'reject' ? 4 : 1)
    s.bannedUntil = this.now() + Math.min(this.opts.banMaxMs, base)
  }

  /** Peers back in the source since the previous choice for `stage` start their backoff again (top of this file). */
  private noticeReturns (stage: number): void {
    const listed = this.source.peersForStage(stage)
    const before = this.lastListed.get(stage)
    this.lastListed.set(stage, new Set(listed))
    if (before == null) return
    for (const p of listed) {
      const s = this.peers.get(p)
      if (before.has(p) || s == null || s.rejected) continue
      s.failures = 0
      s.bannedUntil = 0
    }
  }

  /** Whether `peer` has completed a round trip (it serves: a silent peer never has). */
  measured (peer: string): boolean {
    return (this.peers.get(peer)?.samples ?? 0) > 0
  }

  isBanned (peer: string): boolean {
    return (this.peers.get(peer)?.bannedUntil ?? 0) > this.now()
  }

  stats (): PeerRouteStats[] {
    const t = this.now()
    return [...this.peers.entries()].map(([peer, s]) => ({
      peer,
      stage: s.stage,
      ewmaMs: s.samples > 0 ? s.ewma : null,
      devMs: s.samples > 0 ? s.dev : null,
      samples: s.samples,
      failures: s.failures,
      bannedForMs: Math.max(0, s.bannedUntil - t),
      finish: s.finish,
      drops: s.drops,
      completed: s.completed,
      serviceMs: s.svcSamples > 0 ? s.svc : null
    }))
  }

  private state (peer: string, stage: number): PeerState {
    let s = this.peers.get(peer)
    if (s == null) {
      s = { stage, ewma: 0, dev: 0, samples: 0, failures: 0, bannedUntil: 0, rejected: false, finish: 0, drops: 0, completed: 0, svc: 0, svcDev: 0, svcSamples: 0 }
      this.peers.set(peer, s)
    }
    s.stage = stage
    return s
  }
}

/** One sample `x` into a moving mean and mean deviation (weight `a`); the first sample sets the mean, and half of it the deviation. */
function ewmaStep (first: boolean, mean: number, dev: number, x: number, a: number): { mean: number, dev: number } {
  if (first) return { mean: x, dev: x / 2 }
  return { mean: (1 - a) * mean + a * x, dev: (1 - a) * dev + a * Math.abs(x - mean) }
}

/** What a peer's timeout grows from: its reported service time when it reports one, else its whole round trip. */
function basisOf (s: PeerState): { mean: number, dev: number, net: boolean } {
  return s.svcSamples > 0 ? { mean: s.svc, dev: s.svcDev, net: true } : { mean: s.ewma, dev: s.dev, net: false }
}

function medianOf (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
