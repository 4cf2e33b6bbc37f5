// Top-k sparsification for gradients: keep the k = ceil(fraction * n) elements of largest |x| with
// their flat indices; the rest decode to 0. Selection is deterministic (ties go to the lower index)
// and O(n): a radix select on the f32 bit patterns of |x| (which order like the values) finds the
// k-th largest in two histogram passes, then one scan writes indices in ascending order.
//
// Error bound: a dropped element can be as large as max|x| (a constant tensor drops most of its
// max-sized values), so the declared relMaxAbs is 1: one step alone promises nothing per element.
// What top-k promises is with error feedback (error-feedback.ts): the dropped mass is carried into
// the next step, so the sum of decoded tensors tracks the sum of inputs. Kept values are exact
// (plain topk) or within the values codec's own bound (composition, below).
//
// Composition: the kept values form a dense float32 vector of shape [k] that another codec may
// encode (`compose(topk, int8Block)` -> "topk.int8-block"). Its message is embedded whole (own
// header, own checks) and its wire id is recorded in topk's params.
//
// Params (8 bytes): u32 k, u8 index width (2 when n <= 65536, else 4), u8 reserved (0), u16 wire id
// of the values codec (0: raw f32). Payload: indices (k * width bytes, ascending), zero padding to a
// multiple of 4, then the values (raw f32[k], or the values codec's message).
import { CodecError } from '../../core/contracts/index.ts'
import type { Codec, DecodedTensor, TensorRole } from '../../core/contracts/codec.ts'
import {
  align4, assertLittleEndianHost, checkEncodeShape, checkIdentity, DEFAULT_MAX_ELEMENTS, expectPayload, readHeader, writeHeader
} from './header.ts'
import { absMaxFinite, nonFiniteAt } from '../../core/wire/finite.ts'
import { CodecIds } from './ids.ts'
import { kernelsFor } from './kernels.ts'
import type { CodecKernels, CodecPath } from './kernels.ts'

export interface TopKOptions {
  /** Fraction of elements kept, in (0, 1] (default 1/64). k = ceil(fraction * n), at least 1 for n > 0. */
  readonly fraction?: number
  /** Codec for the kept values (default none: raw f32). */
  readonly values?: Codec
  readonly id?: number
  readonly name?: string
  /** Largest element count decode accepts (default 2^28). */
  readonly maxElements?: number
  /** 'auto' (default): the SIMD candidate scan where present (same bytes); 'js': the JS path only. */
  readonly path?: CodecPath
}

/** A codec whose payload holds a dense float32 part that another codec may encode. */
export interface ComposableCodec extends Codec {
  /** This codec with its dense part encoded by `inner`; id and name default to the built-in table's "<this>.<inner>". */
  compose (inner: Codec, ident?: { readonly id?: number, readonly name?: string }): Codec
}

export interface TopKCodec extends ComposableCodec {
  readonly fraction: number
  /** The values codec, or null for raw f32 values. */
  readonly values: Codec | null
  /** relMaxAbs of the kept values relative to max|x| (0 for raw values). */
  readonly keptRelMaxAbs: number
  /** Elements kept for a tensor of n elements. */
  kFor (n: number): number
}

const PARAM_BYTES = 8

// Histogram scratch for the radix select; encode is synchronous, so one per process suffices.
const hist = new Uint32Array(65536)

/**
 * Threshold t (bit pattern of |x|) and how many elements equal to t to keep (the first ones in
 * index order), so that exactly k elements are kept. Also rejects non-finite input.
 */
function selectThreshold (data: Float32Array, bits: Uint32Array, n: number, k: number, codec: string): { t: number, ties: number } {
  hist.fill(0)
  for (let i = 0; i < n; i++) {
    const a = bits[i] & 0x7fffffff
    if (a >= 0x7f800000) throw nonFiniteAt(`${codec}: input`, data, i)
    hist[a >>> 16]++
  }
  let above = 0
  let hb = 0x7f7f // highest finite |x| pattern's top half
  for (; hb > 0; hb--) {
    if (above + hist[hb] >= k) break
    above += hist[hb]
  }
  hist.fill(0)
  for (let i = 0; i < n; i++) {
    const a = bits[i] & 0x7fffffff
    if (a >>> 16 === hb) hist[a & 0xffff]++
  }
  let lb = 0xffff
  for (; lb > 0; lb--) {
    if (above + hist[lb] >= k) break
    above += hist[lb]
  }
  return { t: hb * 65536 + lb, ties: k - above }
}

/**
 * SIMD path for k well below n: a lower bound L on the threshold, read from a sample (its rank set
 * for ~1.5k elements at or above L), then one SIMD pass collects the indices and bits of every
 * element with |x| >= L (NaN/Inf included: L <= Inf's pattern), and the radix select runs on those
 * candidates only. The sample is spread by the golden ratio, not a stride: a stride can be a
 * multiple of a row length and see one column only. Returns null when the sample misled (fewer
 * than k candidates, or more than the cap: e.g. many ties) and the full select must run.
 */
function candidates (simd: CodecKernels, data: Float32Array, bits: Uint32Array, n: number, k: number, codec: string): { at: Uint32Array, bits: Uint32Array } | null {
  const s = Math.min(n, 4096)
  const sample = new Uint32Array(s)
  for (let j = 0; j < s; j++) sample[j] = bits[Math.floor(((j + 0.5) * 0.6180339887498949 % 1) * n)] & 0x7fffffff
  sample.sort()
  const r = Math.ceil(1.5 * k * s / n) + 16
  if (r >= s) return null
  const L = Math.min(sample[s - 1 - r], 0x7f800000)
  const cand = simd.topkCandidates(data, L, 3 * k + Math.ceil(32 * n / s) + 1024)
  if (cand == null || cand.at.length < k) return null
  for (let j = 0; j < cand.bits.length; j++) {
    if ((cand.bits[j] & 0x7fffffff) >= 0x7f800000) throw nonFiniteAt(`${codec}: input`, data, cand.at[j]) // ascending: the first one
  }
  return cand
}

export function topkCodec (opts: TopKOptions = {}): TopKCodec {
  const fraction = opts.fraction ?? 1 / 64
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`topk fraction must be in (0, 1], got ${fraction}`)
  const inner = opts.values ?? null
  const name = opts.name ?? (inner == null ? 'topk' : `topk.${inner.name}`)
  const id = opts.id ?? (CodecIds as Record<string, number>)[name]
  if (id === undefined) throw new RangeError(`no built-in wire id for codec "${name}": pass an id`)
  const maxElements = opts.maxElements ?? DEFAULT_MAX_ELEMENTS
  checkIdentity(id, name)
  assertLittleEndianHost()
  const innerId = inner?.id ?? 0
  const simd = kernelsFor(opts.path)
  const kFor = (n: number): number => n === 0 ? 0 : Math.min(n, Math.max(1, Math.ceil(n * fraction)))
  // Large tensors: 4-byte indices plus 4 bytes (raw) or 4/innerRatio bytes per kept value.
  const nominalRatio = 4 / (fraction * (4 + 4 / (inner?.nominalRatio ?? 1)))

  const codec: TopKCodec = Object.freeze({
    id,
    name,
    fraction,
    values: inner,
    keptRelMaxAbs: inner?.errorBound.relMaxAbs ?? 0,
    errorBound: Object.freeze({ relMaxAbs: Math.max(1, inner?.errorBound.relMaxAbs ?? 0) }),
    nominalRatio,
    kFor,
    compose (next: Codec, ident: { readonly id?: number, readonly name?: string } = {}): Codec {
      if (inner != null) throw new RangeError(`${name} already encodes its values with ${inner.name}`)
      return topkCodec({ fraction, maxElements, values: next, id: ident.id, name: ident.name ?? `${name}.${next.name}`, path: opts.path })
    },
    encode (data: Float32Array, shape: readonly number[], role: TensorRole): Uint8Array {
      const n = checkEncodeShape(data, shape, maxElements, name)
      const k = kFor(n)
      const w = n <= 65536 ? 2 : 4
      const bits = new Uint32Array(data.buffer, data.byteOffset, n)
      const idx = new Uint32Array(k)
      const vals = new Float32Array(k)
      const vbits = new Uint32Array(vals.buffer)
      if (k === n) {
        absMaxFinite(data, bits, 0, n, `${name}: input`)
        for (let i = 0; i < n; i++) idx[i] = i
        vals.set(data)
      } else if (k > 0) {
        // Select among the candidates (SIMD) or every element (JS); keep what is above the
        // threshold t and the first `ties` equal to it, in ascending index order.
        const cand = simd != null && 4 * k < n ? candidates(simd, data, bits, n, k, name) : null
        const src = cand?.bits ?? bits
        const sel = selectThreshold(data, src, src.length, k, name)
        const t = sel.t
        let ties = sel.ties
        let j = 0
        for (let c = 0; c < src.length; c++) {
          const a = src[c] & 0x7fffffff
          if (a > t || (a === t && ties-- > 0)) {
            idx[j] = cand == null ? c : cand.at[c]
            vbits[j] = src[c]
            j++
          }
        }
      }
      const valueBytes = inner?.encode(vals, [k], role)
      const idxBytes = align4(k * w)
      const { bytes, offset } = writeHeader(id, shape, n, PARAM_BYTES, idxBytes + (valueBytes?.length ?? 4 * k), (dv, at) => {
        dv.setUint32(at, k, true)
        dv.setUint8(at + 4, w)
        dv.setUint16(at + 6, innerId, true)
      })
      if (w === 2) new Uint16Array(bytes.buffer, offset, k).set(idx)
      else new Uint32Array(bytes.buffer, offset, k).set(idx)
      if (valueBytes != null) bytes.set(valueBytes, offset + idxBytes)
      else new Float32Array(bytes.buffer, offset + idxBytes, k).set(vals)
      return bytes
    },
    decode (input: Uint8Array): DecodedTensor {
      const hd = readHeader(input, id, name, PARAM_BYTES, maxElements)
      const n = hd.n
      const k = hd.dv.getUint32(hd.params, true)
      const w = hd.bytes[hd.params + 4]
      const vid = hd.dv.getUint16(hd.params + 6, true)
      // k follows from n and the sender's fraction; a peer may run another fraction, so any k <= n is valid.
      if (k > n) throw new CodecError(`${name}: k = ${k} exceeds the ${n} elements (corrupted)`)
      if (w !== (n <= 65536 ? 2 : 4) || hd.bytes[hd.params + 5] !== 0) throw new CodecError(`${name}: bad index width ${w} for ${n} elements (corrupted)`)
      if (vid !== innerId) throw new CodecError(`${name}: values encoded with codec id ${vid}, expected ${innerId}`)
      const idxBytes = align4(k * w)
      if (inner == null) expectPayload(hd, idxBytes + 4 * k, name)
      else if (hd.payloadBytes < idxBytes) throw new CodecError(`${name}: truncated: payload has ${hd.payloadBytes} bytes, indices need ${idxBytes}`)
      const base = hd.bytes.byteOffset + hd.offset
      for (let p = hd.offset + k * w; p < hd.offset + idxBytes; p++) {
        if (hd.bytes[p] !== 0) throw new CodecError(`${name}: non-zero index padding (corrupted)`)
      }
      let vals: Float32Array
      if (inner == null) {
        vals = new Float32Array(hd.bytes.buffer, base + idxBytes, k)
      } else {
        const dec = inner.decode(hd.bytes.subarray(hd.offset + idxBytes))
        if (dec.shape.length !== 1 || dec.shape[0] !== k) throw new CodecError(`${name}: values tensor has shape [${dec.shape.join(', ')}], expected [${k}]`)
        vals = dec.data
      }
      const idx = w === 2 ? new Uint16Array(hd.bytes.buffer, base, k) : new Uint32Array(hd.bytes.buffer, base, k)
      const data = new Float32Array(n)
      let prev = -1
      for (let j = 0; j < k; j++) {
        const i = idx[j]
        if (i <= prev || i >= n) throw new CodecError(`${name}: index ${i} at position ${j} is out of order or out of range (corrupted)`)
        const v = vals[j]
        if (v - v !== 0) throw new CodecError(`${name}: non-finite value at position ${j} (corrupted)`)
        data[i] = v
        prev = i
      }
      return { data, shape: hd.shape }
    }
  })
  return codec
}

/**
 * `outer` with its dense part encoded by `inner` (e.g. compose(topk, int8-block) = "topk.int8-block").
 * Only codecs with a dense part (ComposableCodec: topk) can be outer. For the learned bottleneck the
 * model is the outer step (d -> k) and any codec encodes the k-wide tensor: no compose needed.
 */
export function compose (outer: Codec, inner: Codec, ident?: { readonly id?: number, readonly name?: string }): Codec {
  const c = outer as Partial<ComposableCodec>
  if (typeof c.compose !== 'function') throw new TypeError(`codec ${outer.name} has no dense part for another codec to encode`)
  return c.compose(inner, ident)
}
