// Typed errors of the pipeline, one class per condition, each carrying its verdict on the peer
// whose data raised it (core/errors.ts Verdict).
import { LayerswarmError } from '../errors.ts'
import { RemoteError } from '../wire/errors.ts'

/** An inbound microbatch message breaks the protocol: wrong kind, shape, bounds, route or metadata. */
export class InvalidMicrobatchError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_PIPELINE_INVALID', message, { verdict: 'reject' })
  }
}

/** A microbatch for a stage this node does not serve (an honest peer with a stale view sends this). */
export class StageMismatchError extends LayerswarmError {
  constructor (readonly expected: number, readonly got: number) {
    super('ERR_PIPELINE_STAGE', `microbatch is for stage ${got}, this node serves stage ${expected}`, { verdict: 'ignore' })
  }
}

/** No peer of a stage could take the microbatch within the retry budget: it is dropped. */
export class MicrobatchDroppedError extends LayerswarmError {
  constructor (readonly stage: number, message = `no peer of stage ${stage} completed the microbatch; dropped`) {
    super('ERR_PIPELINE_DROPPED', message)
  }
}

/** The sender was convicted of cheating: this node takes no work from it (already judged: no new verdict). */
export class PeerConvictedError extends LayerswarmError {
  constructor (readonly peer: string) {
    super('ERR_PIPELINE_CONVICTED', `peer ${peer} was convicted of cheating; its work is refused`)
  }
}

/** This node is shutting down or the run is over: it takes no more work. */
export class PipelineStoppedError extends LayerswarmError {
  constructor (message = 'the pipeline is stopping') {
    super('ERR_PIPELINE_STOPPED', message)
  }
}

/** A peer dropped most of what it was sent while its stage's other peers completed theirs (route-auth.ts, DropTracker): 'reject'. */
export class RepeatedDropsError extends LayerswarmError {
  constructor (readonly peer: string, readonly drops: number, readonly of: number) {
    super('ERR_PIPELINE_REPEATED_DROPS', `peer ${peer} dropped ${drops.toFixed(1)} of its last ${of.toFixed(1)} microbatches while its stage's other peers completed theirs`, { verdict: 'reject' })
  }
}

/**
 * A peer the view lists at a stage does not speak the pipeline protocol (protocol negotiation failed):
 * 'ignore', so the router bans it with its backoff without a penalty (an honest node between stages can
 * briefly have no handler); a fake server was otherwise routed to hundreds of times in seconds.
 */
export class StageNotServedError extends LayerswarmError {
  constructor (readonly peer: string, readonly stage: number, cause?: unknown) {
    super('ERR_PIPELINE_NOT_SERVED', `peer ${peer}, listed at stage ${stage}, does not serve the pipeline protocol`, { verdict: 'ignore', cause })
  }
}

/** A microbatch from a peer the view does not list as serving the previous stage (route-auth.ts): 'reject'. */
export class UpstreamNotServingError extends LayerswarmError {
  constructor (readonly peer: string, readonly stage: number) {
    super('ERR_PIPELINE_UPSTREAM', `peer ${peer} is not serving stage ${stage}: this node takes activations only from stage ${stage}`, { verdict: 'reject' })
  }
}

/** A microbatch whose origin signature is missing or does not verify (route-auth.ts): 'reject' on the sender. */
export class OriginAuthError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_PIPELINE_ORIGIN_AUTH', message, { verdict: 'reject' })
  }
}

// an honest peer answers these when it, or the stages behind it, cannot serve: no ban for the
// messenger, the microbatch is dropped upstream rather than retried (it would fail the same way)
const NOT_PEERS_FAULT = new Set(['ERR_PIPELINE_DROPPED', 'ERR_PIPELINE_STOPPED'])

/** A downstream peer reported that the microbatch was dropped behind it (do not retry elsewhere). */
export function isRemoteDrop (err: unknown): boolean {
  return err instanceof RemoteError && NOT_PEERS_FAULT.has(err.remoteCode)
}
