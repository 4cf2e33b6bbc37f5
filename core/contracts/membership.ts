// Membership contract: the one view of a run's swarm that routing, averaging, the scheduler and the
// end-of-run protocol all read. Every node gossips one heartbeat per interval on the run's members
// topic; the view holds the newest accepted one per peer while it lives. Implemented in core
// (core/membership), bound as Tokens.Membership; plugins reach it only through this file.
//
// This node's own record is put together from two contributors, each a provider read at every
// publish: the placement (which stage and whether it serves: the scheduler plugin, or a fixed pin)
// and the run (how the serving pipeline is doing). What a contributor never set keeps its default.
import type { NodeState } from './scheduler.ts'

/** Where a node stands with its stage: picking one or fetching it, serving it, or leaving it. */
export type PlacementState = NodeState

/** How the node's part of the run goes (the pipeline's state). */
export type RunPhase = 'starting' | 'waiting-peers' | 'training' | 'done' | 'failed'

/** What the placement contributor (the scheduler, or a pin) says about this node. */
export interface PlacementFields {
  /** Stage served or being joined; -1 while a joining node has not picked one. */
  readonly stage: number
  /** While leaving to move: the stage it moves to. */
  readonly to?: number
  readonly state: PlacementState
  /** Started with --stage: never moves. */
  readonly pinned: boolean
  /** Unix ms when it took `stage` (start of its cool-down). */
  readonly since: number
  /** Capacity at `stage`: microbatches per busy second (the scheduler's rule reads it). */
  readonly tput: number
  /** Microbatches waiting or running, when the placement contributor measures them. */
  readonly queue?: number
  /** --max-memory in bytes: the scheduler assigns this node only stages estimated within it; absent: no budget. */
  readonly mem?: number
}

/** What the run contributor (the serving pipeline) says about this node. */
export interface RunFields {
  readonly phase: RunPhase
  /** Optimizer steps this node applied (a stage-0 node's count is the swarm's step). */
  readonly step: number
  /** Microbatches per second the pipeline completes (wall clock, EWMA). */
  readonly throughput: number
  /** Microbatches waiting or running on this node. */
  readonly queue: number
}

/** One node as the view holds it: the union of what every reader needs. */
export interface Member extends Omit<PlacementFields, 'queue'>, RunFields {
  readonly peer: string
  /** Software version. */
  readonly version: string
  /** Unix ms when the heartbeat was published. */
  readonly time: number
  /** Strictly increasing per publisher (replays are ignored). */
  readonly seq: number
  /** Local receive time (unix ms); this node's own record: now. */
  readonly seen: number
}

/** Counters of the gossip service. */
export interface MembershipStats {
  readonly published: number
  readonly accepted: number
  /** Refused heartbeats by error code, by the verdict they got. */
  readonly rejected: Readonly<Record<string, number>>
  readonly ignored: Readonly<Record<string, number>>
}

export interface Membership {
  /** This node's peer id. */
  readonly me: string
  readonly runId: string
  readonly stages: number
  /** Live members other than this node. */
  members(): Member[]
  /** A live member, this node included (its record as of now). */
  member(peer: string): Member | undefined
  /** This node's record as it would be published now. */
  self(): Member
  /** Peers the router may send work of `stage` to: serving it, not failed, not this node; best first. */
  peersForStage(stage: number): string[]
  /** A peer's gossiped microbatches/s: its capacity when measured, else its pipeline's rate. */
  throughputOf(peer: string): number | undefined
  /** Called with every accepted heartbeat of another node (the averaging trigger). Returns an unsubscribe function. */
  onMember(listener: (member: Member) => void): () => void
  /** Publishes this node's heartbeat now (also done every interval); never rejects. */
  publish(): Promise<void>
  /**
   * Sets where this node's placement fields come from (replacing the previous provider). The
   * returned function detaches it; what it last said stays published until another provider is set.
   */
  providePlacement(provider: () => PlacementFields): () => void
  /** Sets where this node's run fields come from; detaching works as for providePlacement. */
  provideRun(provider: () => RunFields): () => void
  /** Leaves a peer out of this view for good (a convicted cheater); its heartbeats are refused. */
  exclude(peer: string): void
  /** Gossip neighbours that take part (subscribed to the members topic). */
  neighbours(): string[]
  stats(): MembershipStats
}
