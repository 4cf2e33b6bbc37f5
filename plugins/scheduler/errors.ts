// Typed errors of the scheduler, one class per condition. Heartbeat validation errors carry the
// gossip verdict they map to (Lodestar style): 'reject' (an honest, up-to-date peer never sends
// this: gossipsub counts an invalid delivery against the forwarder's score) or 'ignore' (honest
// peers cause it too: late delivery, reordering, a restart; dropped without penalty).
import { ConfigError, LayerswarmError } from '../../core/contracts/index.ts'

export type HeartbeatVerdict = 'reject' | 'ignore'

/** Base class of every reason a heartbeat is refused; `verdict` is what the topic validator answers. */
export abstract class HeartbeatError extends LayerswarmError {
  abstract readonly verdict: HeartbeatVerdict
}

/** Not a heartbeat: oversized, not UTF-8 JSON, missing/extra/mistyped fields. REJECT. */
export class HeartbeatMalformedError extends HeartbeatError {
  readonly verdict = 'reject'
  constructor (reason: string) {
    super('ERR_SCHED_HB_MALFORMED', `malformed heartbeat: ${reason}`)
  }
}

/** The gossip message is unsigned: nothing binds the payload to a peer. REJECT. */
export class HeartbeatUnsignedError extends HeartbeatError {
  readonly verdict = 'reject'
  constructor () {
    super('ERR_SCHED_HB_UNSIGNED', 'heartbeat arrived in an unsigned gossip message')
  }
}

/** The payload names another peer than the message's signer (`from`): a forgery. REJECT. */
export class HeartbeatSenderMismatchError extends HeartbeatError {
  readonly verdict = 'reject'
  constructor (readonly from: string, readonly claimed: string) {
    super('ERR_SCHED_HB_SENDER', `heartbeat signed by ${from} claims to be from ${claimed}`)
  }
}

/**
 * The payload names another run than the topic's. The topic already carries the run id, so an
 * honest node never publishes this: REJECT (the wire layer IGNOREs other runs' frames because a
 * stream is not scoped to a run; a topic is).
 */
export class HeartbeatWrongRunError extends HeartbeatError {
  readonly verdict = 'reject'
  constructor (readonly expected: string, readonly got: string) {
    super('ERR_SCHED_HB_RUN', `heartbeat for run ${got} on the topic of run ${expected}`)
  }
}

/** A well-formed field with an impossible value: stage out of range, negative/huge throughput or queue, ... REJECT. */
export class HeartbeatValueError extends HeartbeatError {
  readonly verdict = 'reject'
  constructor (readonly field: string, reason: string) {
    super('ERR_SCHED_HB_VALUE', `heartbeat field ${field}: ${reason}`)
  }
}

/** Time stamped further in the future than the allowed clock skew. REJECT. */
export class HeartbeatFromFutureError extends HeartbeatError {
  readonly verdict = 'reject'
  constructor (readonly aheadMs: number) {
    super('ERR_SCHED_HB_FUTURE', `heartbeat is ${aheadMs} ms in the future (beyond the allowed clock skew)`)
  }
}

/** Older than the view's TTL: it would expire on arrival. IGNORE (late delivery is not malice). */
export class HeartbeatStaleError extends HeartbeatError {
  readonly verdict = 'ignore'
  constructor (readonly ageMs: number) {
    super('ERR_SCHED_HB_STALE', `heartbeat is ${ageMs} ms old (older than the view TTL)`)
  }
}

/** Sequence number not above the last one accepted from that peer (reordered or replayed). IGNORE. */
export class HeartbeatReplayError extends HeartbeatError {
  readonly verdict = 'ignore'
  constructor (readonly seq: number, readonly last: number) {
    super('ERR_SCHED_HB_REPLAY', `heartbeat seq ${seq} is not above the last accepted ${last}`)
  }
}

/** The node's libp2p has no gossipsub service under `services.pubsub`. */
export class SchedulerPubsubMissingError extends ConfigError {
  constructor () {
    super('the scheduler plugin needs gossipsub at libp2p.services.pubsub')
  }
}

/** A scheduler method was called in the wrong lifecycle state. */
export class SchedulerStateError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_SCHED_STATE', message)
  }
}

/** Moving to another stage failed in a runtime hook (beforeMove or fetchStageState). */
export class StageMoveError extends LayerswarmError {
  constructor (readonly from: number | undefined, readonly to: number, options?: { cause?: unknown }) {
    super('ERR_SCHED_MOVE', `moving from stage ${from ?? 'none'} to stage ${to} failed: ${(options?.cause as Error)?.message ?? 'unknown error'}`, options)
  }
}

/** The verdict for any error thrown by heartbeat validation; an unexpected error (our bug) is IGNOREd, never blamed on the peer. */
export function heartbeatVerdict (err: unknown): HeartbeatVerdict {
  return err instanceof HeartbeatError ? err.verdict : 'ignore'
}
