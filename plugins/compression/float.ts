// Float formats: fp32 (raw, lossless), fp16 and bf16 (round-to-nearest-even), each with a
// power-of-two tensor scale.
//
// Why a scale for fp16/bf16: plain fp16 overflows above 65504 and flushes gradients below 6e-8 to
// zero (the reason mixed-precision training needs loss scaling); bf16 overflows near f32's max. The
// encoder multiplies by 2^k so that max|x| lands in [2^14, 2^15) for fp16 and [1, 2) for bf16.
// Scaling by a power of two is exact, and both the 16-bit grid and the f32 grid are power-of-two
// grids, so decoding (a table lookup times 2^-k) never rounds twice. Hence the bound holds for every
// finite tensor, denormals included: |x - y| <= half an ulp at max|x| = 2^-11 (fp16), 2^-8 (bf16).
//
// Params: fp32 none; fp16/bf16 an i32 k (decoded = half(bits) * 2^-k).
import { CodecError } from '../../core/contracts/index.ts'
import type { Codec, DecodedTensor, TensorRole } from '../../core/contracts/codec.ts'
import {
  assertLittleEndianHost, checkEncodeShape, checkIdentity, DEFAULT_MAX_ELEMENTS, expectPayload, readHeader, writeHeader
} from './header.ts'
import { absMaxFinite, bitsOf, findNonFinite } from '../../core/wire/finite.ts'
import { CodecIds } from './ids.ts'
import { kernelsFor } from './kernels.ts'
import type { CodecKernels, CodecPath } from './kernels.ts'

export interface FloatCodecOptions {
  /** Wire id (default: the built-in id of this format). */
  readonly id?: number
  readonly name?: string
  /** Largest element count decode accepts (default 2^28). */
  readonly maxElements?: number
  /** 'auto' (default): WASM SIMD where present (fp16, bf16; same bytes); 'js': the JS path only. */
  readonly path?: CodecPath
}

// ---- fp32 ------------------------------------------------------------------------------------

/** Raw float32 with the common header: lossless, checks finiteness both ways. */
export function fp32Codec (opts: FloatCodecOptions = {}): Codec {
  const id = opts.id ?? CodecIds.fp32
  const name = opts.name ?? 'fp32'
  const maxElements = opts.maxElements ?? DEFAULT_MAX_ELEMENTS
  checkIdentity(id, name)
  assertLittleEndianHost()
  return Object.freeze({
    id,
    name,
    errorBound: Object.freeze({ relMaxAbs: 0 }),
    nominalRatio: 1,
    encode (data: Float32Array, shape: readonly number[], _role: TensorRole): Uint8Array {
      const n = checkEncodeShape(data, shape, maxElements, name)
      absMaxFinite(data, bitsOf(data), 0, n, `${name}: input`)
      const { bytes, offset } = writeHeader(id, shape, n, 0, 4 * n)
      new Float32Array(bytes.buffer, offset, n).set(data)
      return bytes
    },
    decode (input: Uint8Array): DecodedTensor {
      const hd = readHeader(input, id, name, 0, maxElements)
      expectPayload(hd, 4 * hd.n, name)
      // A copy: the decoded tensor must not alias a receive buffer that gets reused.
      const data = new Float32Array(hd.bytes.buffer, hd.bytes.byteOffset + hd.offset, hd.n).slice()
      const bad = findNonFinite(data)
      if (bad >= 0) throw new CodecError(`${name}: payload has a non-finite value at element ${bad} (no encoder writes one: corrupted)`)
      return { data, shape: hd.shape }
    }
  })
}

// ---- 16-bit formats --------------------------------------------------------------------------

interface HalfFormat {
  /** Explicit mantissa bits. */
  readonly mant: number
  /** Smallest normal exponent. */
  readonly emin: number
  readonly bias: number
  /** Exponent of the binade max|x| is scaled into. */
  readonly top: number
  /** Largest magnitude bit pattern an encoder can produce (2^(top+1), reached by rounding up). */
  readonly maxBits: number
  readonly bound: number
}

const F16: HalfFormat = { mant: 10, emin: -14, bias: 15, top: 14, maxBits: 0x7800, bound: 2 ** -11 }
const BF16: HalfFormat = { mant: 7, emin: -126, bias: 127, top: 0, maxBits: 0x4000, bound: 2 ** -8 }

/** floor(log2(x)) for a positive finite x, exact (Math.log2 alone can be off by one near powers of two). */
function ilog2 (x: number): number {
  let e = Math.floor(Math.log2(x))
  if (2 ** e > x) e--
  else if (2 ** (e + 1) <= x) e++
  return e
}

/** Round half to even of a non-negative t < 2^53. */
function rne (t: number): number {
  const f = Math.floor(t)
  const d = t - f
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f
}

/** Magnitude bits of v >= 0 (already scaled, below the format's max) in a 16-bit format; the slow, general path. */
function halfBitsSlow (v: number, f: HalfFormat): number {
  if (v < 2 ** f.emin) return rne(v / 2 ** (f.emin - f.mant)) // subnormal; 2^mant is the smallest normal's pattern
  let e = ilog2(v)
  let r = rne(v / 2 ** (e - f.mant))
  if (r === 2 ** (f.mant + 1)) { e++; r = 2 ** f.mant }
  return ((e + f.bias) << f.mant) | (r - 2 ** f.mant)
}

/** Decode tables: value of every 16-bit pattern, NaN for patterns no encoder writes (beyond the scaled max). */
const tables = new Map<HalfFormat, Float32Array>()
function valueTable (f: HalfFormat): Float32Array {
  let t = tables.get(f)
  if (t != null) return t
  t = new Float32Array(65536)
  const sub = 2 ** (f.emin - f.mant)
  for (let m = 0; m < 32768; m++) {
    let v: number
    if (m > f.maxBits) v = NaN
    else {
      const e = m >>> f.mant
      const frac = m & ((1 << f.mant) - 1)
      v = e === 0 ? frac * sub : (2 ** f.mant + frac) * 2 ** (e - f.bias - f.mant)
    }
    t[m] = v
    t[m | 0x8000] = -v
  }
  tables.set(f, t)
  return t
}

const bitsF32 = new Float32Array(1)
const bitsU32 = new Uint32Array(bitsF32.buffer)

/** max|x| of finite data via the SIMD kernel; on NaN/Inf the JS scan runs and throws its error. */
function absMaxSimd (simd: CodecKernels, data: Float32Array, bits: Uint32Array, what: string): number {
  const m = simd.absMaxBits(data)
  if (m >= 0x7f800000) return absMaxFinite(data, bits, 0, data.length, what)
  bitsU32[0] = m
  return bitsF32[0]
}

function halfCodec (f: HalfFormat, id: number, name: string, maxElements: number, simd: CodecKernels | null): Codec {
  checkIdentity(id, name)
  assertLittleEndianHost()
  // Range of k an encoder can write: max|x| spans f32's binades [-149, 127].
  const kMin = f.top - 127
  const kMax = f.top + 149
  const shift = 23 - f.mant
  const half = (1 << (shift - 1)) - 1
  return Object.freeze({
    id,
    name,
    errorBound: Object.freeze({ relMaxAbs: f.bound }),
    nominalRatio: 2,
    encode (data: Float32Array, shape: readonly number[], _role: TensorRole): Uint8Array {
      const n = checkEncodeShape(data, shape, maxElements, name)
      const bits = bitsOf(data)
      const max = simd != null ? absMaxSimd(simd, data, bits, `${name}: input`) : absMaxFinite(data, bits, 0, n, `${name}: input`)
      const k = max === 0 ? 0 : f.top - ilog2(max)
      const { bytes, offset } = writeHeader(id, shape, n, 4, 2 * n, (dv, at) => { dv.setInt32(at, k, true) })
      const out = new Uint16Array(bytes.buffer, offset, n)
      const S = 2 ** k
      // Fast path on the f32 bits, all int32 arithmetic: a normal input whose scaled value is a
      // normal 16-bit float gets its exponent rebased by k - (127 - bias) and its mantissa rounded
      // half to even. K and T fit int32 for every k an encoder can pick.
      const K = (k - (127 - f.bias)) * 2 ** 23
      const T = Math.max((f.emin + 127 - k) * 2 ** 23, 0x00800000)
      const sbits = new Int32Array(bits.buffer, bits.byteOffset, n)
      if (simd != null) {
        simd.halfEncode(data, out, K, T, shift, half, i => { out[i] = ((sbits[i] >> 16) & 0x8000) | halfBitsSlow(Math.abs(data[i]) * S, f) })
      } else {
        for (let i = 0; i < n; i++) {
          const b = sbits[i]
          const a = b & 0x7fffffff
          if (a >= T) {
            const s = (a + K) | 0
            out[i] = ((b >> 16) & 0x8000) | ((s + half + ((s >> shift) & 1)) >> shift)
          } else {
            out[i] = ((b >> 16) & 0x8000) | (a === 0 ? 0 : halfBitsSlow(Math.abs(data[i]) * S, f))
          }
        }
      }
      // When max|x| is in f32's top binade, the pattern 2^(top+1) would decode to 2^128 = Inf: use
      // the largest pattern below it (still within half an ulp of max|x|; docs/compression.md).
      if (k === kMin) {
        for (let i = 0; i < n; i++) if ((out[i] & 0x7fff) === f.maxBits) out[i] = (out[i] & 0x8000) | (f.maxBits - 1)
      }
      return bytes
    },
    decode (input: Uint8Array): DecodedTensor {
      const hd = readHeader(input, id, name, 4, maxElements)
      const k = hd.dv.getInt32(hd.params, true)
      if (k < kMin || k > kMax) throw new CodecError(`${name}: scale exponent ${k} outside [${kMin}, ${kMax}] (corrupted)`)
      expectPayload(hd, 2 * hd.n, name)
      const src = new Uint16Array(hd.bytes.buffer, hd.bytes.byteOffset + hd.offset, hd.n)
      const table = valueTable(f)
      const inv = 2 ** -k
      const data = new Float32Array(hd.n)
      // SIMD: a pattern whose value times 2^-k is a normal f32 is rebased in its bits (exact, as the
      // table product is); zeros keep their sign; the rest (subnormal results) take the table.
      // A pattern beyond maxBits makes the kernel decline: the JS loop below names it.
      const Tm = Math.max(1, f.bias + k - 126) * 2 ** f.mant
      const ok = simd?.halfDecode(src, data, f.maxBits, Tm, (127 - f.bias - k) * 2 ** 23, shift, i => { data[i] = table[src[i]] * inv })
      for (let i = ok === true ? data.length : 0; i < data.length; i++) {
        const v = table[src[i]]
        if (v !== v) throw new CodecError(`${name}: element ${i} has bit pattern 0x${src[i].toString(16)}, beyond the scaled maximum (corrupted)`)
        data[i] = v * inv
      }
      if (k === kMin) { // the one scale where a valid-looking top pattern overflows f32
        for (let i = 0; i < data.length; i++) {
          if (data[i] === Infinity || data[i] === -Infinity) throw new CodecError(`${name}: element ${i} overflows float32 (corrupted)`)
        }
      }
      return { data, shape: hd.shape }
    }
  })
}

/** IEEE half with a power-of-two tensor scale; |error| <= 2^-11 * max|x|. */
export function fp16Codec (opts: FloatCodecOptions = {}): Codec {
  return halfCodec(F16, opts.id ?? CodecIds.fp16, opts.name ?? 'fp16', opts.maxElements ?? DEFAULT_MAX_ELEMENTS, kernelsFor(opts.path))
}

/** bfloat16 with a power-of-two tensor scale; |error| <= 2^-8 * max|x|. */
export function bf16Codec (opts: FloatCodecOptions = {}): Codec {
  return halfCodec(BF16, opts.id ?? CodecIds.bf16, opts.name ?? 'bf16', opts.maxElements ?? DEFAULT_MAX_ELEMENTS, kernelsFor(opts.path))
}

