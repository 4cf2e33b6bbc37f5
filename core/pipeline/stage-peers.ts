// What the pipeline's parts read from the run's one membership view (core/contracts/membership.ts),
// each in the one place it is defined:
//
//   routing            membership.peersForStage: serving, not failed, not this node, best first
//   averaging partners every other member of the stage that has not failed, joining ones included
//                      (a node fetching the stage's state must not be left out of the next round)
//   the end of a run   every member placed at a stage, with its run phase
//   status, rendezvous members per stage (this node counted once where it serves, or not at all)
import type { Member, Membership } from '../contracts/membership.ts'
import type { PeerSource } from './router.ts'
import type { RunEndView } from './run-end.ts'

const placed = (m: Member): boolean => m.stage >= 0

/** The peer source averaging groups are formed from. */
export function averagingPartners (membership: Membership): PeerSource {
  return {
    peersForStage: stage => membership.members().filter(m => m.stage === stage && m.phase !== 'failed').map(m => m.peer),
    throughputOf: peer => membership.throughputOf(peer)
  }
}

/** The run-end protocol's view: members at a stage with their phase, and publishing now. */
export function runEndView (membership: Membership): RunEndView {
  return {
    live: () => membership.members().filter(placed).map(m => ({ stage: m.stage, state: m.phase })),
    publish: () => { void membership.publish() }
  }
}

/** Members per stage that have not failed: others only, plus this node at `myStage` when given. */
export function peersPerStage (membership: Membership, stages: number, myStage?: number): Record<string, number> {
  const out: Record<string, number> = {}
  for (let s = 0; s < stages; s++) out[String(s)] = 0
  if (myStage != null) out[String(myStage)]++
  for (const m of membership.members()) {
    if (placed(m) && m.stage < stages && m.phase !== 'failed') out[String(m.stage)]++
  }
  return out
}
