// Hop commitments (core/verify/commitment.ts): canonical bytes round-trip, a signed commitment
// verifies from the producer's peer id alone (Ed25519 and secp256k1), and every kind of tampering,
// forgery or malformed input gives its typed error: bad signature, wrong signer, malformed,
// oversized. Also the hash choice (SHA-256 of the exact bytes).
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createHash } from 'node:crypto'
import {
  CommitmentSignatureError, CommitmentSignerError, CommitmentTooLargeError, MalformedCommitmentError,
  MAX_SIGNED_COMMITMENT_BYTES, decodeCommitment, encodeCommitment, hashChunksAsync, hashHex, hashHexAsync, leBytes, sha256Chunks, signCommitment, verifyCommitment,
  type HopCommitment
} from '../core/verify/index.ts'

const RUN = '0123456789abcdef0123456789abcdef'
const FIXED = 148

function commitmentBy (producer: string, over: Partial<HopCommitment> = {}): HopCommitment {
  return {
    runId: RUN,
    stage: 2,
    microbatchId: 0xfedcba9876543210n,
    kind: 'forward',
    step: 1234,
    inputHash: hashHex(Uint8Array.of(1, 2, 3)),
    outputHash: hashHex(Uint8Array.of(4, 5, 6)),
    paramsDigest: hashHex(Uint8Array.of(7)),
    codecId: 4,
    producer,
    time: 1_760_000_000_000,
    ...over
  }
}

describe('verify: hop commitments', () => {
  let key: PrivateKey
  let me: string
  let other: PrivateKey

  before(async () => {
    key = await generateKeyPair('Ed25519')
    me = peerIdFromPrivateKey(key).toString()
    other = await generateKeyPair('Ed25519')
  })

  it('hashes are SHA-256 of the exact bytes (any SHA-256 reproduces them), tensors as little-endian bytes', () => {
    const x = Float32Array.of(1.5, -2, 0, 3e-8)
    assert.equal(hashHex(leBytes(x)), createHash('sha256').update(Buffer.from(x.buffer)).digest('hex'))
    assert.equal(hashHex(new Uint8Array(0)), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  })

  it('the async (WebCrypto) and chunked forms give the same digests as the sync one', async () => {
    const big = new Uint8Array(1 << 20).map((_, i) => (i * 2654435761) >>> 24)
    assert.equal(await hashHexAsync(big), hashHex(big))
    const parts = [big.subarray(0, 3), big.subarray(3, 70000), big.subarray(70000)]
    assert.deepEqual(await hashChunksAsync(parts), sha256Chunks(parts))
    assert.deepEqual(sha256Chunks(parts), sha256Chunks([big]))
  })

  it('round-trips through the canonical bytes, every field kept, fixed size 148 + id', () => {
    for (const over of [{}, { kind: 'backward' as const, microbatchId: 0n, step: 0, time: 0, stage: 0, codecId: 0 },
      { stage: 65535, codecId: 65535, microbatchId: 2n ** 64n - 1n, step: Number.MAX_SAFE_INTEGER }]) {
      const c = commitmentBy(me, over)
      const body = encodeCommitment(c)
      assert.equal(body.length, FIXED + peerIdFromPrivateKey(key).toMultihash().bytes.length)
      assert.deepEqual(decodeCommitment(body), c)
      assert.deepEqual(encodeCommitment(decodeCommitment(body)), body, 'one commitment, one byte form')
    }
  })

  it('a signed commitment verifies from the producer id alone, Ed25519 and secp256k1', async () => {
    for (const type of ['Ed25519', 'secp256k1'] as const) {
      const k = type === 'Ed25519' ? key : await generateKeyPair('secp256k1')
      const producer = peerIdFromPrivateKey(k).toString()
      const c = commitmentBy(producer)
      const signed = await signCommitment(c, k)
      assert.ok(signed.length <= MAX_SIGNED_COMMITMENT_BYTES)
      const v = await verifyCommitment(signed)
      assert.deepEqual(v.commitment, c)
      assert.deepEqual(v.body, encodeCommitment(c))
      await verifyCommitment(signed, { producer })
    }
  })

  it('any flipped bit of the body or the signature fails (bad signature or malformed, never accepted)', async () => {
    const signed = await signCommitment(commitmentBy(me), key)
    for (let bit = 0; bit < signed.length * 8; bit += 3) {
      const t = signed.slice()
      t[bit >> 3] ^= 1 << (bit & 7)
      await assert.rejects(verifyCommitment(t), (err: Error) => err instanceof CommitmentSignatureError || err instanceof MalformedCommitmentError,
        `bit ${bit} flipped was accepted`)
    }
  })

  it('a field changed and re-encoded under the same signature is a bad signature', async () => {
    const signed = await signCommitment(commitmentBy(me), key)
    const body = encodeCommitment(commitmentBy(me, { outputHash: hashHex(Uint8Array.of(9)) }))
    const forged = new Uint8Array(signed.length)
    forged.set(body)
    forged.set(signed.subarray(body.length), body.length)
    await assert.rejects(verifyCommitment(forged), CommitmentSignatureError)
  })

  it('a commitment naming one peer but signed by another is a bad signature; expecting another producer is a wrong signer', async () => {
    // a forger puts the victim's id in the body and signs with its own key
    const victim = peerIdFromPrivateKey(other).toString()
    const signed = await signCommitment(commitmentBy(me), key)
    const body = encodeCommitment(commitmentBy(victim))
    const forged = new Uint8Array(body.length + signed.length - encodeCommitment(commitmentBy(me)).length)
    forged.set(body)
    forged.set(signed.subarray(encodeCommitment(commitmentBy(me)).length), body.length)
    await assert.rejects(verifyCommitment(forged), CommitmentSignatureError)
    // a genuine commitment replayed as if it came from someone else
    await assert.rejects(verifyCommitment(signed, { producer: victim }), (err: Error) =>
      err instanceof CommitmentSignerError && err.code === 'ERR_VERIFY_WRONG_SIGNER')
    // signing a commitment that names another producer is refused
    await assert.rejects(signCommitment(commitmentBy(victim), key), CommitmentSignerError)
  })

  it('malformed and oversized inputs give their typed errors', async () => {
    const signed = await signCommitment(commitmentBy(me), key)
    const n = signed[10]
    const cases: Array<[string, Uint8Array]> = [
      ['empty', new Uint8Array(0)],
      ['truncated body', signed.subarray(0, 100)],
      ['no signature', signed.subarray(0, FIXED + n)],
      ['truncated signature', signed.subarray(0, signed.length - 1)],
      ['trailing byte', Uint8Array.of(...signed, 0)],
      ['bad magic', Uint8Array.of(0x58, ...signed.subarray(1))],
      ['version 2', (() => { const t = signed.slice(); t[4] = 2; return t })()],
      ['kind 3', (() => { const t = signed.slice(); t[5] = 3; return t })()],
      ['reserved byte set', (() => { const t = signed.slice(); t[11] = 1; return t })()],
      ['producer length 0', (() => { const t = signed.slice(); t[10] = 0; return t })()]
    ]
    for (const [what, bytes] of cases) {
      await assert.rejects(verifyCommitment(bytes), MalformedCommitmentError, what)
    }
    await assert.rejects(verifyCommitment(new Uint8Array(MAX_SIGNED_COMMITMENT_BYTES + 1)), CommitmentTooLargeError)
    assert.throws(() => decodeCommitment(new Uint8Array(FIXED + 65)), CommitmentTooLargeError)
    assert.throws(() => decodeCommitment(signed.subarray(0, FIXED + n - 1)), MalformedCommitmentError)
  })

  it('refuses to encode out-of-range or non-canonical fields', () => {
    const bad: Array<Partial<HopCommitment>> = [
      { runId: 'XYZ' }, { runId: RUN.toUpperCase() }, { stage: 65536 }, { stage: -1 }, { stage: 1.5 }, { codecId: 70000 },
      { microbatchId: -1n }, { microbatchId: 2n ** 64n }, { kind: 'sideways' as 'forward' }, { step: 2 ** 53 }, { time: -5 },
      { inputHash: 'ab' }, { outputHash: hashHex(Uint8Array.of(1)).toUpperCase() }, { paramsDigest: '' },
      { producer: 'not-a-peer-id' },
      // an RSA-style id (sha256 multihash) does not embed its key: nobody could verify it
      { producer: 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N' }
    ]
    for (const over of bad) assert.throws(() => encodeCommitment(commitmentBy(me, over)), MalformedCommitmentError, JSON.stringify(over, (_, v) => typeof v === 'bigint' ? String(v) : v))
  })

  it('a producer id in the body that is not a peer id with a key is malformed', async () => {
    const signed = await signCommitment(commitmentBy(me), key)
    const t = signed.slice()
    t[FIXED] = 0x12 // sha2-256 multihash code in place of identity: no embedded key
    await assert.rejects(verifyCommitment(t), MalformedCommitmentError)
  })
})
