// Deadlines and waits that always fire.
//
// Why not `AbortSignal.any([signal, AbortSignal.timeout(ms)])`: on Node 20 (measured on 20.20.2) the
// composite holds its sources weakly, and a timeout signal that nothing else references is collected
// by the next garbage collection; its timer then never aborts the composite (nodejs/node#57736, fixed
// upstream by #57867, not in Node 20). A training node collects garbage all the time, so such a
// deadline silently does not apply. `deadline()` holds its own timer and controller instead, listens
// to its parents with ordinary listeners (which keep them alive), and detaches everything on clear().
// `AbortSignal.timeout(ms)` also throws ERR_OUT_OF_RANGE for a non-integer ms; the helpers here round.
//
// Every combined deadline in the project goes through this file; test/timers-gc.test.ts proves they
// fire under forced collections and keeps `AbortSignal.any` out of the sources.

/** Largest delay setTimeout takes (2^31 - 1 ms); longer ones fire at once in Node. */
const MAX_TIMER_MS = 0x7fffffff

/** The abort reason of an expired deadline: the same shape AbortSignal.timeout uses, so `name === 'TimeoutError'` checks keep working. */
export function timeoutReason (ms: number): Error {
  return new DOMException(`The operation timed out after ${Math.round(ms)} ms`, 'TimeoutError')
}

/** A signal that aborts when its timer expires or any parent aborts; clear() when the guarded work ends. */
export interface Deadline {
  readonly signal: AbortSignal
  /** Stops the timer and detaches from the parents (idempotent). The signal keeps its state. */
  clear: () => void
}

/** A timer delay for `ms`: a whole number in 0 .. 2^31-1 (NaN and negatives: 0). */
export function timerMs (ms: number): number {
  if (!(ms > 0)) return 0
  return Math.min(MAX_TIMER_MS, Math.ceil(ms))
}

/**
 * A deadline `ms` from now, also aborted by any of `parents` (null entries are skipped). `ms` may be
 * undefined (no timer: the parents combined) or any number (rounded up; <= 0 or NaN fires on the next
 * turn of the event loop). The timer is ref'd: pending work under a deadline keeps the process alive
 * until it ends or the deadline fires, as AbortSignal.timeout's callers expect of their I/O anyway.
 */
export function deadline (ms: number | undefined, ...parents: Array<AbortSignal | null | undefined>): Deadline {
  const controller = new AbortController()
  const sources = parents.filter((s): s is AbortSignal => s != null)
  let timer: ReturnType<typeof setTimeout> | undefined
  const onAbort = function (this: AbortSignal): void { finish(this.reason) }
  const detach = (): void => {
    if (timer != null) { clearTimeout(timer); timer = undefined }
    for (const s of sources) s.removeEventListener('abort', onAbort)
  }
  const finish = (reason: unknown): void => {
    detach()
    if (!controller.signal.aborted) controller.abort(reason)
  }
  const already = sources.find(s => s.aborted)
  if (already != null) {
    controller.abort(already.reason)
  } else {
    for (const s of sources) s.addEventListener('abort', onAbort)
    if (ms != null) {
      const delay = timerMs(ms)
      timer = setTimeout(() => { timer = undefined; finish(timeoutReason(delay)) }, delay)
    }
  }
  return { signal: controller.signal, clear: detach }
}

/** Runs `fn` under a deadline (see deadline()) and clears it however `fn` ends. */
export async function withDeadline<T> (ms: number | undefined, parents: Array<AbortSignal | null | undefined>,
  fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const d = deadline(ms, ...parents)
  try {
    return await fn(d.signal)
  } finally {
    d.clear()
  }
}

/** Waits `ms` (rounded; <= 0: the next turn); rejects with the signal's reason if it aborts first. */
export async function sleep (ms: number, signal?: AbortSignal | null): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    if (signal?.aborted === true) { reject(signal.reason); return }
    const onAbort = (): void => { clearTimeout(t); reject(signal?.reason) }
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, timerMs(ms))
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Like sleep(), but resolves (never rejects) when the signal aborts; true if the full time passed. */
export async function pause (ms: number, signal?: AbortSignal | null): Promise<boolean> {
  return await sleep(ms, signal).then(() => true, () => false)
}
