// What one averaging round needs and reports: the round's context as the averaging service hands it
// to the all-reduce runner (all-reduce-round.ts), and the results both return (lost shards, peers
// left out, this node's own shard). Types only.
import type { Logger } from '../contracts/logger.ts'
import type { FramedStream } from '../wire/index.ts'
import type { AveragingRole, TensorCodecs } from '../codecs/tensor-codecs.ts'
import type { TimedBans } from '../timed-bans.ts'
import type { PeerTiming } from '../net/peer-timing.ts'
import type { RobustAveragingOptions } from './robust-shard.ts'

/** How a round averages: the parameters themselves, or pseudo-gradients with an outer optimizer (DiLoCo). */
export type AveragingMode = 'params' | 'pseudo-grad'

/** Hooks that make this node misbehave on purpose: for fault-injection tests and drills only. */
export interface FaultInjection {
  /** Replaces the values this node sends as its contribution to shard `shard` (after declaring stats). */
  readonly contribution?: (shard: number, data: Float32Array) => Float32Array
  /** Replaces the average this node returns for the shard it owns. */
  readonly result?: (shard: number, avg: Float32Array) => Float32Array
  /** True: this node never opens a stream to shard `shard`'s owner (a silent member that stays connected). */
  readonly withhold?: (shard: number) => boolean
}

export interface LostShard {
  readonly shard: number
  readonly owner: string
  readonly start: number
  readonly end: number
  /** Error code of why its average did not arrive or was refused. */
  readonly reason: string
}

export interface ExcludedPeer {
  readonly peer: string
  /** Error code (ERR_AVG_OUTLIER: its contribution to our shard was an outlier). */
  readonly reason: string
  /** Put on the ban list for this. */
  readonly banned: boolean
  /** For ERR_AVG_OUTLIER: robust-mean's reason and figures, e.g. "norm-high: norm 41.2 > 5 x median 1.03". */
  readonly detail?: string
}

/** How this node averaged the shard it owns (robust-shard.ts): the figures the thresholds are judged by. */
export interface OwnShardReport {
  /** False with fewer than 3 contributions: nothing could be excluded. */
  readonly robust: boolean
  /** Median norm of the contributions (deviations from their median in role 'parameter'). */
  readonly medianNorm: number
  /** Norm of the shard's reference parameters (the scale where the median is 0). */
  readonly referenceNorm: number
  /** Kept contributions: peer, declared and used weight, norm, cosine to the median (NaN: not judged). */
  readonly kept: ReadonlyArray<{ peer: string, declaredWeight: number, weight: number, norm: number, cosine: number }>
}

/** What one round's exchange gives (run()). */
export interface ReduceOutcome {
  readonly averaged: Float32Array
  /** Contributions (this node's included) in the average of the shard this node owns. */
  readonly contributors: number
  /** Shards that kept this node's own values. */
  readonly lostShards: readonly LostShard[]
  /** Peers whose contribution or result this node left out. */
  readonly excluded: readonly ExcludedPeer[]
  /** How our own shard was averaged. */
  readonly ownShard: OwnShardReport
  readonly bytesSent: number
  readonly bytesReceived: number
  /** ms of the exchange (after the group formed). */
  readonly reduceMs: number
}

/** What a round needs from the averaging service. */
export interface RoundContext {
  /** This node's peer id. */
  readonly self: string
  readonly codecs: TensorCodecs<AveragingRole>
  readonly bans: TimedBans
  readonly chunkElements: number
  readonly joinMs: number
  readonly slackMs: number
  /** A fixed deadline per phase (ms) instead of the bandwidth rule. */
  readonly phaseTimeoutMs?: number
  /** This node's link bandwidth estimate (bytes/s). */
  readonly bandwidth: number
  /** Per-peer round trips and throughputs (core/net/peer-timing.ts): phase deadlines follow the slowest member's. */
  readonly timing?: PeerTiming
  readonly faults?: FaultInjection
  readonly robust?: RobustAveragingOptions
  readonly log: Logger
  /** Opens an averaging stream to `peer`. */
  dial(peer: string, signal: AbortSignal): Promise<FramedStream>
  /** Judges `peer` by `err` (a 'reject' bans it). */
  penalize(peer: string, err: Error): void
}

export type Contributors = ReadonlyArray<readonly [number, number, number, number]>


export interface RoundArgs {
  /** Round number, the same on every member (e.g. step / averaging.period). */
  readonly round: number
  readonly stage: number
  /** Flattened parameters of the stage (not modified). */
  readonly params: Float32Array
  /** Samples processed since the last round: the weight of this node's contribution, > 0. */
  readonly weight: number
  readonly signal?: AbortSignal
  /** Nodes serving the stage (from the gossiped view), this one included: sizes the Moshpit grid and lets group search stop early. */
  readonly stageSize?: number
}

export interface AllReduceResult {
  readonly averaged: Float32Array
  /** Sorted member peer ids (this node included). */
  readonly group: readonly string[]
  readonly groupSize: number
  readonly groupIndex: number
  /** Contributions (this node's included) in the average of the shard this node owns. */
  readonly contributors: number
  /** Shards that kept this node's own values. */
  readonly lostShards: readonly LostShard[]
  /** Peers whose contribution or result this node left out (ERR_AVG_OUTLIER: robust averaging did, with its `detail`). */
  readonly excluded: readonly ExcludedPeer[]
  /** How this node averaged the shard it owns; null when it averaged alone. */
  readonly ownShard: OwnShardReport | null
  readonly bytesSent: number
  readonly bytesReceived: number
  /** ms: group formation, then the all-reduce itself. */
  readonly formMs: number
  readonly reduceMs: number
  /** Peers that answered our greeting that this round was over there (ERR_AVG_ROUND_OVER): we came late. */
  readonly over?: readonly string[]
  /** Peers that do not serve the averaging protocol (yet) when greeted: a joiner still fetching its state. */
  readonly notReady?: readonly string[]
}

export interface RoundResult extends AllReduceResult {
  readonly round: number
  readonly stage: number
  /** What was averaged: parameters, or pseudo-gradients followed by the outer step. */
  readonly mode: AveragingMode
}

