// What nodes keep of the hops so that work can be checked later, and the one rule for what a hop
// commitment's inputHash covers. The pipeline fills these stores (producer side: the hops it sent;
// receiver side: the signed commitments it received); the reveal and receipts protocols and the
// checker read them.
//
// A hop's inputs, in order (each the exact payload bytes as they crossed the wire, or for token ids
// and targets their int32 little-endian bytes):
//   forward, stage 0        [tokens]
//   forward, stage s >= 1   [activation received]
//   backward, stage < S-1   [activation received, gradient received from stage s+1]
//   backward, last stage    [activation received, targets]
// inputHash = SHA-256 of the single input, or SHA-256 of the concatenated SHA-256s of the inputs;
// outputHash = SHA-256 of the payload bytes sent (encoded with the commitment's codecId).
import { hashBytes, hashChunksAsync, hashHex, hashHexAsync } from './digest.ts'
import { bytesToHex } from '@noble/hashes/utils.js'
import type { HopKind } from './commitment.ts'

/**
 * How long producers keep what they committed to (ms); checks and withhold accusations stay inside
 * it. A window of seconds, not minutes: a producer holds a weights snapshot per optimizer step of it.
 */
export const DEFAULT_RETENTION_MS = 30_000

/** One input or output tensor of a hop, as it crossed the wire. */
export interface HopTensor {
  readonly bytes: Uint8Array
  /** Wire codec id (0: raw little-endian elements). */
  readonly codecId: number
  readonly dtype: 'f32' | 'i32'
  readonly shape: readonly number[]
}

/** What a producer keeps of a hop it sent, while retained: enough for anyone to recompute it. */
export interface HopRecord {
  /** The signed commitment (commitment.ts signCommitment's bytes). */
  readonly commitment: Uint8Array
  readonly kind: HopKind
  readonly microbatchId: bigint
  readonly stage: number
  readonly inputs: readonly HopTensor[]
  readonly output: HopTensor
  /** params-digest.ts digest of the weights used (as in the commitment). */
  readonly paramsDigest: string
}

/** The producer side: the hops this node sent and the weights they used, for reveal. */
export interface HopRecordSource {
  /**
   * The record of a hop this node produced, while retained: the computation whose commitment has
   * `which`'s step and outputHash (a retried microbatch may have been computed more than once), or
   * without `which` the newest.
   */
  record(microbatchId: bigint, kind: HopKind, which?: { step: number, outputHash: string }): HopRecord | undefined
  /** The stage parameters with this digest, while retained. */
  params(digest: string): ReadonlyMap<string, Float32Array> | undefined
}

/** The receiver side: signed commitments this node received, by producer (what a validator samples from). */
export interface ReceiptSource {
  /** Up to `max` most recent signed commitments received from `producer` of `kind`, newest first. */
  recent(producer: string, kind: HopKind, max: number): Uint8Array[]
}

/** inputHash of a hop from its inputs' payload bytes (the rule above), 64 hex. */
export function hopInputHash (inputs: readonly Uint8Array[]): string {
  if (inputs.length === 1) return hashHex(inputs[0])
  const cat = new Uint8Array(32 * inputs.length)
  inputs.forEach((b, i) => { cat.set(hashBytes(b), 32 * i) })
  return hashHex(cat)
}

/** hopInputHash through WebCrypto where present (digest.ts): the same 64 hex, for the producer's hot path. */
export async function hopInputHashAsync (inputs: readonly Uint8Array[]): Promise<string> {
  if (inputs.length === 1) return await hashHexAsync(inputs[0])
  const cat = new Uint8Array(32 * inputs.length)
  for (let i = 0; i < inputs.length; i++) cat.set(await hashChunksAsync([inputs[i]]), 32 * i)
  return bytesToHex(await hashChunksAsync([cat]))
}

/** outputHash of a hop, 64 hex. */
export function hopOutputHash (output: Uint8Array): string {
  return hashHex(output)
}

/** A record key: microbatch id and kind. */
export function hopKey (microbatchId: bigint, kind: HopKind): string {
  return `${kind}:${microbatchId.toString()}`
}
