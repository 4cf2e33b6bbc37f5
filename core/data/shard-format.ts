// The token shard file (`.bin`), as nanoGPT's and llm.c's: a fixed 32-byte header, then the tokens
// as little-endian unsigned integers of `width` bytes, nothing else.
//
//   offset  size  field
//   0       8     magic "LSTOKENS" (ASCII)
//   8       4     version (uint32 LE) = 1
//   12      4     token width in bytes (uint32 LE): 2 (vocab <= 65536) or 4
//   16      8     token count (uint64 LE)
//   24      4     vocab size (uint32 LE): every token is below it
//   28      4     reserved, 0
//   32      ...   count tokens, width bytes each, little-endian
//
// 32 bytes keep uint32 tokens 4-byte aligned in the file.
import { PreparedDataError, TokenWidthError } from './data-errors.ts'

export const SHARD_MAGIC = 'LSTOKENS'
export const SHARD_VERSION = 1
export const SHARD_HEADER_BYTES = 32

export type TokenWidth = 2 | 4

export interface ShardHeader {
  readonly version: number
  readonly width: TokenWidth
  readonly count: number
  readonly vocabSize: number
}

/** The narrowest width that holds ids below `vocabSize`. */
export function tokenWidthFor (vocabSize: number): TokenWidth {
  return vocabSize <= 65536 ? 2 : 4
}

/** Refuses a width too narrow for the vocabulary (a uint16 shard holds ids < 65536). */
export function checkTokenWidth (vocabSize: number, width: number): TokenWidth {
  if (width !== 2 && width !== 4) throw new TokenWidthError(vocabSize, width)
  if (!Number.isSafeInteger(vocabSize) || vocabSize < 1 || vocabSize > 2 ** (8 * width)) throw new TokenWidthError(vocabSize, width)
  return width
}

export function encodeShardHeader (h: Omit<ShardHeader, 'version'>): Uint8Array {
  checkTokenWidth(h.vocabSize, h.width)
  const buf = new Uint8Array(SHARD_HEADER_BYTES)
  const view = new DataView(buf.buffer)
  for (let i = 0; i < SHARD_MAGIC.length; i++) buf[i] = SHARD_MAGIC.charCodeAt(i)
  view.setUint32(8, SHARD_VERSION, true)
  view.setUint32(12, h.width, true)
  view.setBigUint64(16, BigInt(h.count), true)
  view.setUint32(24, h.vocabSize, true)
  return buf
}

/** Parses and checks a header; `file` names the shard in errors. */
export function decodeShardHeader (bytes: Uint8Array, file: string): ShardHeader {
  if (bytes.length < SHARD_HEADER_BYTES) throw new PreparedDataError(file, `is ${bytes.length} bytes, shorter than the ${SHARD_HEADER_BYTES}-byte header`)
  for (let i = 0; i < SHARD_MAGIC.length; i++) {
    if (bytes[i] !== SHARD_MAGIC.charCodeAt(i)) throw new PreparedDataError(file, `is not a token shard (no "${SHARD_MAGIC}" magic)`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, SHARD_HEADER_BYTES)
  const version = view.getUint32(8, true)
  if (version !== SHARD_VERSION) throw new PreparedDataError(file, `has shard format version ${version}; this build reads ${SHARD_VERSION}`)
  const vocabSize = view.getUint32(24, true)
  const width = checkTokenWidth(vocabSize, view.getUint32(12, true))
  const count = view.getBigUint64(16, true)
  if (count > BigInt(Number.MAX_SAFE_INTEGER)) throw new PreparedDataError(file, `claims ${count} tokens`)
  return { version, width, count: Number(count), vocabSize }
}

/** Little-endian bytes of `ids` at `width` (the platform's typed arrays are little-endian on every target Node runs on; checked below). */
export function encodeTokens (ids: Uint16Array | Uint32Array): Uint8Array {
  return new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength)
}

/** Tokens of `bytes` (whole tokens, width bytes each) as Int32 ids. */
export function decodeTokens (bytes: Uint8Array, width: TokenWidth, into: Int32Array, at = 0): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const n = bytes.byteLength / width
  if (width === 2) for (let i = 0; i < n; i++) into[at + i] = view.getUint16(2 * i, true)
  else for (let i = 0; i < n; i++) into[at + i] = view.getUint32(4 * i, true)
}

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('token shards need a little-endian platform')
