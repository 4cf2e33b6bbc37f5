// The transfer header: one binary layout for every frame that crosses the wire (pipeline
// activations and gradients, all-reduce shards, credits, acks, errors, requests). Byte-by-byte
// layout and limits: docs/wire.md. All integers little-endian.
//
// A frame is `header || payload`. The header declares its own length and the payload's length in
// a fixed 16-byte preamble, so a reader can reject an oversized frame before buffering it; the
// header ends with a CRC-32 over itself (a mutated header is never decoded silently) and carries
// the payload's CRC-32.
import { crc32 } from './checksum.ts'
import {
  BadMagicError, ChecksumError, FrameTooLargeError, InvalidFrameInitError, ShapeMismatchError,
  TrailingBytesError, TruncatedFrameError, UnsupportedVersionError, WireFormatError, WireOptionError
} from './errors.ts'

/** "LSWF": layerswarm wire frame. */
export const WIRE_MAGIC: Readonly<Uint8Array> = Uint8Array.of(0x4c, 0x53, 0x57, 0x46)
export const WIRE_VERSION = 1
/** magic(4) version(1) kind(1) flags(2) headerLength(4) payloadLength(4). */
export const PREAMBLE_BYTES = 16
/** Bytes before the shape: preamble + runId(16) microbatch(8) stage(2) codec(2) dtype(1) rank(1) routeCount(1) reserved(1) partIndex(4) partCount(4) payloadCrc(4). */
export const FIXED_HEADER_BYTES = 60
/** Smallest valid header: fixed part + header CRC. */
export const MIN_HEADER_BYTES = FIXED_HEADER_BYTES + 4
export const RUN_ID_BYTES = 16

const FLAG_METADATA = 0x0001
const KNOWN_FLAGS = FLAG_METADATA

/** Message kinds. Tensor kinds carry a tensor payload; the rest are control or generic messages. */
export const FrameKinds = Object.freeze({
  activation: 1,
  'activation-grad': 2,
  'parameter-shard': 3,
  'parameter-grad-shard': 4,
  credit: 16,
  ack: 17,
  error: 18,
  request: 19,
  response: 20
} as const)
export type FrameKind = keyof typeof FrameKinds
const KIND_BY_CODE = new Map<number, FrameKind>(Object.entries(FrameKinds).map(([k, v]) => [v, k as FrameKind]))

/** Frames that do not consume flow-control credit: credit grants and error reports must always get through. */
export function isCreditExempt (kind: FrameKind): boolean {
  return kind === 'credit' || kind === 'error'
}

/** Element types of a (decoded) tensor. A codec's payload says which dtype it decodes to. */
export const WireDTypes = Object.freeze({ f32: 1, f16: 2, bf16: 3, i32: 4, u8: 5 } as const)
export type WireDType = keyof typeof WireDTypes
const DTYPE_BY_CODE = new Map<number, WireDType>(Object.entries(WireDTypes).map(([k, v]) => [v, k as WireDType]))
export const DTYPE_BYTES: Readonly<Record<WireDType, number>> = Object.freeze({ f32: 4, f16: 2, bf16: 2, i32: 4, u8: 1 })

/** Codec id 0 is reserved for raw little-endian elements; codec plugins use 1..65535. */
export const RAW_CODEC_ID = 0

/** Receiver-side bounds. Every length on the wire is checked against one of these. */
export interface WireLimits {
  /** Largest header accepted (bytes). Default 8 KiB. */
  readonly maxHeaderBytes: number
  /** Largest payload accepted in one frame (bytes). Default 64 MiB. */
  readonly maxPayloadBytes: number
  /** Largest tensor rank. Default 8. */
  readonly maxRank: number
  /** Most route hops. Default 32. */
  readonly maxRouteHops: number
  /** Largest metadata JSON (UTF-8 bytes). Default 4 KiB. */
  readonly maxMetadataBytes: number
  /** Largest element count (product of the shape). Default 2^31 - 1. */
  readonly maxElements: number
}

export const DEFAULT_WIRE_LIMITS: Readonly<WireLimits> = Object.freeze({
  maxHeaderBytes: 8 * 1024,
  maxPayloadBytes: 64 * 1024 * 1024,
  maxRank: 8,
  maxRouteHops: 32,
  maxMetadataBytes: 4 * 1024,
  maxElements: 2 ** 31 - 1
})

/** The format's own ceilings (field widths); limits above them are refused. */
const HARD = { maxHeaderBytes: 1024 * 1024, maxPayloadBytes: 0xffff_ffff, maxRank: 32, maxRouteHops: 255, maxMetadataBytes: 0xffff, maxElements: Number.MAX_SAFE_INTEGER }
const MAX_PEER_ID_BYTES = 128
const PEER_ID_RE = /^[A-Za-z0-9]+$/
const RUN_ID_RE = /^[0-9a-f]{32}$/
const MAX_CREDIT_GRANT = 1 << 20
const MAX_U64 = (1n << 64n) - 1n

/** Fills defaults and checks that each limit is a positive integer within the format's ceiling. */
export function resolveLimits (limits?: Partial<WireLimits>): WireLimits {
  const out = { ...DEFAULT_WIRE_LIMITS, ...stripUndefined(limits ?? {}) }
  for (const key of Object.keys(HARD) as Array<keyof WireLimits>) {
    const v = out[key]
    if (!Number.isSafeInteger(v) || v < 1 || v > HARD[key]) {
      throw new WireOptionError(`limits.${key}`, `must be an integer in 1..${HARD[key]}, got ${String(v)}`)
    }
  }
  if (out.maxHeaderBytes < MIN_HEADER_BYTES) {
    throw new WireOptionError('limits.maxHeaderBytes', `must be at least ${MIN_HEADER_BYTES}`)
  }
  return Object.freeze(out)
}

export interface FrameHeader {
  readonly version: number
  readonly kind: FrameKind
  /** 32 lowercase hex chars: the first 16 bytes of sha256(canonical manifest). */
  readonly runId: string
  readonly microbatchId: bigint
  readonly stage: number
  readonly codecId: number
  readonly dtype: WireDType
  readonly shape: readonly number[]
  /** Peer ids of the hops so far, oldest first. */
  readonly route: readonly string[]
  /** This frame is part `partIndex` of `partCount` of one logical transfer. */
  readonly partIndex: number
  readonly partCount: number
  readonly metadata?: Readonly<Record<string, unknown>>
  readonly payloadLength: number
  /** CRC-32 of the payload. */
  readonly payloadChecksum: number
}

/** What a sender gives to build a header; the payload length and checksum are computed. */
export interface FrameInit {
  readonly kind: FrameKind
  readonly runId: string
  readonly microbatchId?: bigint | number
  readonly stage?: number
  readonly codecId?: number
  /** Default 'u8'. */
  readonly dtype?: WireDType
  /** Default: 1-D, payload bytes / dtype size. */
  readonly shape?: readonly number[]
  readonly route?: readonly string[]
  readonly partIndex?: number
  readonly partCount?: number
  readonly metadata?: Readonly<Record<string, unknown>>
}

/**
 * A decoded frame. `payload` is a fresh buffer owned by the receiver (byteOffset 0, so typed-array
 * views over it are aligned).
 */
export interface Frame {
  readonly header: FrameHeader
  readonly payload: Uint8Array
}

export interface Preamble {
  readonly kindCode: number
  readonly flags: number
  readonly headerLength: number
  readonly payloadLength: number
}

// ---- encode ----------------------------------------------------------------------------------

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder('utf-8', { fatal: true })

/**
 * Encodes the header for `payload`. Throws InvalidFrameInitError when `init` is out of the format's
 * or the given limits' bounds (a local bug: the receiver would reject it anyway).
 */
export function encodeHeader (init: FrameInit, payload: Uint8Array, limits?: Partial<WireLimits>): Uint8Array {
  const lim = resolveLimits(limits)
  const kindCode = FrameKinds[init.kind]
  if (kindCode === undefined) throw new InvalidFrameInitError('kind', `is unknown: ${String(init.kind)}`)
  if (typeof init.runId !== 'string' || !RUN_ID_RE.test(init.runId)) throw new InvalidFrameInitError('runId', 'must be 32 lowercase hex chars')
  const mb = typeof init.microbatchId === 'number'
    ? (Number.isSafeInteger(init.microbatchId) && init.microbatchId >= 0 ? BigInt(init.microbatchId) : -1n)
    : (init.microbatchId ?? 0n)
  if (typeof mb !== 'bigint' || mb < 0n || mb > MAX_U64) throw new InvalidFrameInitError('microbatchId', 'must be an integer in 0..2^64-1')
  const stage = checkU(init.stage ?? 0, 0xffff, 'stage')
  const codecId = checkU(init.codecId ?? RAW_CODEC_ID, 0xffff, 'codecId')
  const dtype = init.dtype ?? 'u8'
  const dtypeCode = WireDTypes[dtype]
  if (dtypeCode === undefined) throw new InvalidFrameInitError('dtype', `is unknown: ${String(dtype)}`)
  if (payload.byteLength > lim.maxPayloadBytes) throw new InvalidFrameInitError('payload', `of ${payload.byteLength} bytes exceeds maxPayloadBytes ${lim.maxPayloadBytes}`)
  let shape = init.shape
  if (shape == null) {
    if (payload.byteLength % DTYPE_BYTES[dtype] !== 0) throw new InvalidFrameInitError('shape', 'is required: payload length is not a multiple of the dtype size')
    shape = [payload.byteLength / DTYPE_BYTES[dtype]]
  }
  if (shape.length > lim.maxRank) throw new InvalidFrameInitError('shape', `rank ${shape.length} exceeds maxRank ${lim.maxRank}`)
  const elements = shape.reduce((n, d, i) => n * checkU(d, 0xffff_ffff, `shape[${i}]`), 1)
  if (elements > lim.maxElements) throw new InvalidFrameInitError('shape', `has ${elements} elements, over maxElements ${lim.maxElements}`)
  if (codecId === RAW_CODEC_ID && elements * DTYPE_BYTES[dtype] !== payload.byteLength) {
    throw new InvalidFrameInitError('shape', `[${shape.join(',')}] of ${dtype} needs ${elements * DTYPE_BYTES[dtype]} bytes, payload has ${payload.byteLength}`)
  }
  const route = init.route ?? []
  if (route.length > lim.maxRouteHops) throw new InvalidFrameInitError('route', `has ${route.length} hops, over maxRouteHops ${lim.maxRouteHops}`)
  const routeBytes = route.map((p, i) => {
    if (typeof p !== 'string' || p.length === 0 || p.length > MAX_PEER_ID_BYTES || !PEER_ID_RE.test(p)) {
      throw new InvalidFrameInitError(`route[${i}]`, 'must be a peer id string (1..128 alphanumeric chars)')
    }
    return textEncoder.encode(p)
  })
  const partCount = checkU(init.partCount ?? 1, 0xffff_ffff, 'partCount')
  const partIndex = checkU(init.partIndex ?? 0, 0xffff_ffff, 'partIndex')
  if (partCount < 1 || partIndex >= partCount) throw new InvalidFrameInitError('partIndex', `must be < partCount (${partIndex} of ${partCount})`)
  let meta: Uint8Array | undefined
  if (init.metadata !== undefined) {
    if (!isPlainObject(init.metadata)) throw new InvalidFrameInitError('metadata', 'must be a plain object')
    meta = textEncoder.encode(JSON.stringify(init.metadata))
    if (meta.byteLength > lim.maxMetadataBytes) throw new InvalidFrameInitError('metadata', `of ${meta.byteLength} bytes exceeds maxMetadataBytes ${lim.maxMetadataBytes}`)
  }
  checkKindRules(init.kind, payload.byteLength, init.metadata, (field, msg) => new InvalidFrameInitError(field, msg))

  const headerLength = FIXED_HEADER_BYTES + 4 * shape.length +
    routeBytes.reduce((n, b) => n + 1 + b.byteLength, 0) + (meta != null ? 2 + meta.byteLength : 0) + 4
  if (headerLength > lim.maxHeaderBytes) throw new InvalidFrameInitError('header', `of ${headerLength} bytes exceeds maxHeaderBytes ${lim.maxHeaderBytes}`)

  const out = new Uint8Array(headerLength)
  const dv = new DataView(out.buffer)
  out.set(WIRE_MAGIC, 0)
  dv.setUint8(4, WIRE_VERSION)
  dv.setUint8(5, kindCode)
  dv.setUint16(6, meta != null ? FLAG_METADATA : 0, true)
  dv.setUint32(8, headerLength, true)
  dv.setUint32(12, payload.byteLength, true)
  for (let i = 0; i < RUN_ID_BYTES; i++) out[16 + i] = parseInt(init.runId.slice(2 * i, 2 * i + 2), 16)
  dv.setBigUint64(32, mb, true)
  dv.setUint16(40, stage, true)
  dv.setUint16(42, codecId, true)
  dv.setUint8(44, dtypeCode)
  dv.setUint8(45, shape.length)
  dv.setUint8(46, route.length)
  dv.setUint8(47, 0)
  dv.setUint32(48, partIndex, true)
  dv.setUint32(52, partCount, true)
  dv.setUint32(56, crc32(payload), true)
  let o = FIXED_HEADER_BYTES
  for (const d of shape) { dv.setUint32(o, d, true); o += 4 }
  for (const b of routeBytes) { out[o++] = b.byteLength; out.set(b, o); o += b.byteLength }
  if (meta != null) { dv.setUint16(o, meta.byteLength, true); o += 2; out.set(meta, o); o += meta.byteLength }
  dv.setUint32(o, crc32(out.subarray(0, o)), true)
  return out
}

/** Header and payload in one buffer (tests, small messages; the stream writer sends them apart). */
export function encodeFrame (init: FrameInit, payload: Uint8Array, limits?: Partial<WireLimits>): Uint8Array {
  const header = encodeHeader(init, payload, limits)
  const out = new Uint8Array(header.byteLength + payload.byteLength)
  out.set(header, 0)
  out.set(payload, header.byteLength)
  return out
}

// ---- decode ----------------------------------------------------------------------------------

/** Reads and bounds-checks the 16-byte preamble: enough to size (or refuse) the rest of the frame. */
export function readPreamble (bytes: Uint8Array, limits: WireLimits): Preamble {
  if (bytes.byteLength < PREAMBLE_BYTES) throw new TruncatedFrameError(`need ${PREAMBLE_BYTES} preamble bytes, have ${bytes.byteLength}`)
  for (let i = 0; i < 4; i++) if (bytes[i] !== WIRE_MAGIC[i]) throw new BadMagicError(bytes)
  const dv = new DataView(bytes.buffer, bytes.byteOffset, PREAMBLE_BYTES)
  const version = dv.getUint8(4)
  if (version !== WIRE_VERSION) throw new UnsupportedVersionError(version, WIRE_VERSION)
  const headerLength = dv.getUint32(8, true)
  const payloadLength = dv.getUint32(12, true)
  if (headerLength < MIN_HEADER_BYTES) throw new WireFormatError('headerLength', `${headerLength} is below the minimum ${MIN_HEADER_BYTES}`)
  if (headerLength > limits.maxHeaderBytes) throw new FrameTooLargeError('header', headerLength, limits.maxHeaderBytes)
  if (payloadLength > limits.maxPayloadBytes) throw new FrameTooLargeError('payload', payloadLength, limits.maxPayloadBytes)
  return { kindCode: dv.getUint8(5), flags: dv.getUint16(6, true), headerLength, payloadLength }
}

/**
 * Decodes exactly one header (`bytes` must hold the header and nothing else). Checks, in order:
 * magic, version, length bounds, exact length, header CRC, then every field.
 */
export function decodeHeader (bytes: Uint8Array, limits?: Partial<WireLimits>): FrameHeader {
  const lim = resolveLimits(limits)
  const pre = readPreamble(bytes, lim)
  if (bytes.byteLength < pre.headerLength) throw new TruncatedFrameError(`header declares ${pre.headerLength} bytes, have ${bytes.byteLength}`)
  if (bytes.byteLength > pre.headerLength) throw new TrailingBytesError('the header', bytes.byteLength - pre.headerLength)
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const crcAt = pre.headerLength - 4
  const expected = dv.getUint32(crcAt, true)
  const actual = crc32(bytes.subarray(0, crcAt))
  if (expected !== actual) throw new ChecksumError('header', expected, actual)

  const kind = KIND_BY_CODE.get(pre.kindCode)
  if (kind === undefined) throw new WireFormatError('kind', `unknown kind ${pre.kindCode}`)
  if ((pre.flags & ~KNOWN_FLAGS) !== 0) throw new WireFormatError('flags', `unknown flag bits 0x${pre.flags.toString(16)}`)
  let runId = ''
  for (let i = 0; i < RUN_ID_BYTES; i++) runId += bytes[16 + i].toString(16).padStart(2, '0')
  const microbatchId = dv.getBigUint64(32, true)
  const stage = dv.getUint16(40, true)
  const codecId = dv.getUint16(42, true)
  const dtype = DTYPE_BY_CODE.get(dv.getUint8(44))
  if (dtype === undefined) throw new WireFormatError('dtype', `unknown dtype ${dv.getUint8(44)}`)
  const rank = dv.getUint8(45)
  if (rank > lim.maxRank) throw new WireFormatError('rank', `${rank} exceeds maxRank ${lim.maxRank}`)
  const routeCount = dv.getUint8(46)
  if (routeCount > lim.maxRouteHops) throw new WireFormatError('route', `${routeCount} hops exceed maxRouteHops ${lim.maxRouteHops}`)
  if (dv.getUint8(47) !== 0) throw new WireFormatError('reserved', 'byte 47 must be 0')
  const partIndex = dv.getUint32(48, true)
  const partCount = dv.getUint32(52, true)
  if (partCount < 1 || partIndex >= partCount) throw new WireFormatError('partIndex', `${partIndex} of ${partCount}`)
  const payloadChecksum = dv.getUint32(56, true)

  let o = FIXED_HEADER_BYTES
  const need = (n: number, field: string): void => {
    if (o + n > crcAt) throw new WireFormatError(field, 'runs past the declared header length')
  }
  need(4 * rank, 'shape')
  const shape: number[] = []
  let elements = 1
  for (let i = 0; i < rank; i++) {
    const d = dv.getUint32(o, true)
    o += 4
    shape.push(d)
    elements *= d
  }
  if (elements > lim.maxElements) throw new ShapeMismatchError(`shape [${shape.join(',')}] has ${elements} elements, over the limit ${lim.maxElements}`)
  if (codecId === RAW_CODEC_ID && elements * DTYPE_BYTES[dtype] !== pre.payloadLength) {
    throw new ShapeMismatchError(`shape [${shape.join(',')}] of ${dtype} needs ${elements * DTYPE_BYTES[dtype]} bytes, payload length is ${pre.payloadLength}`)
  }
  const route: string[] = []
  for (let i = 0; i < routeCount; i++) {
    need(1, `route[${i}]`)
    const len = bytes[o++]
    if (len === 0 || len > MAX_PEER_ID_BYTES) throw new WireFormatError(`route[${i}]`, `length ${len} not in 1..${MAX_PEER_ID_BYTES}`)
    need(len, `route[${i}]`)
    const s = String.fromCharCode(...bytes.subarray(o, o + len))
    if (!PEER_ID_RE.test(s)) throw new WireFormatError(`route[${i}]`, 'is not an alphanumeric peer id')
    route.push(s)
    o += len
  }
  let metadata: Record<string, unknown> | undefined
  if ((pre.flags & FLAG_METADATA) !== 0) {
    need(2, 'metadata')
    const len = dv.getUint16(o, true)
    o += 2
    if (len === 0 || len > lim.maxMetadataBytes) throw new WireFormatError('metadata', `length ${len} not in 1..${lim.maxMetadataBytes}`)
    need(len, 'metadata')
    let parsed: unknown
    try {
      parsed = JSON.parse(textDecoder.decode(bytes.subarray(o, o + len)))
    } catch (err) {
      throw new WireFormatError('metadata', `is not UTF-8 JSON (${(err as Error).message})`)
    }
    if (!isPlainObject(parsed)) throw new WireFormatError('metadata', 'must be a JSON object')
    metadata = parsed
    o += len
  }
  if (o !== crcAt) throw new TrailingBytesError('the header fields', crcAt - o)
  checkKindRules(kind, pre.payloadLength, metadata, (field, msg) => new WireFormatError(field, msg))

  return Object.freeze({
    version: WIRE_VERSION,
    kind,
    runId,
    microbatchId,
    stage,
    codecId,
    dtype,
    shape: Object.freeze(shape),
    route: Object.freeze(route),
    partIndex,
    partCount,
    ...(metadata !== undefined ? { metadata: Object.freeze(metadata) } : {}),
    payloadLength: pre.payloadLength,
    payloadChecksum
  })
}

/** Decodes exactly one frame from `bytes`; the payload is copied into a fresh aligned buffer. */
export function decodeFrame (bytes: Uint8Array, limits?: Partial<WireLimits>): Frame {
  const lim = resolveLimits(limits)
  const pre = readPreamble(bytes, lim)
  if (bytes.byteLength < pre.headerLength) throw new TruncatedFrameError(`header declares ${pre.headerLength} bytes, have ${bytes.byteLength}`)
  const header = decodeHeader(bytes.subarray(0, pre.headerLength), lim)
  const total = pre.headerLength + header.payloadLength
  if (bytes.byteLength < total) throw new TruncatedFrameError(`frame declares ${total} bytes, have ${bytes.byteLength}`)
  if (bytes.byteLength > total) throw new TrailingBytesError('the frame', bytes.byteLength - total)
  const payload = bytes.slice(pre.headerLength, total)
  const actual = crc32(payload)
  if (actual !== header.payloadChecksum) throw new ChecksumError('payload', header.payloadChecksum, actual)
  return { header, payload }
}

/** Metadata of a credit frame: how many more frames the receiver accepts. */
export function creditOf (header: FrameHeader): number {
  return (header.metadata as { frames: number }).frames
}

/** Code and message of an error frame. */
export function errorOf (header: FrameHeader): { code: string, message: string } {
  const m = header.metadata as { code: string, message: string }
  return { code: m.code, message: m.message }
}

// ---- helpers ---------------------------------------------------------------------------------

/** Kind-specific rules, shared by the encoder (local bug) and decoder (peer's fault). */
function checkKindRules (kind: FrameKind, payloadLength: number, metadata: unknown, fail: (field: string, msg: string) => Error): void {
  if (kind === 'credit') {
    const frames = (metadata as { frames?: unknown } | undefined)?.frames
    if (payloadLength !== 0) throw fail('payloadLength', 'must be 0 for a credit frame')
    if (typeof frames !== 'number' || !Number.isInteger(frames) || frames < 1 || frames > MAX_CREDIT_GRANT) {
      throw fail('metadata.frames', `credit must be an integer in 1..${MAX_CREDIT_GRANT}`)
    }
  } else if (kind === 'error') {
    const m = metadata as { code?: unknown, message?: unknown } | undefined
    if (payloadLength !== 0) throw fail('payloadLength', 'must be 0 for an error frame')
    if (typeof m?.code !== 'string' || m.code.length === 0 || m.code.length > 64) throw fail('metadata.code', 'must be a string of 1..64 chars')
    if (typeof m.message !== 'string' || m.message.length > 1024) throw fail('metadata.message', 'must be a string of at most 1024 chars')
  }
}

function checkU (v: unknown, max: number, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new InvalidFrameInitError(field, `must be an integer in 0..${max}, got ${String(v)}`)
  }
  return v
}

function isPlainObject (v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

function stripUndefined<T extends object> (o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
