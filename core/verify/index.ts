// Verification primitives (issue 13): hop commitments signed with the node's libp2p key, parameter
// digests, the comparison of a recomputed tensor with a claimed one, and robust aggregation of
// averaging contributions. Pure modules; how the pipeline, the validator role and averaging use
// them is docs/verification.md's "not wired yet" list.
export * from './errors.ts'
export { DIGEST_BYTES, createHasher, hashBytes, hashChunksAsync, hashHex, hashHexAsync, leBytes, sha256Chunks } from './digest.ts'
export type { Hasher } from './digest.ts'
export {
  COMMITMENT_VERSION, MAX_PRODUCER_BYTES, MAX_SIGNATURE_BYTES, MAX_SIGNED_COMMITMENT_BYTES,
  decodeCommitment, encodeCommitment, signCommitment, verifyCommitment
} from './commitment.ts'
export type { HopCommitment, HopKind, VerifiedCommitment } from './commitment.ts'
export { flatParamsDigest, paramsDigest, paramsDigestAsync, stageParamsDigest } from './params-digest.ts'
export type { ParamShape } from './params-digest.ts'
export { DEFAULT_TOLERANCE, compareTensors, tensorDiff } from './compare.ts'
export type { CompareVerdict, MismatchReason, TensorDiff, TensorLike, Tolerance } from './compare.ts'
export { DEFAULT_ROBUST_MEAN, robustMean } from './robust-mean.ts'
export type { Contribution, Exclusion, ExclusionReason, KeptContribution, RobustMeanOptions, RobustMeanResult } from './robust-mean.ts'
