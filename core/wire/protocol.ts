// Protocol helpers over FramedStream: register a handler that never leaks a bare stream reset
// (errors are logged, reported to the peer as an error frame and handed to `onError`, the seam for
// peer penalties), open a framed stream, and one request/response exchange with a deadline.
// Where the libp2p carries a node's budget (budget.ts: attachWireBudget), every inbound stream takes
// a stream slot of its peer's share (held until the stream closes) and every frame, inbound or in
// answer to our own streams, is charged to the budget and the peer's rate limits.
import { silentLogger } from '../logger.ts'
import { LayerswarmError } from '../errors.ts'
import { deadline } from '../timers.ts'
import { RemoteError, StreamEndedError } from './errors.ts'
import { FramedStream } from './framed-stream.ts'
import { signalError } from './stream-options.ts'
import { wireBudgetOf } from './budget.ts'
import type { FramedStreamInit } from './stream-options.ts'
import type { Frame, FrameInit } from './header.ts'
import type { Connection, Libp2p, StreamHandlerOptions } from '@libp2p/interface'

export type FramedRegistrar = Pick<Libp2p, 'handle'>
export type FramedDialer = Pick<Libp2p, 'dialProtocol'>
export type DialTarget = Parameters<Libp2p['dialProtocol']>[0]

/** Runs once per inbound stream. Resolve when done (the stream is then closed gracefully); throw to fail it. */
export type FramedHandler = (stream: FramedStream, connection: Connection, signal: AbortSignal) => Promise<void>

export interface FramedHandlerOptions extends FramedStreamInit {
  /** Deadline for one handler run (ms); the handler's signal aborts with a timeout then. Default: none. */
  readonly timeoutMs?: number
  /** Called with the error a handler run ended with and the remote peer id (penalty hook). */
  readonly onError?: (err: Error, peerId: string) => void
  /**
   * Runs before the handler, with the handler's signal: throws when the peer may not use the protocol
   * (admission with --chain: PeerJudge.admit). Its error takes the onError path like a handler's.
   */
  readonly admit?: (peer: string, signal: AbortSignal) => Promise<void>
  /** Passed to libp2p's handle(): maxInboundStreams, maxOutboundStreams, ... */
  readonly streamOptions?: StreamHandlerOptions
}

/** Registers `handler` for `protocol`, wrapping each run as described above. */
export async function handleFramed (registrar: FramedRegistrar, protocol: string, handler: FramedHandler, options: FramedHandlerOptions): Promise<void> {
  const log = (options.log ?? silentLogger).forComponent('layerswarm:wire:handler')
  const budget = options.budget ?? wireBudgetOf(registrar)
  await registrar.handle(protocol, async (stream, connection) => {
    const peer = connection.remotePeer.toString()
    let fs: FramedStream
    try {
      // a refused slot costs the node nothing more: no wrapper, no handler, the stream reset
      const slot = budget?.openStream(peer)
      if (slot != null) {
        if (stream.status === 'open') stream.addEventListener('close', () => { slot.release() }, { once: true })
        else slot.release()
      }
    } catch (err) {
      log.debug('stream refused', { protocol, peer, code: (err as { code?: string }).code, error: (err as Error).message })
      try { options.onError?.(err as Error, peer) } catch {}
      stream.abort(err as Error)
      dropIfBlocked(connection, peer, err as Error)
      return
    }
    try {
      fs = new FramedStream(stream, { ...options, budget, peer })
    } catch (err) {
      log.error('cannot wrap stream', { protocol, peer, error: (err as Error).message })
      stream.abort(err as Error)
      return
    }
    const guard = deadline(options.timeoutMs)
    const signal = guard.signal
    try {
      if (options.admit != null) await options.admit(peer, signal)
      await handler(fs, connection, signal)
      // The handler may have returned after the stream failed under it (bad bytes, credit overrun):
      // that still counts against the peer.
      if (fs.error != null) throw fs.error
      await fs.close({ signal })
    } catch (err) {
      const e = mapAbort(err, signal, 'the handler to finish')
      log.warn('handler failed', { protocol, peer, code: (e as { code?: string }).code ?? 'unknown', error: e.message })
      try {
        options.onError?.(e, peer)
      } catch (hookErr) {
        log.error('onError hook threw', { error: (hookErr as Error).message })
      }
      fs.abort(e)
      dropIfBlocked(connection, peer, e)
    } finally {
      guard.clear()
    }
  }, options.streamOptions)

  /** A peer blocked for flooding loses its connection: what it still has in flight is never decrypted. */
  function dropIfBlocked (connection: Connection, peer: string, err: Error): void {
    if (budget == null || budget.rates.blockedFor(peer) <= 0 || connection.status !== 'open') return
    log.info('closing the connection of a peer blocked for flooding', { protocol, peer, code: (err as { code?: string }).code })
    connection.abort(err)
  }
}

export interface OpenFramedOptions extends FramedStreamInit {
  readonly signal?: AbortSignal
}

/** Dials `protocol` on `peer` and wraps the stream. The caller closes or aborts it. */
export async function openFramed (dialer: FramedDialer, peer: DialTarget, protocol: string, options: OpenFramedOptions): Promise<FramedStream> {
  let stream
  try {
    stream = await dialer.dialProtocol(peer, protocol, { signal: options.signal })
  } catch (err) {
    throw mapAbort(err, options.signal, `a ${protocol} stream to open`)
  }
  const budget = options.budget ?? wireBudgetOf(dialer)
  return new FramedStream(stream, { ...options, budget, peer: options.peer ?? String(peer) })
}

export interface RequestOptions extends OpenFramedOptions {
  /** Deadline for the whole exchange (dial, send, response), ms. */
  readonly timeoutMs?: number
}

/**
 * One request/response exchange: open a stream, send `request`, await one frame, close. An error
 * frame from the peer becomes RemoteError; a clean close without answer StreamEndedError; the
 * deadline WireTimeoutError.
 */
export async function requestFrame (dialer: FramedDialer, peer: DialTarget, protocol: string,
  request: Omit<FrameInit, 'runId'>, payload: Uint8Array | undefined, options: RequestOptions): Promise<Frame> {
  const guard = deadline(options.timeoutMs, options.signal)
  const signal = guard.signal
  try {
    const fs = await openFramed(dialer, peer, protocol, { ...options, signal })
    try {
      await fs.send(request, payload, { signal })
      const response = await fs.read({ signal })
      if (response == null) throw new StreamEndedError('the peer closed the stream without a response')
      await fs.close({ signal })
      return response
    } catch (err) {
      const e = mapAbort(err, signal, 'a response')
      if (!(e instanceof RemoteError)) fs.abort(e)
      throw e
    }
  } finally {
    guard.clear()
  }
}

/** A typed error stands; anything else that happened because `signal` fired becomes its typed form. */
function mapAbort (err: unknown, signal: AbortSignal | undefined, what: string): Error {
  if (err instanceof LayerswarmError && err.code !== 'ERR_ABORTED') return err
  if (signal?.aborted === true) return signalError(signal, what)
  return err instanceof Error ? err : new Error(String(err))
}
