// Typed errors of the pipeline, one class per condition, and what each says about the peer that
// caused it (extends the wire layer's verdicts, core/wire/penalty.ts).
import { LayerswarmError } from '../errors.ts'
import { RemoteError } from '../wire/errors.ts'
import { wireVerdict, type WireVerdict } from '../wire/penalty.ts'

/** An inbound microbatch message breaks the protocol: wrong kind, shape, bounds, route or metadata. */
export class InvalidMicrobatchError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_PIPELINE_INVALID', message)
  }
}

/** A microbatch for a stage this node does not serve (an honest peer with a stale view sends this). */
export class StageMismatchError extends LayerswarmError {
  constructor (readonly expected: number, readonly got: number) {
    super('ERR_PIPELINE_STAGE', `microbatch is for stage ${got}, this node serves stage ${expected}`)
  }
}

/** No peer of a stage could take the microbatch within the retry budget: it is dropped. */
export class MicrobatchDroppedError extends LayerswarmError {
  constructor (readonly stage: number, message = `no peer of stage ${stage} completed the microbatch; dropped`) {
    super('ERR_PIPELINE_DROPPED', message)
  }
}

/** This node is shutting down or the run is over: it takes no more work. */
export class PipelineStoppedError extends LayerswarmError {
  constructor (message = 'the pipeline is stopping') {
    super('ERR_PIPELINE_STOPPED', message)
  }
}

const REJECT = new Set(['ERR_PIPELINE_INVALID', 'ERR_SHAPE'])
// an honest peer answers these when it, or the stages behind it, cannot serve: no ban for the
// messenger, the microbatch is dropped upstream rather than retried (it would fail the same way)
const NOT_PEERS_FAULT = new Set(['ERR_PIPELINE_DROPPED', 'ERR_PIPELINE_STOPPED'])

/**
 * What an error seen while exchanging a microbatch with `peer` says about that peer. Pipeline
 * validation failures are 'reject'; a stage mismatch 'ignore'; a remote drop 'none'; the rest as
 * the wire layer says. A ShapeError counts only when raised on the peer's data (callers apply
 * this to inbound data errors only).
 */
export function pipelineVerdict (err: unknown): WireVerdict {
  if (err instanceof RemoteError) {
    if (NOT_PEERS_FAULT.has(err.remoteCode)) return 'none'
    return 'ignore'
  }
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string') {
    if (REJECT.has(code)) return 'reject'
    if (code === 'ERR_PIPELINE_STAGE') return 'ignore'
    if (NOT_PEERS_FAULT.has(code)) return 'none'
  }
  return wireVerdict(err)
}

/** A downstream peer reported that the microbatch was dropped behind it (do not retry elsewhere). */
export function isRemoteDrop (err: unknown): boolean {
  return err instanceof RemoteError && NOT_PEERS_FAULT.has(err.remoteCode)
}
