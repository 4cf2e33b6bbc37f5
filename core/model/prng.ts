// Seeded pseudo-random numbers for parameter init and sampling: xoshiro128** seeded through
// splitmix32 from a string/number key. Integer-only arithmetic (Math.imul), so every platform
// produces the same stream; float64 normals from Box-Muller.
import { fnv1a32 } from '../hash.ts'

/** 32-bit FNV-1a hash of a string: turns names like `h.3.attn.c_attn.weight` into seeds. */
export { fnv1a32 as hashString } from '../hash.ts'

export class Prng {
  private s0: number
  private s1: number
  private s2: number
  private s3: number
  private spare: number | null = null

  /** `seed` is any integer (taken mod 2^32) or a string (hashed). */
  constructor (seed: number | string) {
    let x = (typeof seed === 'string' ? fnv1a32(seed) : Math.trunc(seed)) >>> 0
    const next = (): number => {
      // splitmix32: spreads one 32-bit seed over the four state words
      x = (x + 0x9e3779b9) >>> 0
      let z = x
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.s0 = next(); this.s1 = next(); this.s2 = next(); this.s3 = next()
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1
  }

  /** Uniform integer in [0, 2^32). */
  nextU32 (): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0
    const t = this.s1 << 9
    this.s2 ^= this.s0
    this.s3 ^= this.s1
    this.s1 ^= this.s2
    this.s0 ^= this.s3
    this.s2 ^= t
    this.s3 = rotl(this.s3, 11)
    return result
  }

  /** Uniform float64 in [0, 1) with 53 random bits. */
  nextFloat (): number {
    const hi = this.nextU32() >>> 5 // 27 bits
    const lo = this.nextU32() >>> 6 // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992
  }

  /** Standard normal (Box-Muller; the second value of each pair is kept for the next call). */
  normal (): number {
    if (this.spare !== null) {
      const s = this.spare
      this.spare = null
      return s
    }
    let u = 0
    while (u === 0) u = this.nextFloat()
    const v = this.nextFloat()
    const r = Math.sqrt(-2 * Math.log(u))
    this.spare = r * Math.sin(2 * Math.PI * v)
    return r * Math.cos(2 * Math.PI * v)
  }
}

/**
 * mulberry32: a tiny seeded generator of uniform floats in [0, 1), for tests, fuzz inputs and
 * simulations that need a reproducible stream, not Prng's quality.
 */
export function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function rotl (x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}
