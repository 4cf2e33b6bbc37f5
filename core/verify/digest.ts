// The one hash of verification, and the exact bytes it is fed. Commitments, parameter digests and
// evidence all hash with SHA-256 from @noble/hashes: a well-kept pure-JS package (no Node-only
// module, so a browser node computes the same digests) whose output any other SHA-256 (Node's
// crypto, WebCrypto, Python's hashlib) reproduces, so a checker may swap in a native one for speed.
//
// Measured on this project's machine (x86-64, Node 20, 1 MiB Float32Array, mean of 20):
//   @noble/hashes sha256  6.3 ms  (158 MiB/s)   <- chosen
//   @noble/hashes blake3 18.3 ms   (55 MiB/s)   pure-JS BLAKE3 loses here: no SIMD, 32-bit words
//   node:crypto sha256    0.6 ms (1.6 GiB/s)    native (SHA-NI); WebCrypto digest 0.9 ms, async
// A tiny-model stage is ~1 MiB of parameters and a hop's activations ~256 KiB (f32): ~8 ms a step
// with noble, against a stage's forward + backward of tens of ms: on the hot path (every hop, every
// step's digest) use the async forms, which hand the bytes to WebCrypto where the platform has it
// (Node, browsers; same digest, ~7x faster) and fall back to noble elsewhere.
//
// Tensors are hashed as their little-endian element bytes (the wire's byte order); on a big-endian
// host a byte-swapped copy is hashed instead, so every platform agrees.
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, isLE } from '@noble/hashes/utils.js'

/** Bytes of every digest (SHA-256). */
export const DIGEST_BYTES = 32

export type Hasher = ReturnType<typeof sha256.create>

/** An incremental SHA-256 (update with bytes, digest once). */
export function createHasher (): Hasher {
  return sha256.create()
}

/** SHA-256 of bytes. */
export function hashBytes (bytes: Uint8Array): Uint8Array {
  return sha256(bytes)
}

/** SHA-256 of bytes as 64 lowercase hex characters (the form commitments carry). */
export function hashHex (bytes: Uint8Array): string {
  return bytesToHex(sha256(bytes))
}

/** SHA-256 of the concatenated chunks (noble, incremental: no copy). */
export function sha256Chunks (chunks: readonly Uint8Array[]): Uint8Array {
  const h = sha256.create()
  for (const c of chunks) h.update(c)
  return h.digest()
}

/** SHA-256 of the concatenated chunks, through WebCrypto where present (one copy, native speed), else noble. */
export async function hashChunksAsync (chunks: readonly Uint8Array[]): Promise<Uint8Array> {
  const subtle = globalThis.crypto?.subtle
  if (subtle == null) return sha256Chunks(chunks)
  const one = chunks.length === 1 ? chunks[0] : concat(chunks)
  return new Uint8Array(await subtle.digest('SHA-256', one as Uint8Array<ArrayBuffer>))
}

/** hashHex through hashChunksAsync: the same 64 hex characters, faster on large payloads. */
export async function hashHexAsync (bytes: Uint8Array): Promise<string> {
  return bytesToHex(await hashChunksAsync([bytes]))
}

function concat (chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0))
  let o = 0
  for (const c of chunks) { out.set(c, o); o += c.length }
  return out
}

/** Little-endian element bytes of a typed array: a view on little-endian hosts, a swapped copy elsewhere. */
export function leBytes (v: Float32Array | Int32Array | Uint32Array | Uint8Array): Uint8Array {
  const view = new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
  if (isLE || v.BYTES_PER_ELEMENT === 1) return view
  const out = new Uint8Array(view.length)
  const w = v.BYTES_PER_ELEMENT
  for (let i = 0; i < view.length; i += w) {
    for (let b = 0; b < w; b++) out[i + b] = view[i + w - 1 - b]
  }
  return out
}

/** A u32 in little-endian order (lengths and dims fed to a hash). */
export function u32le (n: number): Uint8Array {
  const b = new Uint8Array(4)
  new DataView(b.buffer).setUint32(0, n, true)
  return b
}
