// Small non-cryptographic hashes shared by core and plugins (one copy each): 32-bit FNV-1a of a
// string (seeds from names), the same with murmur3's finalizer (FNV alone mixes its low bits poorly:
// used where the hash is reduced modulo a small number, e.g. Moshpit grid cells and tie-breaks), and
// FNV-1a over the bits of a float32 vector (equality digests of parameters). Integer-only arithmetic
// (Math.imul), so every platform computes the same values. Not for anything an adversary chooses.

/** 32-bit FNV-1a of a string's UTF-16 code units. */
export function fnv1a32 (s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** fnv1a32 followed by murmur3's 32-bit finalizer: well mixed in every bit. */
export function hash32 (s: string): number {
  let h = fnv1a32(s)
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** FNV-1a over the 32-bit words of a float32 vector's bits, as 8 hex chars: equal exactly when the bits are (up to collisions). */
export function fnv1aBits (v: Float32Array): string {
  const w = new Uint32Array(v.buffer, v.byteOffset, v.length)
  let h = 0x811c9dc5
  for (let i = 0; i < w.length; i++) {
    h ^= w[i]
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0).toString(16).padStart(8, '0')
}
