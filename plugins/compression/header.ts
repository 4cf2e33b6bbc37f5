// The self-describing header every built-in codec writes before its payload, and the checks shared
// by all decoders. All integers little-endian. Layout (format version 1):
//
//   0   u16  codec wire id
//   2   u8   format version (1)
//   3   u8   rank r (0..8; rank 0 is a scalar of one element)
//   4   u32  element count (must equal the product of the dims)
//   8   u32  dims[r]
//   8+4r     codec params, P bytes (P fixed per codec, a multiple of 4)
//   8+4r+P   u32 CRC-32 of every header byte before it
//
// Header length H = 12 + 4r + P is a multiple of 4, so the payload starts 4-byte aligned and
// decoders read it through typed-array views without copying.
//
// Why a CRC over the header only: a flipped bit in a dim or a block size would decode into a wrongly
// shaped (silently wrong) tensor, and the header is a few dozen bytes, so checking it costs nothing.
// The payload is not checksummed here: the wire frame already carries a CRC-32 of the whole payload,
// and a second pass over megabytes would halve decode throughput. Decoders still reject payload
// values no encoder produces (non-finite scales, out-of-range codes, bad indices) as cheap sanity.
import { crc32 } from '../../core/wire/checksum.ts'
import { CodecError, ShapeError } from '../../core/contracts/index.ts'

export const FORMAT_VERSION = 1
export const MAX_RANK = 8
/** Default cap on the element count a decoder accepts (2^28 floats = 1 GiB), so a tiny hostile message cannot make it allocate gigabytes. */
export const DEFAULT_MAX_ELEMENTS = 2 ** 28

/** Host byte order: the payload is read and written through typed-array views, which use it. */
export const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1

export function assertLittleEndianHost (): void {
  if (!LITTLE_ENDIAN) throw new Error('layerswarm codecs need a little-endian host')
}

/** Header length for a rank and a params size. */
export function headerLength (rank: number, paramBytes: number): number {
  return 12 + 4 * rank + paramBytes
}

/** Validates a shape given to encode; returns the element count. */
export function checkEncodeShape (data: Float32Array, shape: readonly number[], maxElements: number, codec: string): number {
  if (!(data instanceof Float32Array)) throw new ShapeError(`${codec}: data must be a Float32Array`)
  if (!Array.isArray(shape) || shape.length > MAX_RANK) throw new ShapeError(`${codec}: shape must be an array of at most ${MAX_RANK} dims`)
  let n = 1
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0 || d > 0xffffffff) throw new ShapeError(`${codec}: bad dim ${String(d)} in shape [${shape.join(', ')}]`)
    n *= d
  }
  if (n !== data.length) throw new ShapeError(`${codec}: shape [${shape.join(', ')}] holds ${n} elements but data has ${data.length}`)
  if (n > maxElements) throw new ShapeError(`${codec}: ${n} elements exceed the limit of ${maxElements}`)
  return n
}

/**
 * Allocates the encoded message (header + `payloadBytes`) and writes the header; `writeParams`
 * fills the params area through the DataView at the given offset. Returns the message and H.
 */
export function writeHeader (id: number, shape: readonly number[], n: number, paramBytes: number, payloadBytes: number,
  writeParams?: (dv: DataView, at: number) => void): { bytes: Uint8Array, offset: number } {
  const h = headerLength(shape.length, paramBytes)
  const bytes = new Uint8Array(h + payloadBytes)
  const dv = new DataView(bytes.buffer)
  dv.setUint16(0, id, true)
  bytes[2] = FORMAT_VERSION
  bytes[3] = shape.length
  dv.setUint32(4, n, true)
  for (let i = 0; i < shape.length; i++) dv.setUint32(8 + 4 * i, shape[i], true)
  writeParams?.(dv, 8 + 4 * shape.length)
  dv.setUint32(h - 4, crc32(bytes.subarray(0, h - 4)), true)
  return { bytes, offset: h }
}

export interface ParsedHeader {
  /** The message, 4-byte aligned (a copy when the input was not). */
  readonly bytes: Uint8Array
  readonly dv: DataView
  readonly shape: number[]
  readonly n: number
  /** Offset of the params area. */
  readonly params: number
  /** Offset of the payload (= H). */
  readonly offset: number
  /** Payload bytes present. */
  readonly payloadBytes: number
}

/** Parses and checks the common header (id, version, rank, dims vs count, CRC, element cap). */
export function readHeader (input: Uint8Array, id: number, name: string, paramBytes: number, maxElements: number): ParsedHeader {
  if (!(input instanceof Uint8Array)) throw new CodecError(`${name}: encoded data must be a Uint8Array`)
  if (input.length < 8) throw new CodecError(`${name}: truncated: ${input.length} bytes is shorter than the smallest header`)
  // Payload views need 4-byte alignment; wire frames are aligned, other sources may not be.
  // new Uint8Array(view) copies (Buffer#slice would not: it returns a view).
  const bytes = input.byteOffset % 4 === 0 ? input : new Uint8Array(input)
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const gotId = dv.getUint16(0, true)
  if (gotId !== id) throw new CodecError(`${name}: bytes are for codec id ${gotId}, not ${id}`)
  if (bytes[2] !== FORMAT_VERSION) throw new CodecError(`${name}: unsupported format version ${bytes[2]} (this node reads ${FORMAT_VERSION})`)
  const rank = bytes[3]
  if (rank > MAX_RANK) throw new CodecError(`${name}: rank ${rank} exceeds ${MAX_RANK}`)
  const h = headerLength(rank, paramBytes)
  if (bytes.length < h) throw new CodecError(`${name}: truncated: ${bytes.length} bytes is shorter than the ${h}-byte header`)
  const crc = dv.getUint32(h - 4, true)
  const actual = crc32(bytes.subarray(0, h - 4))
  if (crc !== actual) throw new CodecError(`${name}: header checksum mismatch (corrupted header)`)
  const n = dv.getUint32(4, true)
  const shape: number[] = []
  let prod = 1
  for (let i = 0; i < rank; i++) {
    const d = dv.getUint32(8 + 4 * i, true)
    shape.push(d)
    prod *= d
  }
  if (prod !== n) throw new CodecError(`${name}: element count ${n} does not match shape [${shape.join(', ')}]`)
  if (n > maxElements) throw new CodecError(`${name}: ${n} elements exceed the decode limit of ${maxElements}`)
  return { bytes, dv, shape, n, params: 8 + 4 * rank, offset: h, payloadBytes: bytes.length - h }
}

/** Payload length must be exactly what the header implies: short is truncation, long is trailing garbage. */
export function expectPayload (hd: ParsedHeader, expected: number, name: string): void {
  if (hd.payloadBytes < expected) throw new CodecError(`${name}: truncated: payload has ${hd.payloadBytes} bytes, header implies ${expected}`)
  if (hd.payloadBytes > expected) throw new CodecError(`${name}: ${hd.payloadBytes - expected} trailing bytes after the payload`)
}

/** Rounds up to a multiple of 4 (payload sections stay aligned). */
export function align4 (n: number): number {
  return Math.ceil(n / 4) * 4 // arithmetic, not bit ops: lengths may exceed 2^31
}

/** Validates a codec's wire id and name at construction. */
export function checkIdentity (id: number, name: string): void {
  if (!Number.isInteger(id) || id < 1 || id > 0xffff) throw new RangeError(`codec id must be an integer in 1..65535 (0 is the raw wire format), got ${id}`)
  // Same rule as the run manifest's codec names, so every codec can be chosen there.
  if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(name)) throw new RangeError(`codec name must be lowercase [a-z0-9._-], 1..64 chars, got ${JSON.stringify(name)}`)
}
