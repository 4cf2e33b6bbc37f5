// Typed errors of the membership view, one class per condition. A refused heartbeat carries the
// gossip verdict it maps to (Lodestar style, core/errors.ts Verdict): 'reject' (an honest, up-to-date
// peer never sends this: gossipsub counts an invalid delivery against the forwarder's score) or
// 'ignore' (honest peers cause it too: late delivery, reordering, a restart; dropped without penalty).
import { ConfigError, LayerswarmError } from '../errors.ts'

export type HeartbeatVerdict = 'reject' | 'ignore'

/** Base class of every reason a heartbeat is refused (never thrown itself). */
export class HeartbeatError extends LayerswarmError {
  constructor (code: string, message: string, verdict: HeartbeatVerdict) {
    super(code, message, { verdict })
  }
}

/** Not a heartbeat: oversized, not UTF-8 JSON, missing/extra/mistyped fields. REJECT. */
export class HeartbeatMalformedError extends HeartbeatError {
  constructor (reason: string) {
    super('ERR_MEMBER_HB_MALFORMED', `malformed heartbeat: ${reason}`, 'reject')
  }
}

/** The gossip message is unsigned: nothing binds the payload to a peer. REJECT. */
export class HeartbeatUnsignedError extends HeartbeatError {
  constructor () {
    super('ERR_MEMBER_HB_UNSIGNED', 'heartbeat arrived in an unsigned gossip message', 'reject')
  }
}

/** The payload names another peer than the message's signer (`from`): a forgery. REJECT. */
export class HeartbeatSenderMismatchError extends HeartbeatError {
  constructor (readonly from: string, readonly claimed: string) {
    super('ERR_MEMBER_HB_SENDER', `heartbeat signed by ${from} claims to be from ${claimed}`, 'reject')
  }
}

/**
 * The payload names another run than the topic's. The topic already carries the run id, so an
 * honest node never publishes this: REJECT (the wire layer IGNOREs other runs' frames because a
 * stream is not scoped to a run; a topic is).
 */
export class HeartbeatWrongRunError extends HeartbeatError {
  constructor (readonly expected: string, readonly got: string) {
    super('ERR_MEMBER_HB_RUN', `heartbeat for run ${got} on the topic of run ${expected}`, 'reject')
  }
}

/** A well-formed field with an impossible value: stage out of range, negative/huge throughput or queue, ... REJECT. */
export class HeartbeatValueError extends HeartbeatError {
  constructor (readonly field: string, reason: string) {
    super('ERR_MEMBER_HB_VALUE', `heartbeat field ${field}: ${reason}`, 'reject')
  }
}

/** Time stamped further in the future than the allowed clock skew. REJECT. */
export class HeartbeatFromFutureError extends HeartbeatError {
  constructor (readonly aheadMs: number) {
    super('ERR_MEMBER_HB_FUTURE', `heartbeat is ${aheadMs} ms in the future (beyond the allowed clock skew)`, 'reject')
  }
}

/** Older than the view's TTL: it would expire on arrival. IGNORE (late delivery is not malice). */
export class HeartbeatStaleError extends HeartbeatError {
  constructor (readonly ageMs: number) {
    super('ERR_MEMBER_HB_STALE', `heartbeat is ${ageMs} ms old (older than the view TTL)`, 'ignore')
  }
}

/** Sequence number not above the last one accepted from that peer (reordered or replayed). IGNORE. */
export class HeartbeatReplayError extends HeartbeatError {
  constructor (readonly seq: number, readonly last: number) {
    super('ERR_MEMBER_HB_REPLAY', `heartbeat seq ${seq} is not above the last accepted ${last}`, 'ignore')
  }
}

/** The node's libp2p has no gossipsub service under `services.pubsub`. */
/** The publisher was convicted of cheating (or excluded otherwise): it has no place in this node's view. REJECT. */
export class HeartbeatExcludedError extends HeartbeatError {
  constructor (readonly peer: string) {
    super('ERR_MEMBER_HB_EXCLUDED', `heartbeat from ${peer}, whom this node excluded from the run`, 'reject')
  }
}

/** With --chain: the publisher's bound hotkey is not registered, or its binding does not verify. REJECT. */
export class HeartbeatNotAdmittedError extends HeartbeatError {
  constructor (readonly peer: string) {
    super('ERR_MEMBER_HB_NOT_ADMITTED', `heartbeat from ${peer}, whom admission refused (not registered on the subnet, or no valid binding)`, 'reject')
  }
}

/** With --chain: the publisher's admission is not known yet (its binding is being asked for). IGNORE. */
export class HeartbeatAdmissionPendingError extends HeartbeatError {
  constructor (readonly peer: string) {
    super('ERR_MEMBER_HB_ADMISSION_PENDING', `heartbeat from ${peer}, whose admission is not decided yet`, 'ignore')
  }
}

/** A publisher sent heartbeats faster than its rate (membership-service.ts, PublisherRates): dropped, not forwarded. IGNORE. */
export class HeartbeatRateLimitedError extends HeartbeatError {
  constructor (peer: string) {
    super('ERR_MEMBER_HB_RATE', `heartbeats from ${peer} arrive faster than its rate; dropped`, 'ignore')
  }
}

/** A publisher kept flooding far past its rate (a hard bound no honest node reaches). REJECT. */
export class HeartbeatFloodError extends HeartbeatError {
  constructor (peer: string, excess: number) {
    super('ERR_MEMBER_HB_FLOOD', `heartbeats from ${peer} exceed its rate by ${Math.round(excess)}: a flood`, 'reject')
  }
}

export class MembershipPubsubMissingError extends ConfigError {
  constructor () {
    super('the membership view needs gossipsub at libp2p.services.pubsub')
  }
}

/** A membership method was called in the wrong lifecycle state (a second start, a second service on one node and run). */
export class MembershipStateError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_MEMBERSHIP_STATE', message)
  }
}

/** The verdict for any error thrown by heartbeat validation; an unexpected error (our bug) is IGNOREd, never blamed on the peer. */
export function heartbeatVerdict (err: unknown): HeartbeatVerdict {
  return err instanceof HeartbeatError && err.verdict === 'reject' ? 'reject' : 'ignore'
}
