// Typed errors of averaging (group formation, butterfly all-reduce, state sync), one class per
// condition, each carrying its verdict on the peer whose data raised it (core/errors.ts Verdict):
// 'reject' bans the peer from later rounds, 'ignore' only loses its data.
import { LayerswarmError } from '../errors.ts'

/** An averaging request or response breaks the protocol: bad metadata, kind, part order or range. */
export class AveragingProtocolError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_AVG_PROTOCOL', message, { verdict: 'reject' })
  }
}

/** A shard (contribution or result) holds the wrong number of elements. */
export class ShardSizeError extends LayerswarmError {
  constructor (readonly expected: number, readonly got: number, what = 'shard') {
    super('ERR_AVG_SHARD_SIZE', `${what} holds ${got} elements, expected ${expected}`, { verdict: 'reject' })
  }
}

/** A contribution's data does not match the norm / max |x| its sender declared. */
export class ShardStatsMismatchError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_AVG_STATS', message, { verdict: 'reject' })
  }
}

/** An averaged shard lies outside the bounds its inputs allow (norm or max |x|): the owner lied. */
export class ShardBoundsError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_AVG_BOUNDS', message, { verdict: 'reject' })
  }
}

/**
 * A contribution lies outside what the group's honest members produce (robust shard averaging:
 * its norm against the group's median, its direction against the group's): left out of the mean.
 */
export class ContributionOutlierError extends LayerswarmError {
  constructor (readonly reason: string, message: string) {
    super('ERR_AVG_OUTLIER', `contribution excluded (${reason}): ${message}`, { verdict: 'reject' })
  }
}

/** The peer is on this node's ban list (it misbehaved in an earlier round). */
export class PeerBannedError extends LayerswarmError {
  constructor (readonly peer: string) {
    super('ERR_AVG_BANNED', `peer ${peer} is banned from averaging`, { verdict: 'ignore' })
  }
}

/** A request for a round / stage / group this node is not (or no longer) running. */
export class RoundMismatchError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_AVG_ROUND', message, { verdict: 'ignore' })
  }
}

/**
 * A greeting or request for a round this node has finished: the sender came late (a joiner that
 * synced the previous round's state while its partners ran this one). Its own code, so the late one
 * can tell this answer from other mismatches (StageAveraging counts the round as joined late).
 */
export class RoundOverError extends LayerswarmError {
  constructor (round: number, stage: number) {
    super('ERR_AVG_ROUND_OVER', `round ${round} of stage ${stage} is over here`, { verdict: 'ignore' })
  }
}

/** The sender's view of the group (members, order, size) differs from this node's. */
export class GroupViewMismatchError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_AVG_VIEW', message, { verdict: 'ignore' })
  }
}

/** A contribution arrived after the shard owner closed the shard's average. */
export class ContributionLateError extends LayerswarmError {
  constructor (message = 'the contribution arrived after the shard was averaged') {
    super('ERR_AVG_LATE', message, { verdict: 'ignore' })
  }
}

/** Local misuse of the averaging API (bad round arguments, options out of range). */
export class AveragingConfigError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_AVG_CONFIG', message)
  }
}

/** Averaging was stopped (node shutting down). */
export class AveragerStoppedError extends LayerswarmError {
  constructor (message = 'the averager is stopped') {
    super('ERR_AVG_STOPPED', message)
  }
}

// ---- state sync -------------------------------------------------------------------------------

/** No peer offered state for the stage (or none answered in time). */
export class NoStatePeersError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_STATE_NO_PEERS', message)
  }
}

/** Serving peers disagree and no version is backed by enough of them with one hash. */
export class StateAgreementError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_STATE_AGREEMENT', message)
  }
}

/** A chunk's bytes do not hash to what the agreed manifest says (the serving peer is corrupt). */
export class StateChunkHashError extends LayerswarmError {
  constructor (readonly index: number, readonly peer: string) {
    super('ERR_STATE_CHUNK_HASH', `chunk ${index} from ${peer} does not match the agreed hash`, { verdict: 'reject' })
  }
}

/** The assembled state does not hash to the agreed value. */
export class StateHashError extends LayerswarmError {
  constructor (expected: string, got: string) {
    super('ERR_STATE_HASH', `assembled state hashes to ${got}, peers agreed on ${expected}`)
  }
}

/** The requested state version is no longer (or not yet) served by the peer. */
export class StateVersionError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_STATE_VERSION', message, { verdict: 'ignore' })
  }
}

/** A state-sync request or response breaks the protocol (bad op, range, metadata, manifest). */
export class StateProtocolError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_STATE_PROTOCOL', message, { verdict: 'reject' })
  }
}

/** Serialized state bytes that cannot be parsed (bad magic, truncated, sizes disagree). */
export class StateFormatError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_STATE_FORMAT', message)
  }
}

/**
 * A peer reports other parameters for the agreed round than the majority, while the majority lists
 * it in that round's group: members of one round in which every shard arrived hold the same bits.
 */
export class StateConflictError extends LayerswarmError {
  constructor (peer: string, round: number) {
    super('ERR_STATE_CONFLICT', `peer ${peer} reports other parameters for round ${round} than the rest of its group`, { verdict: 'reject' })
  }
}

/** The parameters of an agreed state do not have the digest its peers vouched for. */
export class StateDigestError extends LayerswarmError {
  constructor (expected: string, got: string) {
    super('ERR_STATE_DIGEST', `the agreed state's parameters digest to ${got}, its peers vouched for ${expected}`, { verdict: 'reject' })
  }
}
