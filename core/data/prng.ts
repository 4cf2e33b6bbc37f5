// Small, well-known hashes and a PRNG, chosen so any implementation (another node, a validator
// in another language) can reproduce them exactly:
//   - FNV-1a 64 over UTF-8 bytes (BigInt), to turn a batch key into a seed;
//   - splitmix64 (Steele, Lea, Flood 2014; the seeder of xoshiro), to draw from that seed;
//   - cyrb53 (bryc, public domain) over UTF-16 code units, a fast 53-bit hash for the held-out split.
const MASK64 = (1n << 64n) - 1n
const FNV64_OFFSET = 0xcbf29ce484222325n
const FNV64_PRIME = 0x100000001b3n

/** FNV-1a 64-bit hash of bytes. */
export function fnv1a64 (bytes: Uint8Array): bigint {
  let h = FNV64_OFFSET
  for (const b of bytes) h = ((h ^ BigInt(b)) * FNV64_PRIME) & MASK64
  return h
}

/** splitmix64 generator: each call returns the next 64-bit output as a bigint in [0, 2^64). */
export function splitmix64 (seed: bigint): () => bigint {
  let state = seed & MASK64
  return () => {
    state = (state + 0x9e3779b97f4a7c15n) & MASK64
    let z = state
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64
    return z ^ (z >> 31n)
  }
}

/** An integer in [0, n) from a 64-bit draw by multiply-shift ((x * n) >> 64; bias below n / 2^64). */
export function below (draw: bigint, n: number): number {
  return Number((draw * BigInt(n)) >> 64n)
}

/** cyrb53: 53-bit hash of a string's UTF-16 code units, as a number in [0, 2^53). */
export function cyrb53 (str: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed
  let h2 = 0x41c6ce57 ^ seed
  for (let i = 0; i < str.length; i++) {
    const ch = str.charCodeAt(i)
    h1 = Math.imul(h1 ^ ch, 2654435761)
    h2 = Math.imul(h2 ^ ch, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507)
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507)
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return 4294967296 * (2097151 & h2) + (h1 >>> 0)
}
