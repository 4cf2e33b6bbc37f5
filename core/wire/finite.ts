// Finite-value checks and typed views of raw float payloads. A NaN or Inf that enters a stage
// poisons every weight it touches, so inbound activations and gradients are checked before use.
import { NonFiniteError } from '../errors.ts'
import { UnexpectedFrameError } from './errors.ts'
import { RAW_CODEC_ID } from './header.ts'
import type { Frame } from './header.ts'

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1

/** Throws NonFiniteError naming the first NaN/Inf. `x - x` is NaN exactly for NaN and +-Inf. */
export function assertFiniteF32 (data: Float32Array | Float64Array, what = 'tensor'): void {
  for (let i = 0; i < data.length; i++) {
    const x = data[i]
    if (x - x !== 0) throw new NonFiniteError(`${what} has a non-finite value (${x}) at element ${i} of ${data.length}`)
  }
}

/** Same for IEEE half (f16) or bfloat16 bit patterns: exponent bits all ones means NaN or Inf. */
export function assertFinite16 (bits: Uint16Array, format: 'f16' | 'bf16', what = 'tensor'): void {
  const mask = format === 'f16' ? 0x7c00 : 0x7f80
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & mask) === mask) throw new NonFiniteError(`${what} has a non-finite ${format} value (0x${bits[i].toString(16)}) at element ${i} of ${bits.length}`)
  }
}

/**
 * Checks a raw-codec float frame (f32, f16, bf16) for non-finite values. Integer dtypes pass; a
 * frame with a codec is checked after decoding (use assertFiniteF32 on the decoded tensor).
 */
export function assertFinitePayload (frame: Frame): void {
  const { header, payload } = frame
  if (header.codecId !== RAW_CODEC_ID) throw new UnexpectedFrameError(`finite check of codec ${header.codecId} payload: decode it first`)
  const what = `${header.kind} payload`
  if (header.dtype === 'f32') assertFiniteF32(float32View(frame), what)
  else if (header.dtype === 'f16' || header.dtype === 'bf16') assertFinite16(uint16View(payload), header.dtype, what)
}

/**
 * The payload of a raw f32 frame as a Float32Array: a view when the payload is aligned and the host
 * is little-endian (frames from FrameDecoder always are aligned), otherwise a converted copy.
 */
export function float32View (frame: Frame): Float32Array {
  const { header, payload } = frame
  if (header.dtype !== 'f32' || header.codecId !== RAW_CODEC_ID) {
    throw new UnexpectedFrameError(`expected a raw f32 payload, got ${header.dtype} with codec ${header.codecId}`)
  }
  if (LITTLE_ENDIAN && payload.byteOffset % 4 === 0) return new Float32Array(payload.buffer, payload.byteOffset, payload.byteLength / 4)
  const out = new Float32Array(payload.byteLength / 4)
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(4 * i, true)
  return out
}

/** Bytes of a Float32Array in wire order (little-endian), without a copy on little-endian hosts. */
export function float32Bytes (data: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  const out = new Uint8Array(data.byteLength)
  const dv = new DataView(out.buffer)
  for (let i = 0; i < data.length; i++) dv.setFloat32(4 * i, data[i], true)
  return out
}

function uint16View (payload: Uint8Array): Uint16Array {
  if (LITTLE_ENDIAN && payload.byteOffset % 2 === 0) return new Uint16Array(payload.buffer, payload.byteOffset, payload.byteLength / 2)
  const out = new Uint16Array(payload.byteLength / 2)
  for (let i = 0; i < out.length; i++) out[i] = payload[2 * i] | (payload[2 * i + 1] << 8)
  return out
}
