// Hop commitments: what a node signs for every forward or backward output it sends, so that the
// output is bound to the input it was computed from and to the exact weights used, and anyone can
// later check the claim from the producer's peer id alone (Ed25519 and secp256k1 peer ids embed
// their public key). The receiver keeps the signed bytes; a checker that recomputes the hop and
// gets something else holds evidence the producer cannot deny.
//
// What the hashes cover (the pipeline's wiring must keep to this): inputHash is SHA-256 of the exact
// payload bytes the producer received (encoded, as they crossed the wire; stage 0: the token ids'
// little-endian bytes), outputHash of the exact payload bytes it sent, encoded with `codecId`; so
// a hop's inputHash is the previous hop's outputHash (a hash chain the receiver checks on arrival).
// paramsDigest is params-digest.ts's digest of the weights used.
//
// Canonical bytes (version 1): fixed order, fixed widths, integers little-endian, 148 + n bytes:
//   0   4  magic "LSHC"              44  8  time (ms since the epoch, u64, <= 2^53-1)
//   4   1  version (1)               52 32  inputHash
//   5   1  kind (1 forward, 2 backward)  84 32  outputHash
//   6   2  stage (u16)               116 32  paramsDigest
//   8   2  codecId (u16)             148 n  producer: the peer id's multihash bytes
//   10  1  n (1..64)
//   11  1  reserved (0)
//   12 16  runId (the manifest hash)
//   28  8  microbatchId (u64)
//   36  8  step (u64, <= 2^53-1)
// Signed form: body | u8 m | m signature bytes (m <= 128), at most MAX_SIGNED_COMMITMENT_BYTES.
// The signature covers "layerswarm/hop-commitment/v1" 0x00 | body, so these bytes can never pass
// for another message signed with the same key (libp2p records, gossip, noise handshakes).
// Decoding re-encodes nothing: every field is checked (range, reserved byte, canonical peer id,
// no trailing bytes), so one commitment has exactly one byte form.
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { peerIdFromMultihash, peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js'
import * as Digest from 'multiformats/hashes/digest'
import { DIGEST_BYTES } from './digest.ts'
import { CommitmentSignatureError, CommitmentSignerError, CommitmentTooLargeError, MalformedCommitmentError } from './errors.ts'

export type HopKind = 'forward' | 'backward'

export interface HopCommitment {
  /** The run id: 32 lowercase hex characters (16 bytes of the manifest hash). */
  readonly runId: string
  readonly stage: number
  readonly microbatchId: bigint
  readonly kind: HopKind
  /** The producer's optimizer step when it computed the hop (which weights: see paramsDigest). */
  readonly step: number
  /** SHA-256 (64 hex) of the payload bytes received. */
  readonly inputHash: string
  /** SHA-256 (64 hex) of the payload bytes sent. */
  readonly outputHash: string
  /** params-digest.ts digest (64 hex) of the weights used. */
  readonly paramsDigest: string
  /** Wire id of the codec the output was encoded with (0: raw f32). */
  readonly codecId: number
  /** The producer's peer id (string form); must embed its public key. */
  readonly producer: string
  /** When the producer made it, ms since the epoch (its own clock: informative, never trusted for order). */
  readonly time: number
}

/** A commitment whose signature checked out, with the bytes that prove it. */
export interface VerifiedCommitment {
  readonly commitment: HopCommitment
  /** The canonical body bytes the signature covers (without the domain prefix). */
  readonly body: Uint8Array
  readonly signature: Uint8Array
}

export const COMMITMENT_VERSION = 1
const MAGIC = utf8ToBytes('LSHC')
const DOMAIN = utf8ToBytes('layerswarm/hop-commitment/v1\0')
const FIXED_BYTES = 148
const RUN_ID_BYTES = 16
/** Longest producer multihash: Ed25519 ids take 38 bytes, secp256k1 ids 39. */
export const MAX_PRODUCER_BYTES = 64
/** Longest signature: Ed25519 64 bytes, secp256k1 (DER) at most 72. */
export const MAX_SIGNATURE_BYTES = 128
export const MAX_SIGNED_COMMITMENT_BYTES = FIXED_BYTES + MAX_PRODUCER_BYTES + 1 + MAX_SIGNATURE_BYTES
const KIND_CODES: Readonly<Record<HopKind, number>> = { forward: 1, backward: 2 }
const HEX64 = /^[0-9a-f]{64}$/
const HEX32 = /^[0-9a-f]{32}$/

/** The canonical body bytes of a commitment (what is signed, minus the domain prefix). */
export function encodeCommitment (c: HopCommitment): Uint8Array {
  const bad = (m: string): never => { throw new MalformedCommitmentError(m) }
  if (typeof c.runId !== 'string' || !HEX32.test(c.runId)) bad('runId must be 32 lowercase hex characters')
  if (!isU(c.stage, 0xffff)) bad(`stage ${c.stage} is not a u16`)
  if (!isU(c.codecId, 0xffff)) bad(`codecId ${c.codecId} is not a u16`)
  if (typeof c.microbatchId !== 'bigint' || c.microbatchId < 0n || c.microbatchId > 0xffffffffffffffffn) bad('microbatchId must be a u64 bigint')
  if (!Object.hasOwn(KIND_CODES, c.kind)) bad(`kind must be forward or backward, got ${String(c.kind)}`)
  if (!isU(c.step, Number.MAX_SAFE_INTEGER)) bad(`step ${c.step} is not a non-negative safe integer`)
  if (!isU(c.time, Number.MAX_SAFE_INTEGER)) bad(`time ${c.time} is not a non-negative safe integer`)
  for (const f of ['inputHash', 'outputHash', 'paramsDigest'] as const) {
    if (typeof c[f] !== 'string' || !HEX64.test(c[f])) bad(`${f} must be 64 lowercase hex characters`)
  }
  const producer = producerBytes(c.producer)
  const out = new Uint8Array(FIXED_BYTES + producer.length)
  const dv = new DataView(out.buffer)
  out.set(MAGIC, 0)
  out[4] = COMMITMENT_VERSION
  out[5] = KIND_CODES[c.kind]
  dv.setUint16(6, c.stage, true)
  dv.setUint16(8, c.codecId, true)
  out[10] = producer.length
  out.set(hexToBytes(c.runId), 12)
  dv.setBigUint64(28, c.microbatchId, true)
  dv.setBigUint64(36, BigInt(c.step), true)
  dv.setBigUint64(44, BigInt(c.time), true)
  out.set(hexToBytes(c.inputHash), 52)
  out.set(hexToBytes(c.outputHash), 52 + DIGEST_BYTES)
  out.set(hexToBytes(c.paramsDigest), 52 + 2 * DIGEST_BYTES)
  out.set(producer, FIXED_BYTES)
  return out
}

/** Parses canonical body bytes (no signature); throws MalformedCommitmentError / CommitmentTooLargeError. */
export function decodeCommitment (body: Uint8Array): HopCommitment {
  const bad = (m: string): never => { throw new MalformedCommitmentError(m) }
  if (body.length > FIXED_BYTES + MAX_PRODUCER_BYTES) throw new CommitmentTooLargeError(body.length, FIXED_BYTES + MAX_PRODUCER_BYTES)
  if (body.length < FIXED_BYTES) bad(`${body.length} bytes, shorter than the ${FIXED_BYTES}-byte fixed part`)
  for (let i = 0; i < MAGIC.length; i++) if (body[i] !== MAGIC[i]) bad('bad magic')
  if (body[4] !== COMMITMENT_VERSION) bad(`unsupported version ${body[4]}`)
  const kind = body[5] === 1 ? 'forward' : body[5] === 2 ? 'backward' : bad(`unknown kind code ${body[5]}`)
  const n = body[10]
  if (body[11] !== 0) bad('reserved byte is not zero')
  if (n < 1 || n > MAX_PRODUCER_BYTES) bad(`producer length ${n} outside [1, ${MAX_PRODUCER_BYTES}]`)
  if (body.length !== FIXED_BYTES + n) bad(`${body.length} bytes, expected ${FIXED_BYTES + n}`)
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength)
  const safe = (off: number, what: string): number => {
    const v = dv.getBigUint64(off, true)
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : bad(`${what} exceeds 2^53-1`)
  }
  const hex = (off: number, len: number): string => bytesToHex(body.subarray(off, off + len))
  return {
    runId: hex(12, RUN_ID_BYTES),
    stage: dv.getUint16(6, true),
    microbatchId: dv.getBigUint64(28, true),
    kind,
    step: safe(36, 'step'),
    inputHash: hex(52, DIGEST_BYTES),
    outputHash: hex(52 + DIGEST_BYTES, DIGEST_BYTES),
    paramsDigest: hex(52 + 2 * DIGEST_BYTES, DIGEST_BYTES),
    codecId: dv.getUint16(8, true),
    producer: producerString(body.subarray(FIXED_BYTES)),
    time: safe(44, 'time')
  }
}

/** Signs a commitment with the producer's libp2p key; returns the signed bytes (body | m | signature). */
export async function signCommitment (c: HopCommitment, key: PrivateKey): Promise<Uint8Array> {
  const signer = peerIdFromPrivateKey(key).toString()
  if (signer !== c.producer) throw new CommitmentSignerError(c.producer, signer)
  const body = encodeCommitment(c)
  const sig = await key.sign(signed(body))
  if (sig.length < 1 || sig.length > MAX_SIGNATURE_BYTES) throw new MalformedCommitmentError(`a ${key.type} signature of ${sig.length} bytes does not fit the format`)
  const out = new Uint8Array(body.length + 1 + sig.length)
  out.set(body, 0)
  out[body.length] = sig.length
  out.set(sig, body.length + 1)
  return out
}

/**
 * Checks signed commitment bytes: size, format, the expected producer (when given), and the
 * signature under the public key embedded in the producer's peer id. Returns the commitment and its
 * proof; throws CommitmentTooLargeError, MalformedCommitmentError, CommitmentSignerError or
 * CommitmentSignatureError.
 */
export async function verifyCommitment (bytes: Uint8Array, opts: { readonly producer?: string } = {}): Promise<VerifiedCommitment> {
  if (!(bytes instanceof Uint8Array)) throw new MalformedCommitmentError('signed commitment must be bytes')
  if (bytes.length > MAX_SIGNED_COMMITMENT_BYTES) throw new CommitmentTooLargeError(bytes.length, MAX_SIGNED_COMMITMENT_BYTES)
  if (bytes.length < FIXED_BYTES + 2) throw new MalformedCommitmentError(`${bytes.length} bytes is too short for a signed commitment`)
  const bodyLength = FIXED_BYTES + bytes[10]
  if (bytes.length < bodyLength + 1) throw new MalformedCommitmentError('truncated before the signature')
  const body = bytes.slice(0, bodyLength)
  const m = bytes[bodyLength]
  if (m < 1 || bytes.length !== bodyLength + 1 + m) throw new MalformedCommitmentError(`signature length ${m} does not match the ${bytes.length - bodyLength - 1} bytes that follow`)
  const signature = bytes.slice(bodyLength + 1)
  const commitment = decodeCommitment(body)
  if (opts.producer != null && opts.producer !== commitment.producer) throw new CommitmentSignerError(opts.producer, commitment.producer)
  const publicKey = publicKeyOf(commitment.producer)
  if (publicKey == null) throw new MalformedCommitmentError(`producer ${commitment.producer} does not embed its public key`)
  let ok = false
  try {
    ok = await publicKey.verify(signed(body), signature)
  } catch {
    ok = false // a signature the key type cannot even parse is as bad as a wrong one
  }
  if (!ok) throw new CommitmentSignatureError(commitment.producer)
  return { commitment, body, signature }
}

/** The canonical body of signed commitment bytes (unchecked: what a commitment's id hashes; verifyCommitment checks it). */
export function signedBody (bytes: Uint8Array): Uint8Array {
  return bytes.length > 10 ? bytes.subarray(0, Math.min(bytes.length, FIXED_BYTES + bytes[10])) : bytes
}

// A receiver verifies every hop of the same few producers: their key objects are kept (a fresh one per
// verification re-imported the key each time, about a third of a verification's cost)
const KEYS_KEPT = 1024
const keys = new Map<string, PublicKey | undefined>()

function publicKeyOf (producer: string): PublicKey | undefined {
  if (keys.has(producer)) return keys.get(producer)
  const key = peerIdFromString(producer).publicKey
  if (keys.size >= KEYS_KEPT) keys.delete(keys.keys().next().value as string)
  keys.set(producer, key)
  return key
}

function signed (body: Uint8Array): Uint8Array {
  const out = new Uint8Array(DOMAIN.length + body.length)
  out.set(DOMAIN, 0)
  out.set(body, DOMAIN.length)
  return out
}

function producerBytes (producer: string): Uint8Array {
  let id
  try {
    id = peerIdFromString(producer)
  } catch (err) {
    throw new MalformedCommitmentError(`producer ${producer} is not a peer id (${(err as Error).message})`)
  }
  if (id.publicKey == null) throw new MalformedCommitmentError(`producer ${producer} does not embed its public key (Ed25519 or secp256k1 ids do)`)
  if (id.toString() !== producer) throw new MalformedCommitmentError(`producer ${producer} is not in canonical form (${id.toString()})`)
  const bytes = id.toMultihash().bytes
  if (bytes.length > MAX_PRODUCER_BYTES) throw new MalformedCommitmentError(`producer id of ${bytes.length} bytes exceeds ${MAX_PRODUCER_BYTES}`)
  return bytes
}

function producerString (bytes: Uint8Array): string {
  let s: string
  try {
    const id = peerIdFromMultihash(Digest.decode(bytes))
    if (id.publicKey == null) throw new Error('no embedded public key')
    // non-minimal varints decode too: only the one canonical byte form is accepted
    const canonical = id.toMultihash().bytes
    if (canonical.length !== bytes.length || canonical.some((b, i) => b !== bytes[i])) throw new Error('not in canonical form')
    s = id.toString()
  } catch (err) {
    throw new MalformedCommitmentError(`producer bytes are not a peer id with an embedded key (${(err as Error).message})`)
  }
  return s
}

function isU (v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max
}
