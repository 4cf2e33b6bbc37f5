// The options, statistics, waiters and abort helper of framed streams (framed-stream.ts), apart so
// the stream itself stays readable.
import { AbortError } from '../errors.ts'
import { WireTimeoutError } from './errors.ts'
import type { WireLimits } from './header.ts'
import type { WireBudget } from './budget.ts'
import type { Logger } from '../contracts/logger.ts'

export type FlowControl = 'credit' | 'none'

export interface FramedStreamInit {
  /** The run this stream serves: stamped on control frames; inbound frames of another run are refused. */
  readonly runId: string
  readonly limits?: Partial<WireLimits>
  /** Both ends of a protocol must use the same mode. Default 'credit'. */
  readonly flowControl?: FlowControl
  /** Most unread inbound frames (the credit window). Default 4. Memory bound: window x maxPayloadBytes. */
  readonly window?: number
  /** Bytes per stream.send() when writing a payload. Default 1 MiB. */
  readonly chunkBytes?: number
  readonly log?: Logger
  /** The node's inbound budget and rate limits; with `peer`, every inbound frame is charged to them. */
  readonly budget?: WireBudget
  /** The remote peer (its id), whom the budget charges. */
  readonly peer?: string
  /** Fail the stream when a frame is half received or half sent and no bytes move for this long (ms). Default: the budget's idleMs, or none. */
  readonly idleMs?: number
}

export interface AbortOptions {
  readonly signal?: AbortSignal
}

export interface FramedStreamStats {
  /** Data frames sent (those that consume credit). */
  framesSent: number
  /** Data frames received (decoded and accepted). */
  framesReceived: number
  /** Data frames handed to the application by read(). */
  framesRead: number
  bytesSent: number
  bytesReceived: number
  /** Credit this end granted the peer, INITIAL_CREDIT included. */
  creditGranted: number
  /** Credit the peer granted this end, INITIAL_CREDIT included. */
  creditReceived: number
  /** Highest number of unread frames queued here. */
  maxQueued: number
}

/** The typed error for an aborted signal: WireTimeoutError for timeouts, AbortError otherwise. */
export function signalError (signal: AbortSignal, what: string): Error {
  const reason = signal.reason as { name?: string } | undefined
  if (reason instanceof WireTimeoutError) return reason
  if (reason?.name === 'TimeoutError') return new WireTimeoutError(what, { cause: reason })
  return reason instanceof AbortError ? reason : new AbortError(`aborted while waiting for ${what}`)
}

/** One pending read() or credit wait. */
export interface Waiter<T> {
  resolve: (value: T) => void
  reject: (e: Error) => void
}

/** Queues a waiter on `list` until it is resolved or rejected, or `signal` aborts (it then leaves the queue). */
export async function enqueueWaiter<T> (list: Array<Waiter<T>>, signal: AbortSignal | undefined, what: string): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      const i = list.indexOf(entry)
      if (i >= 0) list.splice(i, 1)
      reject(signalError(signal as AbortSignal, what))
    }
    const entry: Waiter<T> = {
      resolve: (v: T) => { signal?.removeEventListener('abort', onAbort); resolve(v) },
      reject: (e: Error) => { signal?.removeEventListener('abort', onAbort); reject(e) }
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    list.push(entry)
  })
}
