// Forced garbage collections for deadline tests. `--expose-gc` set at run time still yields a `gc`
// function in a new VM context, so no test runner flag is needed.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

setFlagsFromString('--expose-gc')
/** A full, synchronous garbage collection. */
export const gc = runInNewContext('gc') as () => void

/** Collects every `ms` until the returned function is called. */
export function collectEvery (ms = 20): () => void {
  const t = setInterval(() => { gc() }, ms)
  return () => { clearInterval(t) }
}

/** Runs `fn` while collecting every `ms`; resolves with its value and how long it took (ms). */
export async function underGc<T> (fn: () => Promise<T>, ms = 20): Promise<{ value: T, ms: number }> {
  const stop = collectEvery(ms)
  const t0 = performance.now()
  try {
    const value = await fn()
    return { value, ms: performance.now() - t0 }
  } finally {
    stop()
  }
}

/** Like underGc, for work expected to reject: the error and the time it took. */
export async function rejectsUnderGc (fn: () => Promise<unknown>, ms = 20): Promise<{ error: Error, ms: number }> {
  const r = await underGc(async () => await fn().then(() => { throw new Error('expected a rejection, it resolved') }, (err: Error) => err), ms)
  return { error: r.value, ms: r.ms }
}
