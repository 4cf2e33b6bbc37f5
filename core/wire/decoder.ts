// Incremental frame decoder: feed it the chunks a stream delivers, in any sizes, and it yields
// whole, validated frames. Memory is bounded by the limits: the preamble is checked before the
// header is buffered, the header is fully validated before the payload buffer is allocated, and
// each payload byte is copied exactly once, from the (pooled, unaligned) chunk into a fresh buffer
// of the declared size. The payload CRC is computed as bytes arrive. `onHeader` runs after the
// header is validated and before the payload buffer exists: the place to reserve its memory from a
// budget (budget.ts) or refuse the frame by throwing.
import { crc32 } from './checksum.ts'
import { ChecksumError, TruncatedFrameError } from './errors.ts'
import { PREAMBLE_BYTES, decodeHeader, readPreamble, resolveLimits } from './header.ts'
import type { Frame, FrameHeader, WireLimits } from './header.ts'

export class FrameDecoder {
  readonly limits: WireLimits
  private readonly preamble = new Uint8Array(PREAMBLE_BYTES)
  private phase: 'preamble' | 'header' | 'payload' = 'preamble'
  private filled = 0
  private headerBuf: Uint8Array | null = null
  private header: FrameHeader | null = null
  private payload: Uint8Array | null = null
  private payloadCrc = 0
  private failed: Error | null = null

  constructor (limits?: Partial<WireLimits>, private readonly onHeader?: (header: FrameHeader) => void) {
    this.limits = resolveLimits(limits)
  }

  /** Bytes of the frame being received (0 at a boundary): what a stalled peer pins here. */
  get partialBytes (): number {
    return this.phase === 'payload' ? (this.payload?.byteLength ?? 0) : (this.headerBuf?.byteLength ?? 0)
  }

  /** True when no partial frame is buffered (a clean place for the input to end). */
  get atBoundary (): boolean {
    return this.phase === 'preamble' && this.filled === 0
  }

  /**
   * Consumes `chunk` (not retained) and returns the frames it completed. Throws a typed WireError on
   * the first bad byte; after that the decoder stays failed (the stream must be dropped, since frame
   * boundaries are lost).
   */
  push (chunk: Uint8Array): Frame[] {
    if (this.failed != null) throw this.failed
    const out: Frame[] = []
    try {
      let i = 0
      while (i < chunk.byteLength) {
        if (this.phase === 'preamble') {
          const n = Math.min(PREAMBLE_BYTES - this.filled, chunk.byteLength - i)
          this.preamble.set(chunk.subarray(i, i + n), this.filled)
          this.filled += n
          i += n
          if (this.filled === PREAMBLE_BYTES) {
            const pre = readPreamble(this.preamble, this.limits)
            this.headerBuf = new Uint8Array(pre.headerLength)
            this.headerBuf.set(this.preamble, 0)
            this.phase = 'header'
          }
        } else if (this.phase === 'header') {
          const buf = this.headerBuf as Uint8Array
          const n = Math.min(buf.byteLength - this.filled, chunk.byteLength - i)
          buf.set(chunk.subarray(i, i + n), this.filled)
          this.filled += n
          i += n
          if (this.filled === buf.byteLength) {
            this.header = decodeHeader(buf, this.limits)
            this.headerBuf = null
            this.onHeader?.(this.header)
            this.payload = new Uint8Array(this.header.payloadLength)
            this.payloadCrc = 0
            this.filled = 0
            this.phase = 'payload'
            if (this.header.payloadLength === 0) out.push(this.finishFrame())
          }
        } else {
          const buf = this.payload as Uint8Array
          const n = Math.min(buf.byteLength - this.filled, chunk.byteLength - i)
          const dst = buf.subarray(this.filled, this.filled + n)
          dst.set(chunk.subarray(i, i + n))
          this.payloadCrc = crc32(dst, this.payloadCrc)
          this.filled += n
          i += n
          if (this.filled === buf.byteLength) out.push(this.finishFrame())
        }
      }
    } catch (err) {
      this.failed = err as Error
      this.headerBuf = null
      this.payload = null
      throw err
    }
    return out
  }

  /** Call when the input ends; throws TruncatedFrameError if it ended inside a frame. */
  end (cause?: unknown): void {
    if (this.failed != null) return
    if (!this.atBoundary) {
      const where = this.phase === 'payload'
        ? `payload (${this.filled} of ${this.payload?.byteLength ?? 0} bytes)`
        : this.phase === 'header' ? `header (${this.filled} of ${this.headerBuf?.byteLength ?? 0} bytes)` : `preamble (${this.filled} of ${PREAMBLE_BYTES} bytes)`
      this.failed = new TruncatedFrameError(`input ended inside a frame's ${where}`, cause != null ? { cause } : undefined)
      this.release()
      throw this.failed
    }
  }

  /** Drops the partial frame's buffers (the input will not continue). */
  release (): void {
    this.headerBuf = null
    this.payload = null
    this.header = null
  }

  private finishFrame (): Frame {
    const header = this.header as FrameHeader
    const payload = this.payload as Uint8Array
    this.header = null
    this.payload = null
    this.filled = 0
    this.phase = 'preamble'
    if (this.payloadCrc !== header.payloadChecksum) throw new ChecksumError('payload', header.payloadChecksum, this.payloadCrc)
    return { header, payload }
  }
}
