// Frames over one libp2p v3 stream, both directions, with application-level credit flow control.
//
// Reading: a 'message' listener is attached in the constructor (a stream that is not read at once
// gets aborted by libp2p once 4 MiB pile up) and every chunk goes through FrameDecoder, which
// bounds memory and copies payloads into aligned buffers. Never pause(): it lost data in tests.
//
// Flow control (mode 'credit', the default): each end starts with INITIAL_CREDIT frames of credit
// toward the other, implied by the protocol, and at once grants `window - INITIAL_CREDIT` more with a
// credit frame. A sender waits for credit before each data frame; the receiver grants more as the
// application reads, so at most `window` unread frames ever sit in the receiver's queue. A peer
// that sends past its credit gets CreditViolationError. Credit and error frames need no credit.
// Mode 'none' sends no credit frames; the receiver still refuses more than `window` unread frames.
//
// Writing: header, then the payload in `chunkBytes` slices; when stream.send() returns false the
// writer awaits stream.onDrain(). One frame is written at a time (a lock), so credit grants and
// error reports never land inside another frame's bytes.
//
// Budget (budget.ts, optional): each inbound frame's payload length is reserved from the node's
// and the peer's budgets (and its rate tokens taken) when its header arrives, before its buffer is
// allocated, and released when the application reads the frame or the stream fails. A frame cut
// off by a clean close aborts the stream and drops its buffer at once; with `idleMs`, a frame half
// received or half sent with no bytes moving for that long fails the stream (slow loris).
import { LayerswarmError } from '../errors.ts'
import { silentLogger } from '../logger.ts'
import { FrameDecoder } from './decoder.ts'
import { IdleWatch } from './idle-watch.ts'
import {
  CreditViolationError, PeerResetError, RemoteError, RunMismatchError, StreamEndedError, UnexpectedFrameError,
  StreamIdleError, WireOptionError
} from './errors.ts'
import { creditOf, encodeHeader, errorOf, isCreditExempt, resolveLimits } from './header.ts'
import type { Frame, FrameHeader, FrameInit, WireLimits } from './header.ts'
import type { Reservation } from './budget.ts'
import { enqueueWaiter, signalError, type AbortOptions, type FlowControl, type FramedStreamInit, type FramedStreamStats, type Waiter } from './stream-options.ts'
import type { Logger } from '../contracts/logger.ts'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

/** Credit each end holds toward the other when a stream opens, before any credit frame. */
export const INITIAL_CREDIT = 1
export const DEFAULT_WINDOW = 4
export const DEFAULT_CHUNK_BYTES = 1024 * 1024
const EMPTY = new Uint8Array(0)
const NO_RESERVATION: Reservation = { amount: 0, release: () => {} }

export class FramedStream {
  readonly stream: Stream
  readonly runId: string
  readonly limits: WireLimits
  readonly flowControl: FlowControl
  readonly window: number
  readonly stats: FramedStreamStats
  private readonly chunkBytes: number
  private readonly log: Logger
  private readonly decoder: FrameDecoder
  private readonly queue: Frame[] = []
  /** Budget reservations of the frames in `queue` (same order) and of the frame being received. */
  private readonly held: Reservation[] = []
  private receiving: Reservation | null = null
  private readonly idle: IdleWatch | undefined
  private draining = false
  private readonly readers: Array<Waiter<Frame | null>> = []
  private readonly creditWaiters: Array<Waiter<void>> = []
  private credit: number
  private unacked = 0
  private ended = false
  private failure: Error | null = null
  private writeTail: Promise<void> = Promise.resolve()
  private writing = false
  private readonly listeners: Array<[string, (evt: any) => void]>

  constructor (stream: Stream, init: FramedStreamInit) {
    this.stream = stream
    this.runId = init.runId
    this.limits = resolveLimits(init.limits)
    this.flowControl = init.flowControl ?? 'credit'
    this.window = init.window ?? DEFAULT_WINDOW
    if (!Number.isSafeInteger(this.window) || this.window < 1 || this.window > 1 << 20) throw new WireOptionError('window', `must be an integer in 1..2^20, got ${this.window}`)
    this.chunkBytes = init.chunkBytes ?? DEFAULT_CHUNK_BYTES
    if (!Number.isSafeInteger(this.chunkBytes) || this.chunkBytes < 1) throw new WireOptionError('chunkBytes', `must be a positive integer, got ${this.chunkBytes}`)
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:wire')
    const budget = init.budget
    const peer = init.peer
    this.decoder = new FrameDecoder(this.limits, budget == null || peer == null
      ? undefined
      : (h: FrameHeader) => { this.receiving = budget.admitFrame(peer, h.payloadLength) })
    const idleMs = init.idleMs ?? budget?.options.idleMs
    if (idleMs != null && (!Number.isSafeInteger(idleMs) || idleMs < 1)) throw new WireOptionError('idleMs', `must be a positive integer, got ${idleMs}`)
    this.idle = idleMs == null
      ? undefined
      : new IdleWatch(idleMs, () => this.failure != null ? null : !this.decoder.atBoundary ? 'receiving' : this.draining ? 'sending' : null, where => {
        this.log.debug('stream idle mid-frame', { stream: this.stream.id, protocol: this.stream.protocol, where, partialBytes: this.decoder.partialBytes })
        this.fail(new StreamIdleError(where, idleMs), true)
      })
    this.credit = this.flowControl === 'credit' ? INITIAL_CREDIT : Infinity
    this.stats = {
      framesSent: 0,
      framesReceived: 0,
      framesRead: 0,
      bytesSent: 0,
      bytesReceived: 0,
      creditGranted: this.flowControl === 'credit' ? INITIAL_CREDIT : 0,
      creditReceived: this.flowControl === 'credit' ? INITIAL_CREDIT : 0,
      maxQueued: 0
    }
    // Read at once: listeners go on before anything else can run.
    this.listeners = [
      ['message', (evt: StreamMessageEvent) => { this.onMessage(evt) }],
      ['end', () => { this.onEnd() }],
      ['close', (evt: StreamCloseEvent) => { this.onClose(evt) }]
    ]
    for (const [name, fn] of this.listeners) stream.addEventListener(name as 'message', fn)
    if (this.flowControl === 'credit' && this.window > INITIAL_CREDIT) this.grant(this.window - INITIAL_CREDIT)
  }

  /** The error that ended this stream, if any. */
  get error (): Error | null {
    return this.failure
  }

  // ---- sending -------------------------------------------------------------------------------

  /**
   * Sends one frame; waits for credit first (data frames in credit mode), then for the transport to
   * drain. The payload may still be referenced by lower layers after this resolves: do not modify
   * it afterwards (pass a copy to reuse a buffer).
   */
  async send (init: Omit<FrameInit, 'runId'> & { runId?: string }, payload: Uint8Array = EMPTY, options?: AbortOptions): Promise<void> {
    this.throwIfFailed()
    const header = encodeHeader({ ...init, runId: init.runId ?? this.runId }, payload, this.limits)
    const consumes = !isCreditExempt(init.kind)
    if (consumes && this.flowControl === 'credit') await this.acquireCredit(options?.signal)
    await this.withWriteLock(async () => {
      this.throwIfFailed()
      await this.writeFrame(header, payload, options?.signal)
      if (consumes) this.stats.framesSent++
      this.stats.bytesSent += header.byteLength + payload.byteLength
    })
  }

  /** Closes this end for writing after queued frames are written; the peer may still send. */
  async closeWrite (options?: AbortOptions): Promise<void> {
    await this.withWriteLock(async () => {
      if (this.stream.writeStatus === 'writable') await this.stream.close({ signal: options?.signal })
    })
  }

  /** Graceful close of this end (same as closeWrite; reading continues until the peer closes). */
  async close (options?: AbortOptions): Promise<void> {
    await this.closeWrite(options)
  }

  /**
   * Ends the stream with `err`: tells the peer with an error frame where possible (code and message
   * of a LayerswarmError; a generic message otherwise, so internals do not leak), then aborts.
   */
  abort (err: Error): void {
    this.fail(err, true)
  }

  // ---- receiving -----------------------------------------------------------------------------

  /** Next data frame, or null when the peer closed cleanly at a frame boundary. */
  async read (options?: AbortOptions): Promise<Frame | null> {
    if (this.queue.length > 0) return this.take()
    if (this.failure != null) throw this.failure
    if (this.ended) return null
    const signal = options?.signal
    if (signal?.aborted === true) throw signalError(signal, 'a frame')
    return await enqueueWaiter(this.readers, signal, 'a frame')
  }

  /** Like read(), but a clean end is an error (StreamEndedError): for when a frame must come. */
  async expect (options?: AbortOptions): Promise<Frame> {
    const f = await this.read(options)
    if (f == null) throw new StreamEndedError()
    return f
  }

  async * [Symbol.asyncIterator] (): AsyncGenerator<Frame> {
    for (;;) {
      const f = await this.read()
      if (f == null) return
      yield f
    }
  }

  // ---- internals -----------------------------------------------------------------------------

  private onMessage (evt: StreamMessageEvent): void {
    if (this.failure != null) return
    const data = evt.data
    this.idle?.progress()
    try {
      if (data instanceof Uint8Array) {
        this.stats.bytesReceived += data.byteLength
        for (const f of this.decoder.push(data)) this.onFrame(f)
      } else {
        for (const buf of data) {
          this.stats.bytesReceived += buf.byteLength
          for (const f of this.decoder.push(buf)) this.onFrame(f)
          if (this.failure != null) return
        }
      }
    } catch (err) {
      this.log.debug('bad inbound bytes', { stream: this.stream.id, protocol: this.stream.protocol, code: (err as LayerswarmError).code, error: (err as Error).message })
      this.fail(err as Error, true)
      return
    }
    if (!this.decoder.atBoundary) this.idle?.arm()
  }

  private onFrame (frame: Frame): void {
    const reservation = this.receiving
    this.receiving = null
    if (this.failure != null) { reservation?.release(); return }
    const h = frame.header
    if (h.runId !== this.runId) throw new RunMismatchError(this.runId, h.runId)
    if (h.kind === 'credit') {
      if (this.flowControl !== 'credit') throw new UnexpectedFrameError('credit frame on a stream without credit flow control')
      const n = creditOf(h)
      this.stats.creditReceived += n
      this.credit += n
      this.wakeCreditWaiters()
      return
    }
    if (h.kind === 'error') {
      const { code, message } = errorOf(h)
      const remote = new RemoteError(code, message)
      this.fail(remote, false)
      this.stream.abort(remote)
      return
    }
    this.stats.framesReceived++
    if (this.flowControl === 'credit') {
      if (this.stats.framesReceived > this.stats.creditGranted) throw new CreditViolationError(this.stats.framesReceived, this.stats.creditGranted)
    } else if (this.queue.length >= this.window) {
      throw new CreditViolationError(this.stats.framesRead + this.queue.length + 1, this.stats.framesRead + this.window)
    }
    const reader = this.readers.shift()
    if (reader != null) {
      reservation?.release()
      this.consumed()
      reader.resolve(frame)
    } else {
      this.queue.push(frame)
      this.held.push(reservation ?? NO_RESERVATION)
      if (this.queue.length > this.stats.maxQueued) this.stats.maxQueued = this.queue.length
    }
  }

  private onEnd (): void {
    if (this.failure != null || this.ended) return
    const status = this.stream.status
    if (status === 'reset' || status === 'aborted') {
      this.onBroken()
      return
    }
    try {
      this.decoder.end()
    } catch (err) {
      // a frame cut off by a clean close: drop it now and end the stream (nothing more can come)
      this.fail(err as Error, true)
      return
    }
    this.ended = true
    for (const r of this.readers.splice(0)) r.resolve(null)
    // The peer closed its end: no credit frame can come any more.
    if (this.credit === 0) {
      for (const w of this.creditWaiters.splice(0)) w.reject(new StreamEndedError('the peer closed its end of the stream; no more credit will come'))
    }
  }

  private onClose (evt: StreamCloseEvent): void {
    for (const [name, fn] of this.listeners) this.stream.removeEventListener(name as 'message', fn)
    this.idle?.clear()
    try {
      if (this.failure != null) return
      if (evt.error != null) {
        this.onBroken(evt.error)
      } else if (!this.ended) {
        this.onEnd()
      }
      // Writers waiting for credit can never be served now.
      if (this.failure == null) {
        const err = new PeerResetError()
        for (const w of this.creditWaiters.splice(0)) w.reject(err)
      }
    } finally {
      // the stream is gone: frames still queued are the application's now, off the budget
      this.releaseAll()
    }
  }

  /** Reset by the peer, or aborted under us (connection closed, libp2p buffer limits). */
  private onBroken (cause?: Error): void {
    if (this.decoder.atBoundary) {
      this.fail(new PeerResetError(cause != null ? { cause } : undefined), false)
    } else {
      try {
        this.decoder.end(cause ?? new PeerResetError())
      } catch (err) {
        this.fail(err as Error, false)
      }
    }
  }

  private take (): Frame {
    const f = this.queue.shift() as Frame
    this.held.shift()?.release()
    this.consumed()
    return f
  }

  private consumed (): void {
    this.stats.framesRead++
    if (this.flowControl !== 'credit') return
    this.unacked++
    // Replenish in batches of half a window: fewer credit frames, and the peer never stalls.
    if (this.unacked >= Math.max(1, Math.floor(this.window / 2))) {
      const n = this.unacked
      this.unacked = 0
      this.grant(n)
    }
  }

  private grant (n: number): void {
    if (this.failure != null || this.stream.writeStatus !== 'writable') return
    this.stats.creditGranted += n
    const header = encodeHeader({ kind: 'credit', runId: this.runId, metadata: { frames: n } }, EMPTY, this.limits)
    this.withWriteLock(async () => {
      if (this.failure != null || this.stream.writeStatus !== 'writable') return
      await this.writeFrame(header, EMPTY)
    }).catch(err => { this.log.debug('credit grant not sent', { error: (err as Error).message }) })
  }

  private async acquireCredit (signal?: AbortSignal): Promise<void> {
    if (this.credit > 0 && this.creditWaiters.length === 0) {
      this.credit--
      return
    }
    if (this.ended) throw new StreamEndedError('the peer closed its end of the stream; no more credit will come')
    if (signal?.aborted === true) throw signalError(signal, 'flow-control credit')
    await enqueueWaiter(this.creditWaiters, signal, 'flow-control credit')
  }

  private wakeCreditWaiters (): void {
    while (this.credit > 0 && this.creditWaiters.length > 0) {
      this.credit--
      ;(this.creditWaiters.shift() as { resolve: () => void }).resolve()
    }
  }

  private async withWriteLock (fn: () => Promise<void>): Promise<void> {
    const prev = this.writeTail
    let release!: () => void
    this.writeTail = new Promise<void>(resolve => { release = resolve })
    try {
      await prev
      this.writing = true
      await fn()
    } finally {
      this.writing = false
      release()
    }
  }

  private async writeFrame (header: Uint8Array, payload: Uint8Array, signal?: AbortSignal): Promise<void> {
    try {
      let ok = this.stream.send(header)
      for (let o = 0; o < payload.byteLength; o += this.chunkBytes) {
        if (!ok) await this.drain(signal)
        ok = this.stream.send(payload.subarray(o, Math.min(o + this.chunkBytes, payload.byteLength)))
      }
      if (!ok) await this.drain(signal)
    } catch (err) {
      if (signal?.aborted === true) throw signalError(signal, 'the transport to drain')
      throw this.failure ?? new PeerResetError({ cause: err })
    }
  }

  /** Waits for the transport to drain; the idle limit applies (a peer that stops reading). */
  private async drain (signal?: AbortSignal): Promise<void> {
    this.idle?.progress()
    this.draining = true
    this.idle?.arm()
    try {
      await this.stream.onDrain({ signal })
    } finally {
      this.draining = false
      this.idle?.progress()
    }
  }

  /** Returns every budget reservation this stream holds (it ended: nothing queued will be read). */
  private releaseAll (): void {
    this.receiving?.release()
    this.receiving = null
    for (const r of this.held.splice(0)) r.release()
    this.decoder.release()
  }

  private throwIfFailed (): void {
    if (this.failure != null) throw this.failure
  }

  /**
   * Records the first failure, wakes every waiter with it and, when `abortStream`, reports it to the
   * peer (an error frame, if no other frame is mid-write) and aborts the stream.
   */
  private fail (err: Error, abortStream: boolean): void {
    if (this.failure != null) {
      // failed quietly before (the peer's close or reset): a local abort still ends our side
      if (abortStream && (this.stream.status === 'open' || this.stream.status === 'closing')) this.stream.abort(err)
      return
    }
    this.failure = err
    this.idle?.clear()
    // frames already received stay readable; only the partial frame's memory goes now
    this.receiving?.release()
    this.receiving = null
    this.decoder.release()
    for (const r of this.readers.splice(0)) r.reject(err)
    for (const w of this.creditWaiters.splice(0)) w.reject(err)
    if (!abortStream) return
    if (!this.writing && this.stream.writeStatus === 'writable' && !(err instanceof RemoteError)) {
      try {
        const known = err instanceof LayerswarmError
        const metadata = {
          code: known ? err.code : 'ERR_INTERNAL',
          message: known ? err.message.slice(0, 1024) : 'internal error in the protocol handler'
        }
        this.stream.send(encodeHeader({ kind: 'error', runId: this.runId, metadata }, EMPTY, this.limits))
      } catch (sendErr) {
        this.log.debug('error frame not sent', { error: (sendErr as Error).message })
      }
    }
    this.stream.abort(err)
  }
}
