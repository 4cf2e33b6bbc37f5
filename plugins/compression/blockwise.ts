// Blockwise absmax quantization (bitsandbytes / hivemind style): the flat tensor is cut into blocks
// of B elements (the last may be short); each block stores its max |x| as an exact float32 and every
// element as round(x * L / absmax), L = 127 (int8, one byte) or 7 (int4, two per byte).
//
// Why store absmax rather than the step absmax / L: absmax is an f32 value of the input, so it is
// exact even for denormal or huge blocks, and the step is recomputed in float64 on both sides.
// Levels are symmetric (-L..L): the spare code (-128, nibble 0) never appears, so a decoder that
// sees it knows the payload is corrupted. An all-zero block has absmax 0 and all-zero codes: no
// division happens. Error per element <= absmax / (2L) (half a step) plus the f32 rounding of the
// decoded value: declared as 1/(2L) + 2^-23 relative to the block's absmax.
//
// Params: u32 block size. Payload: absmax f32[ceil(n/B)], then the codes (int8: n bytes; int4:
// ceil(n/2) bytes, element 2j in the low nibble of byte j, element 2j+1 in the high one, nibble =
// q + 8; an odd tail pads the last high nibble with 0).
import { CodecError } from '../../core/contracts/index.ts'
import type { Codec, DecodedTensor, TensorRole } from '../../core/contracts/codec.ts'
import {
  assertLittleEndianHost, checkEncodeShape, checkIdentity, DEFAULT_MAX_ELEMENTS, expectPayload, readHeader, writeHeader
} from './header.ts'
import { absMaxFinite, bitsOf } from '../../core/wire/finite.ts'
import { CodecIds } from './ids.ts'
import { kernelsFor } from './kernels.ts'
import type { CodecPath } from './kernels.ts'

export interface BlockCodecOptions {
  /** Elements per block (default 64; int4 needs an even size). Decoders read it from the header. */
  readonly blockSize?: number
  readonly id?: number
  readonly name?: string
  /** Largest element count decode accepts (default 2^28). */
  readonly maxElements?: number
  /** 'auto' (default): WASM SIMD where present (int8; same bytes); 'js': the JS path only. */
  readonly path?: CodecPath
}

/** A blockwise codec also says its block size, so checks can apply the bound per block. */
export interface BlockCodec extends Codec {
  readonly blockSize: number
}

const MAX_BLOCK = 1 << 20

function options (opts: BlockCodecOptions, even: boolean): number {
  const b = opts.blockSize ?? 64
  if (!Number.isInteger(b) || b < 1 || b > MAX_BLOCK || (even && b % 2 !== 0)) {
    throw new RangeError(`block size must be ${even ? 'an even' : 'an'} integer in 1..${MAX_BLOCK}, got ${b}`)
  }
  return b
}

function readBlockSize (dv: DataView, at: number, even: boolean, name: string): number {
  const b = dv.getUint32(at, true)
  if (b < 1 || b > MAX_BLOCK || (even && b % 2 !== 0)) throw new CodecError(`${name}: bad block size ${b} (corrupted)`)
  return b
}

function badScale (name: string, blk: number, a: number): CodecError {
  return new CodecError(`${name}: block ${blk} has absmax ${a}; an encoder writes a finite value >= 0 (corrupted)`)
}

/** int8 absmax per block: 1 byte per element + 4 per block; |error| <= (1/254 + 2^-23) * blockAbsMax. */
export function int8BlockCodec (opts: BlockCodecOptions = {}): BlockCodec {
  const blockSize = options(opts, false)
  const id = opts.id ?? CodecIds['int8-block']
  const name = opts.name ?? 'int8-block'
  const maxElements = opts.maxElements ?? DEFAULT_MAX_ELEMENTS
  checkIdentity(id, name)
  assertLittleEndianHost()
  const simd = kernelsFor(opts.path)
  return Object.freeze({
    id,
    name,
    blockSize,
    errorBound: Object.freeze({ relMaxAbs: 1 / 254 + 2 ** -23 }),
    nominalRatio: 4 * blockSize / (blockSize + 4),
    encode (data: Float32Array, shape: readonly number[], _role: TensorRole): Uint8Array {
      const n = checkEncodeShape(data, shape, maxElements, name)
      const B = blockSize
      const nb = Math.ceil(n / B)
      const bits = bitsOf(data)
      const { bytes, offset } = writeHeader(id, shape, n, 4, 4 * nb + n, (dv, at) => { dv.setUint32(at, B, true) })
      const scales = new Float32Array(bytes.buffer, offset, nb)
      const codes = new Int8Array(bytes.buffer, offset + 4 * nb, n)
      // The SIMD kernel declines a block holding NaN/Inf: the JS loop below then throws the error.
      if (simd?.int8Encode(data, B, scales, codes) === true) return bytes
      for (let blk = 0; blk < nb; blk++) {
        const from = blk * B
        const to = Math.min(n, from + B)
        const a = absMaxFinite(data, bits, from, to, `${name}: input`)
        scales[blk] = a
        if (a === 0) continue // codes are already 0
        const m = 127 / a
        // x*m is in [-127, 127] (up to f64 rounding); +127.5 then truncation rounds half up.
        for (let i = from; i < to; i++) codes[i] = ((data[i] * m + 127.5) | 0) - 127
      }
      return bytes
    },
    decode (input: Uint8Array): DecodedTensor {
      const hd = readHeader(input, id, name, 4, maxElements)
      const B = readBlockSize(hd.dv, hd.params, false, name)
      const n = hd.n
      const nb = Math.ceil(n / B)
      expectPayload(hd, 4 * nb + n, name)
      const base = hd.bytes.byteOffset + hd.offset
      const scales = new Float32Array(hd.bytes.buffer, base, nb)
      const codes = new Int8Array(hd.bytes.buffer, base + 4 * nb, n)
      const data = new Float32Array(n)
      // The SIMD kernel declines corrupted blocks: the JS loop below then names the error.
      if (simd?.int8Decode(scales, codes, B, data) === true) return { data, shape: hd.shape }
      for (let blk = 0; blk < nb; blk++) {
        const a = scales[blk]
        if (!(a >= 0 && a < Infinity)) throw badScale(name, blk, a)
        const s = a / 127
        const from = blk * B
        const to = Math.min(n, from + B)
        for (let i = from; i < to; i++) {
          const q = codes[i]
          if (q === -128) throw new CodecError(`${name}: code -128 at element ${i} (never written; corrupted)`)
          data[i] = q * s
        }
      }
      return { data, shape: hd.shape }
    }
  })
}

/** int4 absmax per block: half a byte per element + 4 per block; |error| <= (1/14 + 2^-23) * blockAbsMax. */
export function int4BlockCodec (opts: BlockCodecOptions = {}): BlockCodec {
  const blockSize = options(opts, true)
  const id = opts.id ?? CodecIds['int4-block']
  const name = opts.name ?? 'int4-block'
  const maxElements = opts.maxElements ?? DEFAULT_MAX_ELEMENTS
  checkIdentity(id, name)
  assertLittleEndianHost()
  return Object.freeze({
    id,
    name,
    blockSize,
    errorBound: Object.freeze({ relMaxAbs: 1 / 14 + 2 ** -23 }),
    nominalRatio: 4 * blockSize / (blockSize / 2 + 4),
    encode (data: Float32Array, shape: readonly number[], _role: TensorRole): Uint8Array {
      const n = checkEncodeShape(data, shape, maxElements, name)
      const B = blockSize
      const nb = Math.ceil(n / B)
      const bits = bitsOf(data)
      const { bytes, offset } = writeHeader(id, shape, n, 4, 4 * nb + Math.ceil(n / 2), (dv, at) => { dv.setUint32(at, B, true) })
      const scales = new Float32Array(bytes.buffer, offset, nb)
      const codes = new Uint8Array(bytes.buffer, offset + 4 * nb, Math.ceil(n / 2))
      for (let blk = 0; blk < nb; blk++) {
        const from = blk * B // even, since B is even: pairs never straddle blocks
        const to = Math.min(n, from + B)
        const a = absMaxFinite(data, bits, from, to, `${name}: input`)
        scales[blk] = a
        // Nibble = round(x * 7 / a) + 8, in 1..15; a zero block is all 8s.
        const m = a === 0 ? 0 : 7 / a
        let i = from
        for (; i + 1 < to; i += 2) {
          const lo = ((data[i] * m + 7.5) | 0) + 1
          const hi = ((data[i + 1] * m + 7.5) | 0) + 1
          codes[i >> 1] = lo | (hi << 4)
        }
        if (i < to) codes[i >> 1] = ((data[i] * m + 7.5) | 0) + 1 // odd tail: high nibble stays 0
      }
      return bytes
    },
    decode (input: Uint8Array): DecodedTensor {
      const hd = readHeader(input, id, name, 4, maxElements)
      const B = readBlockSize(hd.dv, hd.params, true, name)
      const n = hd.n
      const nb = Math.ceil(n / B)
      expectPayload(hd, 4 * nb + Math.ceil(n / 2), name)
      const base = hd.bytes.byteOffset + hd.offset
      const scales = new Float32Array(hd.bytes.buffer, base, nb)
      const codes = new Uint8Array(hd.bytes.buffer, base + 4 * nb, Math.ceil(n / 2))
      const data = new Float32Array(n)
      for (let blk = 0; blk < nb; blk++) {
        const a = scales[blk]
        if (!(a >= 0 && a < Infinity)) throw badScale(name, blk, a)
        const s = a / 7
        const from = blk * B
        const to = Math.min(n, from + B)
        let i = from
        for (; i + 1 < to; i += 2) {
          const c = codes[i >> 1]
          const lo = c & 15
          const hi = c >>> 4
          if (lo === 0 || hi === 0) throw new CodecError(`${name}: nibble 0 near element ${i} (never written; corrupted)`)
          data[i] = (lo - 8) * s
          data[i + 1] = (hi - 8) * s
        }
        if (i < to) {
          const c = codes[i >> 1]
          if ((c & 15) === 0 || (c >>> 4) !== 0) throw new CodecError(`${name}: bad last byte 0x${c.toString(16)} (corrupted)`)
          data[i] = ((c & 15) - 8) * s
        }
      }
      return { data, shape: hd.shape }
    }
  })
}
