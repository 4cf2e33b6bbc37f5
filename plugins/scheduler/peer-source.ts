// Adapter from the scheduler's view to the pipeline router's `PeerSource` seam
// (core/pipeline/router.ts: peersForStage(stage) without this node, optional throughputOf(peer)).
// Structural: the plugin does not import core/pipeline; the router takes this object as it is.
import type { Scheduler } from '../../core/contracts/scheduler.ts'

export interface SchedulerPeerSource {
  peersForStage(stage: number): string[]
  throughputOf(peer: string): number | undefined
}

/** Peers per stage from `scheduler` (serving, best first), without `self`. */
export function schedulerPeerSource (scheduler: Scheduler, self: string): SchedulerPeerSource {
  return {
    peersForStage: stage => scheduler.peersForStage(stage).filter(p => p !== self),
    throughputOf: peer => scheduler.view().peers.find(p => p.peerId === peer)?.throughput
  }
}
