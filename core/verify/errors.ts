// Typed errors of verification (hop commitments, parameter digests, robust aggregation), one class
// per condition. A commitment that fails to verify says something about its sender: a bad
// signature or a wrong signer means the bytes were forged or tampered with (never honest), a
// malformed or oversized one that the sender broke the format: each carries verdict 'reject'
// (core/errors.ts), applied by whoever received the bytes from that sender.
import { LayerswarmError } from '../errors.ts'

/** A commitment's bytes do not parse: bad magic or version, a field out of range, trailing bytes. */
export class MalformedCommitmentError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_VERIFY_MALFORMED', `malformed commitment: ${message}`, { verdict: 'reject' })
  }
}

/** A commitment (signed or not) is larger than the format allows: rejected before parsing. */
export class CommitmentTooLargeError extends LayerswarmError {
  constructor (readonly size: number, readonly limit: number) {
    super('ERR_VERIFY_OVERSIZED', `commitment of ${size} bytes exceeds the limit of ${limit}`, { verdict: 'reject' })
  }
}

/** The signature does not verify under the producer's public key (forged or altered bytes). */
export class CommitmentSignatureError extends LayerswarmError {
  constructor (readonly producer: string) {
    super('ERR_VERIFY_BAD_SIGNATURE', `commitment signature does not verify for producer ${producer}`, { verdict: 'reject' })
  }
}

/** The commitment names another producer than the peer it was expected from (or signed with). */
export class CommitmentSignerError extends LayerswarmError {
  constructor (readonly expected: string, readonly got: string) {
    super('ERR_VERIFY_WRONG_SIGNER', `commitment is by ${got}, expected ${expected}`, { verdict: 'reject' })
  }
}

/** Parameters handed to a digest do not match the stage's layout (a name missing or extra, a wrong size). */
export class ParamsLayoutError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_VERIFY_PARAMS_LAYOUT', message)
  }
}

/** Options of a verification primitive (thresholds, factors) are out of range. */
export class VerifyOptionsError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_VERIFY_OPTIONS', message)
  }
}

// ---- checks, protocols, evidence (recompute.ts, reveal.ts, receipts.ts, evidence.ts) -------------

/** The producer no longer holds what a commitment names (its retention window passed, or it never did). */
export class RevealNotRetainedError extends LayerswarmError {
  constructor (message: string) {
    // honest producers say this about old hops: what it means for a check is the checker's rule (docs)
    super('ERR_VERIFY_NOT_RETAINED', message, { verdict: 'ignore' })
  }
}

/** A verification request or response breaks its protocol: bad op, metadata, frame order, sizes. */
export class VerifyProtocolError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_VERIFY_PROTOCOL', message, { verdict: 'reject' })
  }
}

/** What a peer revealed (inputs, output, params) does not match the signed commitment it is for. */
export class RevealMismatchError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_VERIFY_REVEAL_MISMATCH', message, { verdict: 'reject' })
  }
}

/** An accusation on the evidence topic does not parse, is unsigned, or its signature does not verify. */
export class AccusationMalformedError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_VERIFY_ACCUSATION_MALFORMED', `malformed accusation: ${message}`, { verdict: 'reject' })
  }
}

/** An accusation already seen, about a peer already convicted, or by or about this node: nothing to do. */
export class AccusationIgnoredError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_VERIFY_ACCUSATION_IGNORED', message, { verdict: 'ignore' })
  }
}

/** The accuser holds no evidence bundle for that commitment (or no longer). */
export class EvidenceNotHeldError extends LayerswarmError {
  constructor (id: string) {
    super('ERR_VERIFY_NO_EVIDENCE', `no evidence held for commitment ${id}`, { verdict: 'ignore' })
  }
}

/** The judgement code of a conviction: the peer's work failed a check any node can repeat. */
export class ConvictedError extends LayerswarmError {
  constructor (readonly peer: string, reason: string) {
    super('ERR_VERIFY_CONVICTED', `peer ${peer} convicted: ${reason}`, { verdict: 'reject' })
  }
}

/** The judgement code of an accusation that did not verify: the accuser is penalised. */
export class FalseAccusationError extends LayerswarmError {
  constructor (readonly accuser: string, reason: string) {
    super('ERR_VERIFY_FALSE_ACCUSATION', `false accusation by ${accuser}: ${reason}`, { verdict: 'reject' })
  }
}

/** A check cannot be set up here: the record's stage or codec is not this run's (a local or caller error). */
export class RecomputeSetupError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_VERIFY_SETUP', message)
  }
}
