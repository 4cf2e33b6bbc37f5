// Scheduler contract: from the gossiped swarm view, decide this node's stage and expose the view
// to the pipeline router. Implemented by plugins/scheduler (gossipsub consensus).

export type NodeState = 'joining' | 'serving' | 'leaving'

export interface PeerStageInfo {
  readonly peerId: string
  readonly stage: number
  /** Measured microbatches per second for that stage. */
  readonly throughput: number
  readonly queueLength: number
  readonly state: NodeState
  readonly version: string
  /** Unix ms of the heartbeat. */
  readonly time: number
}

export interface SwarmView {
  readonly stages: number
  readonly peers: readonly PeerStageInfo[]
}

export interface StageAssignment {
  readonly stage: number
  /** Why (for logs): 'pinned', 'join', 'rebalance', ... */
  readonly reason: string
}

export interface Scheduler {
  /** The current stage of this node, or undefined before assignment. */
  currentStage(): number | undefined
  view(): SwarmView
  /** Peer ids serving `stage` (serving state), best first. */
  peersForStage(stage: number): string[]
  /** Called when this node's assignment changes. Returns an unsubscribe function. */
  onAssignment(listener: (a: StageAssignment) => void): () => void
}

/**
 * Seams a training runtime fills in on a scheduler that moves nodes between stages
 * (plugins/scheduler: GossipScheduler.setMoveHooks). A move is safe only once both are in place.
 */
export interface StageMoveHooks {
  /** Finish or drop in-flight work of stage `from` before the node leaves it; throwing abandons the move. */
  beforeMove?: (from: number, to: number, signal: AbortSignal) => Promise<void>
  /** Load (and get ready to serve) stage `stage`, from `peers` that serve it (empty: nobody does). */
  fetchStageState?: (stage: number, peers: readonly string[], signal: AbortSignal) => Promise<void>
}

/** This node's load as the runtime measures it. */
export interface StageLoad {
  /** Microbatches per second of busy time at the current stage. */
  readonly throughput: number
  readonly queueLength: number
}

/** A scheduler the runtime can steer: its move hooks and its load source. */
export interface SteerableScheduler extends Scheduler {
  setMoveHooks(hooks: StageMoveHooks): void
  setLoadSource(fn: () => StageLoad): void
}
