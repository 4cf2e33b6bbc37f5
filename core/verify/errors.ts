// Typed errors of verification (hop commitments, parameter digests, robust aggregation), one class
// per condition. A commitment that fails to verify says something about its sender: a bad
// signature or a wrong signer means the bytes were forged or tampered with (never honest), a
// malformed or oversized one that the sender broke the format. What a caller does with that (ban,
// penalise the accuser, ignore) is the validator's business, not this layer's.
import { LayerswarmError } from '../errors.ts'

/** A commitment's bytes do not parse: bad magic or version, a field out of range, trailing bytes. */
export class MalformedCommitmentError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_VERIFY_MALFORMED', `malformed commitment: ${message}`)
  }
}

/** A commitment (signed or not) is larger than the format allows: rejected before parsing. */
export class CommitmentTooLargeError extends LayerswarmError {
  constructor (readonly size: number, readonly limit: number) {
    super('ERR_VERIFY_OVERSIZED', `commitment of ${size} bytes exceeds the limit of ${limit}`)
  }
}

/** The signature does not verify under the producer's public key (forged or altered bytes). */
export class CommitmentSignatureError extends LayerswarmError {
  constructor (readonly producer: string) {
    super('ERR_VERIFY_BAD_SIGNATURE', `commitment signature does not verify for producer ${producer}`)
  }
}

/** The commitment names another producer than the peer it was expected from (or signed with). */
export class CommitmentSignerError extends LayerswarmError {
  constructor (readonly expected: string, readonly got: string) {
    super('ERR_VERIFY_WRONG_SIGNER', `commitment is by ${got}, expected ${expected}`)
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
