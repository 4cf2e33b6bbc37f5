// Typed errors of the wire layer (frames, framed streams, request/response). One class per
// condition, each with a stable `code`. Every inbound-validation error extends `WireError`, so a
// caller can tell "the bytes on the wire were bad" from local failures; each class carries its
// verdict on the sending peer (core/errors.ts Verdict).
import { LayerswarmError } from '../errors.ts'

/** Base class of wire-layer errors (never thrown itself). */
export class WireError extends LayerswarmError {}

/** The frame does not start with the layerswarm magic bytes: not our protocol, or misaligned bytes. */
export class BadMagicError extends WireError {
  constructor (got: Uint8Array) {
    super('ERR_WIRE_MAGIC', `frame does not start with the layerswarm magic (got 0x${hex(got)})`, { verdict: 'reject' })
  }
}

/** The frame's protocol version is not one this node speaks. */
export class UnsupportedVersionError extends WireError {
  readonly version: number
  constructor (version: number, supported: number) {
    super('ERR_WIRE_VERSION', `unsupported wire version ${version} (this node speaks ${supported})`, { verdict: 'ignore' })
    this.version = version
  }
}

/** A header or payload length exceeds the receiver's limit; rejected before buffering it. */
export class FrameTooLargeError extends WireError {
  readonly what: 'header' | 'payload'
  readonly length: number
  readonly limit: number
  constructor (what: 'header' | 'payload', length: number, limit: number) {
    super('ERR_WIRE_TOO_LARGE', `${what} of ${length} bytes exceeds the limit of ${limit} bytes`, { verdict: 'reject' })
    this.what = what
    this.length = length
    this.limit = limit
  }
}

/** Input ended inside a frame (short buffer, or the peer closed/reset the stream mid-frame). */
export class TruncatedFrameError extends WireError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_WIRE_TRUNCATED', message, { ...options, verdict: 'ignore' })
  }
}

/** Bytes follow the end of a frame or header where none may be. */
export class TrailingBytesError extends WireError {
  readonly extra: number
  constructor (where: string, extra: number) {
    super('ERR_WIRE_TRAILING', `${extra} unexpected trailing bytes after ${where}`, { verdict: 'reject' })
    this.extra = extra
  }
}

/** A header field holds a value outside its domain (unknown kind or dtype, bad route entry, bad JSON, ...). */
export class WireFormatError extends WireError {
  readonly field: string
  constructor (field: string, message: string) {
    super('ERR_WIRE_FORMAT', `bad header field ${field}: ${message}`, { verdict: 'reject' })
    this.field = field
  }
}

/** The tensor shape disagrees with the payload length (raw codec) or exceeds the element limit. */
export class ShapeMismatchError extends WireError {
  constructor (message: string) {
    super('ERR_WIRE_SHAPE', message, { verdict: 'reject' })
  }
}

/** A checksum did not match: the header's own, or the payload's. */
export class ChecksumError extends WireError {
  readonly what: 'header' | 'payload'
  constructor (what: 'header' | 'payload', expected: number, actual: number) {
    super('ERR_WIRE_CHECKSUM', `${what} checksum mismatch (header says 0x${expected.toString(16).padStart(8, '0')}, ` +
      `bytes give 0x${actual.toString(16).padStart(8, '0')})`, { verdict: 'reject' })
    this.what = what
  }
}

/** A frame belongs to another run than the one this stream serves. */
export class RunMismatchError extends WireError {
  readonly expected: string
  readonly got: string
  constructor (expected: string, got: string) {
    super('ERR_WIRE_RUN', `frame is for run ${got}, expected run ${expected}`, { verdict: 'ignore' })
    this.expected = expected
    this.got = got
  }
}

/** A frame of a kind, or for a stage, that the receiver did not expect here. */
export class UnexpectedFrameError extends WireError {
  constructor (message: string) {
    super('ERR_WIRE_UNEXPECTED', message, { verdict: 'reject' })
  }
}

/** The peer sent more data frames than the credit it was granted. */
export class CreditViolationError extends WireError {
  constructor (received: number, granted: number) {
    super('ERR_WIRE_CREDIT', `peer sent data frame ${received} with only ${granted} frames of credit granted`, { verdict: 'reject' })
  }
}

/** The stream ended cleanly at a frame boundary while a frame was still expected. */
export class StreamEndedError extends WireError {
  constructor (message = 'the peer closed the stream before sending the expected frame') {
    super('ERR_WIRE_ENDED', message, { verdict: 'ignore' })
  }
}

/** The peer (or the connection under the stream) reset the stream. */
export class PeerResetError extends WireError {
  constructor (options?: { cause?: unknown }) {
    super('ERR_WIRE_RESET', 'the stream was reset by the peer or the connection closed', { ...options, verdict: 'ignore' })
  }
}

/** The peer answered with an error frame; `remoteCode` is the code it reported. */
export class RemoteError extends WireError {
  readonly remoteCode: string
  constructor (remoteCode: string, remoteMessage: string) {
    super('ERR_WIRE_REMOTE', `peer reported ${remoteCode}: ${remoteMessage}`, { verdict: 'ignore' })
    this.remoteCode = remoteCode
  }
}

/** Waiting for credit, a frame or a response took longer than the caller allowed. */
export class WireTimeoutError extends WireError {
  constructor (what: string, options?: { cause?: unknown }) {
    super('ERR_WIRE_TIMEOUT', `timed out waiting for ${what}`, { ...options, verdict: 'ignore' })
  }
}

/** A frame to send is invalid (local programming error, never the peer's fault). */
export class InvalidFrameInitError extends LayerswarmError {
  readonly field: string
  constructor (field: string, message: string) {
    super('ERR_WIRE_INVALID_INIT', `cannot encode frame: ${field} ${message}`)
    this.field = field
  }
}

/** A wire option (limits, window, chunk size) is out of range (local configuration, never the peer's fault). */
export class WireOptionError extends LayerswarmError {
  readonly option: string
  constructor (option: string, message: string) {
    super('ERR_WIRE_OPTION', `wire option ${option} ${message}`)
    this.option = option
  }
}

function hex (b: Uint8Array): string {
  return Array.from(b.subarray(0, 4), x => x.toString(16).padStart(2, '0')).join('')
}

/** The peer asked for more than its share of this node's inbound bytes in flight or open streams. */
export class PeerBudgetError extends WireError {
  readonly resource: 'bytes' | 'streams'
  constructor (resource: 'bytes' | 'streams', asked: number, used: number, limit: number) {
    super('ERR_WIRE_PEER_BUDGET', `peer's ${resource} in flight would reach ${used + asked} of its share of ${limit}`, { verdict: 'reject' })
    this.resource = resource
  }
}

/** This node's inbound bytes in flight or open streams are all taken (by honest peers, maybe): try later. */
export class NodeBudgetError extends WireError {
  readonly resource: 'bytes' | 'streams'
  constructor (resource: 'bytes' | 'streams', asked: number, used: number, limit: number) {
    super('ERR_WIRE_NODE_BUSY', `node's inbound ${resource} in flight would reach ${used + asked} of ${limit}`, { verdict: 'ignore' })
    this.resource = resource
  }
}

/** The peer sent frames or bytes faster than its rate limit allows (a flood). */
export class RateLimitError extends WireError {
  constructor (what: 'frames' | 'bytes') {
    super('ERR_WIRE_RATE', `peer exceeded its inbound ${what} rate limit`, { verdict: 'reject' })
  }
}

/** The peer's streams are refused for a while after repeated rate-limit violations (it was judged for those already). */
export class PeerBlockedError extends WireError {
  constructor (ms: number) {
    super('ERR_WIRE_BLOCKED', `peer is blocked for another ${Math.ceil(ms / 1000)} s after flooding this node`, { verdict: 'ignore' })
  }
}

/** No bytes moved on a stream for the idle limit while a frame was half received or half sent (slow loris). */
export class StreamIdleError extends WireError {
  constructor (where: 'receiving' | 'sending', ms: number) {
    super('ERR_WIRE_IDLE', `no progress for ${ms} ms while ${where} a frame`, { verdict: 'ignore' })
  }
}
