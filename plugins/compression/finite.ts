// Finite-input scans shared by the encoders. Every built-in codec rejects NaN/Inf on encode
// (docs/compression.md, "NaN/Inf policy"): a non-finite activation or gradient is a bug at the
// sender, and failing there names the cause instead of poisoning the next stage's weights.
import { NonFiniteError } from '../../core/errors.ts'

/** max |x| over [from, to), throwing NonFiniteError on NaN or +-Inf. One compare per element in the common case. */
export function absMaxFinite (x: Float32Array, from: number, to: number, codec: string): number {
  let m = 0
  for (let i = from; i < to; i++) {
    const v = x[i]
    const a = v < 0 ? -v : v
    if (!(a <= m)) { // NaN, or a new maximum
      if (a !== a) throw nonFinite(codec, v, i, x.length)
      m = a
    }
  }
  if (m === Infinity) {
    for (let i = from; i < to; i++) if (x[i] === Infinity || x[i] === -Infinity) throw nonFinite(codec, x[i], i, x.length)
  }
  return m
}

export function nonFinite (codec: string, v: number, i: number, n: number): NonFiniteError {
  return new NonFiniteError(`${codec}: input has a non-finite value (${v}) at element ${i} of ${n}`)
}
