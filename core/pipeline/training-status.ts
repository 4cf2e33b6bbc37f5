// The one status type of a training node: what `layerswarm status --json` shows under `training`,
// what the run report and the demo read. The counters and curves come from PipelineMetrics
// (pipeline-metrics.ts), declared there once; the rest is the node's place in the run.
import type { PenaltyStatus } from '../peer-judge.ts'
import type { StageAssignment } from '../contracts/scheduler.ts'
import type { AveragingStatus } from './stage-averaging.ts'
import type { RendezvousStatus } from './rendezvous.ts'
import type { CurveSnapshot, PipelineCounters } from './pipeline-metrics.ts'
import type { ProfileSnapshot } from './pipeline-profile.ts'

export type TrainingState = 'starting' | 'waiting-peers' | 'training' | 'done' | 'failed'

export interface TrainingStatus extends PipelineCounters, CurveSnapshot {
  runId: string
  peerId: string
  /** The stage served (null before the first assignment). */
  stage: number | null
  stages: number
  state: TrainingState
  /** The roles this node runs (stage server, data, validator, ...). */
  roles: string[]
  /** Optimizer steps applied by this node. */
  step: number
  steps: number
  peersPerStage: Record<string, number>
  /** Microbatches per second (EWMA of intervals between completions). */
  throughput: number
  maxInflight: number
  /** Microbatches in flight on this node. */
  queue: number
  /** Penalties this node counted against peers (core/peer-judge.ts). */
  penalties: PenaltyStatus
  codecs: { activation: string, 'activation-grad': string } | null
  /** k of the learned bottleneck (boundary tensors are [B,T,k]), or null: [B,T,C]. */
  bottleneck: number | null
  /** Averaging rounds with the stage's other nodes (docs/averaging.md, "In the pipeline"); null when off. */
  averaging: AveragingStatus | null
  /** Whom of its run this node knows and what it misses (rendezvous.ts); null without gossip and a DHT. */
  swarm: RendezvousStatus | null
  /** This node's part in verification: work ledger, convictions, evidence, validator (core/runtime/node-verification.ts). */
  verification?: Readonly<Record<string, unknown>>
  /** Budget, the served stage's estimate and the process's real peak, bytes (core/runtime/stage-memory.ts MemoryStatus). */
  /** Where this node's microbatches spent their time, per phase (pipeline-profile.ts). */
  profile?: ProfileSnapshot
  memory?: { readonly budget: number | null, readonly estimate: number | null, readonly stages: readonly number[], readonly rss: number, readonly peakRss: number }
  error?: string
}

/** `training` in `status` of a node run by the stage host: the pipeline's status and where it stands with the scheduler. */
export interface HostStatus extends TrainingStatus {
  assignment: StageAssignment | null
  moves: number
  /** Nodes serving each stage in the scheduler's view (this one included); absent without a scheduler. */
  servingPerStage?: number[]
}
