// Verification (issue 13): hop commitments signed with the node's libp2p key, parameter digests, the
// comparison of a recomputed tensor with a claimed one, robust aggregation of averaging contributions
// (pure modules); the checker (recompute.ts), its protocols (reveal.ts, receipts.ts), accusations,
// evidence and convictions (evidence.ts), the validator role and the work ledger built on them.
// docs/verification.md says what the pipeline wires and what is not covered yet.
export * from './errors.ts'
export { DIGEST_BYTES, createHasher, hashBytes, hashChunksAsync, hashHex, hashHexAsync, leBytes, sha256Chunks } from './digest.ts'
export type { Hasher } from './digest.ts'
export {
  COMMITMENT_VERSION, MAX_PRODUCER_BYTES, MAX_SIGNATURE_BYTES, MAX_SIGNED_COMMITMENT_BYTES,
  decodeCommitment, encodeCommitment, signCommitment, signedBody, verifyCommitment
} from './commitment.ts'
export type { HopCommitment, HopKind, VerifiedCommitment } from './commitment.ts'
export { flatParamsDigest, paramsDigest, paramsDigestAsync, stageParamsDigest } from './params-digest.ts'
export type { ParamShape } from './params-digest.ts'
export { DEFAULT_TOLERANCE, compareTensors, tensorDiff } from './compare.ts'
export type { CompareVerdict, MismatchReason, TensorDiff, TensorLike, Tolerance } from './compare.ts'
export { DEFAULT_ROBUST_MEAN, robustMean } from './robust-mean.ts'
export type { Contribution, Exclusion, ExclusionReason, KeptContribution, RobustMeanOptions, RobustMeanResult } from './robust-mean.ts'
export { DEFAULT_RETENTION_MS, EvidenceService, revealWithRetries } from './evidence.ts'
export type { EvidenceInit, EvidenceStatus } from './evidence.ts'
export { Convictions } from './convictions.ts'
export type { Conviction, ConvictionListener } from './convictions.ts'
export { MAX_ACCUSATION_BYTES, evidenceTopic, signAccusation, verifyAccusation } from './accusation.ts'
export type { Accusation, AccusationKind } from './accusation.ts'
export { hopInputHash, hopKey, hopOutputHash } from './hop-records.ts'
export type { HopRecord, HopRecordSource, HopTensor, ReceiptSource } from './hop-records.ts'
export { layoutOf, recomputeHop, revealMismatch, stageSends } from './recompute.ts'
export type { RecomputeContext, RecomputeOptions, RecomputeReason, RecomputeResult, RevealedHop } from './recompute.ts'
export {
  DEFAULT_MAX_HOP_BYTES, EVIDENCE_PROTOCOL, EvidenceServer, EvidenceStore, REVEAL_PROTOCOL, RevealServer, commitmentId, readHop,
  requestEvidence, requestReveal, sendHop
} from './reveal.ts'
export type { HopRequestOptions, RevealOptions, RevealServerInit } from './reveal.ts'
export { MAX_RECEIPTS, RECEIPTS_PROTOCOL, ReceiptServer, requestReceipts } from './receipts.ts'
export type { ReceiptServerInit, ReceiptsRequest } from './receipts.ts'
export { Validator, cryptoRandom } from './validator.ts'
export type { CheckResult, ValidatorInit } from './validator.ts'
export { WorkLedger } from './work-ledger.ts'
export type { CheckOutcome, CheckSource, LedgerStatus, PeerLedger, WorkCount, WorkLedgerOptions } from './work-ledger.ts'
