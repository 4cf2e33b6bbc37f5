// safetensors encoding and strict decoding (https://github.com/huggingface/safetensors):
//   8 bytes  little-endian u64 N, the header length
//   N bytes  UTF-8 JSON: { name: { dtype, shape, data_offsets: [begin, end] }, ..., "__metadata__": { str: str } }
//            padded with spaces to a multiple of 8 so the data starts aligned
//   data     raw little-endian tensor bytes; offsets are relative to the data start, contiguous,
//            and cover the data exactly
// Pure (Uint8Array in, Uint8Array out): the file I/O lives in checkpoint.ts.
import { LayerswarmError } from '../errors.ts'

/** Bytes that are not a valid safetensors file (truncated, bad header, inconsistent offsets). */
export class SafetensorsError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_SAFETENSORS', message)
  }
}

export type StDType = 'F32' | 'I32'

export interface StTensor {
  readonly dtype: StDType
  readonly shape: readonly number[]
  readonly data: Float32Array | Int32Array
}

export interface StFile {
  readonly tensors: Map<string, StTensor>
  /** The `__metadata__` map (string values only, per the format). */
  readonly metadata: Record<string, string>
  /** Byte range of the data section within the encoded file (for checksums). */
  readonly dataOffset: number
}

/** Refuse headers above this (the reference implementation's limit). */
const MAX_HEADER = 100_000_000
const METADATA = '__metadata__'

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  // typed arrays are host-endian; the format is little-endian
  throw new SafetensorsError('safetensors I/O needs a little-endian host')
}

export function encodeSafetensors (tensors: Iterable<[string, StTensor]>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {}
  const parts: Uint8Array[] = []
  let offset = 0
  for (const [name, t] of tensors) {
    if (name === METADATA || Object.hasOwn(header, name)) throw new SafetensorsError(`tensor name "${name}" is reserved or repeated`)
    const n = t.shape.reduce((a, b) => a * b, 1)
    if (n !== t.data.length) throw new SafetensorsError(`tensor ${name}: shape [${t.shape.join(',')}] needs ${n} values, got ${t.data.length}`)
    if ((t.dtype === 'F32') !== (t.data instanceof Float32Array)) throw new SafetensorsError(`tensor ${name}: dtype ${t.dtype} does not match its array`)
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] }
    parts.push(bytes)
    offset += bytes.length
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new SafetensorsError(`metadata ${k}: values must be strings`)
  }
  if (Object.keys(metadata).length > 0) header[METADATA] = metadata
  let json = new TextEncoder().encode(JSON.stringify(header))
  const padded = Math.ceil(json.length / 8) * 8
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20)
    p.set(json)
    json = p
  }
  const out = new Uint8Array(8 + json.length + offset)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
  out.set(json, 8)
  let at = 8 + json.length
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

export function decodeSafetensors (bytes: Uint8Array): StFile {
  if (bytes.length < 8) throw new SafetensorsError(`file too short (${bytes.length} bytes) for the 8-byte header length`)
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)
  if (n > BigInt(MAX_HEADER)) throw new SafetensorsError(`header length ${n} exceeds ${MAX_HEADER}`)
  const headerLen = Number(n)
  if (8 + headerLen > bytes.length) throw new SafetensorsError(`truncated: header says ${headerLen} bytes, file has ${bytes.length - 8} after the length`)
  let header: unknown
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)))
  } catch (err) {
    throw new SafetensorsError(`header is not valid UTF-8 JSON: ${(err as Error).message}`)
  }
  if (header == null || typeof header !== 'object' || Array.isArray(header)) throw new SafetensorsError('header must be a JSON object')
  const dataOffset = 8 + headerLen
  const dataLen = bytes.length - dataOffset

  let metadata: Record<string, string> = {}
  const entries: Array<{ name: string, dtype: StDType, shape: number[], begin: number, end: number }> = []
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === METADATA) {
      if (raw == null || typeof raw !== 'object' || Array.isArray(raw) || Object.values(raw).some(v => typeof v !== 'string')) {
        throw new SafetensorsError('__metadata__ must map strings to strings')
      }
      metadata = raw as Record<string, string>
      continue
    }
    const e = raw as { dtype?: unknown, shape?: unknown, data_offsets?: unknown }
    if (e == null || typeof e !== 'object') throw new SafetensorsError(`tensor ${name}: entry must be an object`)
    if (e.dtype !== 'F32' && e.dtype !== 'I32') throw new SafetensorsError(`tensor ${name}: unsupported dtype ${JSON.stringify(e.dtype)} (F32, I32)`)
    if (!Array.isArray(e.shape) || !e.shape.every(d => Number.isSafeInteger(d) && d >= 0)) throw new SafetensorsError(`tensor ${name}: bad shape ${JSON.stringify(e.shape)}`)
    const off = e.data_offsets
    if (!Array.isArray(off) || off.length !== 2 || !off.every(d => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1]) {
      throw new SafetensorsError(`tensor ${name}: bad data_offsets ${JSON.stringify(off)}`)
    }
    const numel = (e.shape as number[]).reduce((a, b) => a * b, 1)
    if (off[1] - off[0] !== numel * 4) throw new SafetensorsError(`tensor ${name}: ${off[1] - off[0]} bytes for shape [${e.shape.join(',')}] (${numel * 4} expected)`)
    entries.push({ name, dtype: e.dtype, shape: e.shape as number[], begin: off[0], end: off[1] })
  }

  // offsets must tile the data section exactly: no gaps, overlaps, or trailing bytes
  const sorted = [...entries].sort((a, b) => a.begin - b.begin)
  let expect = 0
  for (const e of sorted) {
    if (e.begin !== expect) throw new SafetensorsError(`tensor ${e.name}: data starts at ${e.begin}, expected ${expect} (gap or overlap)`)
    expect = e.end
  }
  if (expect !== dataLen) {
    throw new SafetensorsError(expect > dataLen
      ? `truncated: tensors need ${expect} data bytes, file has ${dataLen}`
      : `${dataLen - expect} trailing bytes after the last tensor`)
  }

  const tensors = new Map<string, StTensor>()
  for (const e of entries) {
    // copy: the data may be unaligned for a typed-array view (and Buffer#slice does not copy)
    const buf = new ArrayBuffer(e.end - e.begin)
    new Uint8Array(buf).set(bytes.subarray(dataOffset + e.begin, dataOffset + e.end))
    const data = e.dtype === 'F32' ? new Float32Array(buf) : new Int32Array(buf)
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data })
  }
  return { tensors, metadata, dataOffset }
}
