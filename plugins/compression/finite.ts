// Finite-input scans shared by the encoders. Every built-in codec rejects NaN/Inf on encode
// (docs/compression.md, "NaN/Inf policy"): a non-finite activation or gradient is a bug at the
// sender, and failing there names the cause instead of poisoning the next stage's weights.
//
// The scans work on the f32 bit patterns: |x| ordered as floats is ordered as (bits & 0x7fffffff)
// as integers, and NaN/Inf are exactly the patterns >= 0x7f800000. An integer max is one compare per
// element and measured ~30% faster than the float version in V8.
import { NonFiniteError } from '../../core/contracts/index.ts'

const f1 = new Float32Array(1)
const u1 = new Uint32Array(f1.buffer)

/** Uint32 view of a Float32Array's bits (same memory). */
export function bitsOf (x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length)
}

/** max |x| over [from, to) as an f32 value, throwing NonFiniteError on NaN or +-Inf. */
export function absMaxFinite (x: Float32Array, bits: Uint32Array, from: number, to: number, codec: string): number {
  let m = 0
  for (let i = from; i < to; i++) {
    const a = bits[i] & 0x7fffffff
    if (a > m) m = a
  }
  if (m >= 0x7f800000) throw firstNonFinite(x, bits, from, to, codec)
  u1[0] = m
  return f1[0]
}

function firstNonFinite (x: Float32Array, bits: Uint32Array, from: number, to: number, codec: string): NonFiniteError {
  let i = from
  while (i < to && (bits[i] & 0x7fffffff) < 0x7f800000) i++
  return nonFinite(codec, x[i], i, x.length)
}

export function nonFinite (codec: string, v: number, i: number, n: number): NonFiniteError {
  return new NonFiniteError(`${codec}: input has a non-finite value (${v}) at element ${i} of ${n}`)
}

/** Index of the first non-finite value of a decoded tensor, or -1. */
export function findNonFinite (x: Float32Array): number {
  const bits = bitsOf(x)
  let m = 0
  for (let i = 0; i < bits.length; i++) {
    const a = bits[i] & 0x7fffffff
    if (a > m) m = a
  }
  if (m < 0x7f800000) return -1
  let i = 0
  while ((bits[i] & 0x7fffffff) < 0x7f800000) i++
  return i
}
