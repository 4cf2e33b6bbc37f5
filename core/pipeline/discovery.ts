// The pipeline's view of its stage peers, over the node's one membership view (core/membership).
// TRANSITIONAL: the pipeline node still builds a `StageDirectory` from (libp2p, init); this class
// keeps that shape while the heartbeats are the membership's (`/layerswarm/<runId>/members/1.0.0`).
// Once the runtime hands the pipeline the Membership (Tokens.Membership) this file goes away.
//
//   shared   a membership of the run already runs on this libp2p node (the runtime's, or the
//            scheduler plugin's): the directory adds the pipeline's run fields to it and reads it
//   own      none runs (a pipeline without the scheduler, --stage N): the directory starts one
//            whose placement is the pinned stage, serving, and stops it at stop()
//
// Readers: the router (peersForStage, throughputOf), averaging (peersForStage: every member of the
// stage that has not failed, joining ones too), the end of a run and status (live, peersPerStage).
import type { Member, RunPhase } from '../contracts/membership.ts'
import type { Logger } from '../contracts/logger.ts'
import { createMembership, pinnedPlacement, runningMembership, type MembershipHost, type MembershipService } from '../membership/index.ts'
import type { PeerSource } from './router.ts'

export type TrainingState = RunPhase

/** A stage peer as the pipeline reads it. */
export interface DirectoryEntry {
  readonly peerId: string
  readonly stage: number
  readonly stages: number
  readonly state: TrainingState
  /** Optimizer steps this node applied. */
  readonly step: number
  /** Microbatches per second (its capacity when measured, else its pipeline's rate). */
  readonly throughput: number
  /** Microbatches waiting or running on this node. */
  readonly queue: number
  /** Unix ms of its heartbeat. */
  readonly time: number
  /** Local receive time (ms). */
  readonly seen: number
}

export interface StageDirectoryInit {
  readonly runId: string
  readonly stages: number
  /** Heartbeat period of an own membership (ms). Default 1000. */
  readonly intervalMs?: number
  /** An own membership forgets a peer after this long without a heartbeat (ms). Default 3 x interval + 1000. */
  readonly ttlMs?: number
  /** This node's pipeline fields (the run's phase as `state`). */
  readonly self: () => { stage: number, state: TrainingState, step: number, throughput: number, queue: number }
  /** Called with every heartbeat accepted from another peer at a stage (e.g. the swarm's step, for averaging). */
  readonly onHeartbeat?: (entry: DirectoryEntry) => void
  readonly log?: Logger
}

export class StageDirectory implements PeerSource {
  /** The node's membership view this directory reads (the router's source where the scheduler assigns stages). */
  readonly membership: MembershipService
  private readonly owned: boolean
  private detach: Array<() => void> = []

  constructor (libp2p: MembershipHost, private readonly init: StageDirectoryInit) {
    const shared = runningMembership(libp2p, init.runId)
    this.owned = shared == null
    const intervalMs = init.intervalMs ?? 1000
    this.membership = shared ?? createMembership(libp2p, { runId: init.runId, stages: init.stages, intervalMs, ttlMs: init.ttlMs ?? 3 * intervalMs + 1000, log: init.log })
  }

  get topic (): string {
    return this.membership.topic
  }

  start (): void {
    const m = this.membership
    this.detach.push(m.provideRun(() => {
      const s = this.init.self()
      return { phase: s.state, step: s.step, throughput: s.throughput, queue: s.queue }
    }))
    const listener = this.init.onHeartbeat
    if (listener != null) this.detach.push(m.onMember(member => { if (member.stage >= 0) listener(this.entry(member)) }))
    if (!this.owned) {
      void m.publish()
      return
    }
    this.detach.push(m.providePlacement(pinnedPlacement(this.init.self().stage)))
    m.start()
  }

  stop (): void {
    for (const d of this.detach.splice(0)) d()
    if (this.owned) this.membership.stop()
  }

  /** Publishes this node's heartbeat now (also on every interval). */
  publish (): void {
    void this.membership.publish()
  }

  /** Every peer of `stage` that has not failed, whatever its placement (averaging partners). */
  peersForStage (stage: number): string[] {
    return this.live().filter(e => e.stage === stage && e.state !== 'failed').map(e => e.peerId)
  }

  throughputOf (peer: string): number | undefined {
    return this.membership.throughputOf(peer)
  }

  /** Live peers at a stage (other peers only). */
  live (): DirectoryEntry[] {
    return this.membership.members().filter(m => m.stage >= 0).map(m => this.entry(m))
  }

  /** Peers per stage, this node included. */
  peersPerStage (myStage: number): Record<string, number> {
    const out: Record<string, number> = {}
    for (let s = 0; s < this.init.stages; s++) out[String(s)] = 0
    out[String(myStage)] = (out[String(myStage)] ?? 0) + 1
    for (const e of this.live()) if (e.state !== 'failed') out[String(e.stage)] = (out[String(e.stage)] ?? 0) + 1
    return out
  }

  private entry (m: Member): DirectoryEntry {
    return { peerId: m.peer, stage: m.stage, stages: this.init.stages, state: m.phase, step: m.step, throughput: m.tput > 0 ? m.tput : m.throughput, queue: m.queue, time: m.time, seen: m.seen }
  }
}
