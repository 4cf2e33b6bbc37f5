// How long the members of a round look for each other: the join window follows the measured round
// trips to the stage's peers instead of a constant (issue 15: a fixed 3 s closed before a member
// 400 ms round trips away, which started the round 2 s late, could greet anyone).
//
//   window = clamp(floor + JOIN_WINDOW_RTOS x max RTO, floor, ceiling)
//   RTO    = srtt + 4 rttvar of a peer the view lists at the stage (core/net/peer-timing.ts), over
//            the peers measured so far; none measured: the floor alone
//
// Why these terms: members start a round on different triggers (their own step, a stage-0
// heartbeat, a microbatch header), so one lags another by up to a heartbeat period plus a couple
// of one-way hops; a greeting costs up to three round trips (stream negotiation, the request, a
// redial after a stale address) and a member found through another's answer (transitive greeting)
// as many again. The floor (the Averager's `joinMs`, 3 s by default) covers the heartbeat period
// and a loaded machine on loopback, where round trips add nothing; 8 RTOs cover the hops, the
// greetings and the transitive ones on slow links (400 ms round trips: about 3 s + 3.9 s). The
// ceiling bounds what an absent member costs: the window is waited out only when a peer the view
// lists does not show up (a complete group closes at once), and a round holds its stage meanwhile.
import type { PeerTiming } from '../net/peer-timing.ts'

/** Retransmission timeouts (srtt + 4 rttvar) of the slowest measured peer added to the floor. */
export const JOIN_WINDOW_RTOS = 8
/** Default ceiling of the window (ms), unless the floor is higher. */
export const JOIN_WINDOW_CEILING_MS = 15_000

type RttSource = Pick<PeerTiming, 'hasRtt' | 'rttOf'>

/** The join window (ms) for a round whose partners are `peers` (see the top of this file). */
export function joinWindowMs (timing: RttSource | undefined, peers: Iterable<string>, floorMs: number, ceilingMs: number): number {
  let rto = 0
  if (timing != null) {
    for (const p of peers) {
      if (!timing.hasRtt(p)) continue
      const { srtt, rttvar } = timing.rttOf(p)
      const r = srtt + 4 * rttvar
      if (Number.isFinite(r) && r > rto) rto = r
    }
  }
  return Math.ceil(Math.min(Math.max(floorMs, ceilingMs), Math.max(floorMs, floorMs + JOIN_WINDOW_RTOS * rto)))
}
