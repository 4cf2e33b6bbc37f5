// Typed errors of peer deadlines (core/net/peer-timing.ts), with their verdicts (core/errors.ts).
import { LayerswarmError } from '../errors.ts'

/**
 * A peer did not answer within its deadline (the estimator's figure for that exchange): slowness
 * an honest peer can also show, so 'ignore' (retry elsewhere, back off); a peer that keeps it up
 * stays banned longer with every repeat (the router's backoff).
 */
export class PeerDeadlineError extends LayerswarmError {
  constructor (readonly peer: string, readonly deadlineMs: number, what = 'exchange') {
    super('ERR_PEER_DEADLINE', `peer ${peer} did not complete the ${what} within its deadline of ${Math.round(deadlineMs)} ms`, { verdict: 'ignore' })
  }
}
