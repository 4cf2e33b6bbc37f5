// The one way tests wait for something to happen (docs/testing.md): poll the actual condition under
// a deadline, never sleep a fixed time and hope. On timeout the error names what was awaited and the
// last state seen, so a failure in a soak run says where it stood.
import { inspect } from 'node:util'

export interface WaitOptions {
  /** What is awaited, for the error message: "every node to see 3 peers". */
  what: string
  /** Fails after this long (default 20 s). */
  timeoutMs?: number
  /** Pause between checks (default 50 ms). */
  intervalMs?: number
  /**
   * The state to report on timeout, read once the deadline passed. Default: the condition's last
   * result, or the error its last call threw.
   */
  state?: () => unknown
  /**
   * An error thrown by the condition fails the wait at once (a node died, an invariant broke: more
   * polling cannot help). Default false: the error is retried and reported as the last state.
   */
  failOnError?: boolean
}

export class WaitTimeoutError extends Error {
  override name = 'WaitTimeoutError'
}

type Falsy = undefined | null | false
const LATE: unique symbol = Symbol('late')

/**
 * Polls `condition` until it returns a value other than undefined, null or false, and returns that
 * value. A condition that throws is retried (its error is the last observed state) unless
 * `failOnError`. One slow call of the condition cannot carry the wait past its deadline.
 */
export async function waitFor<T> (condition: () => T | Falsy | Promise<T | Falsy>, opts: WaitOptions): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 20_000
  const intervalMs = opts.intervalMs ?? 50
  const deadline = Date.now() + timeoutMs
  let last: { value: unknown } | { error: unknown } | undefined
  let checks = 0
  while (true) {
    const left = deadline - Date.now()
    if (left <= 0) break
    let timer: NodeJS.Timeout | undefined
    try {
      checks++
      const late = new Promise<typeof LATE>(resolve => { timer = setTimeout(() => { resolve(LATE) }, left) })
      const v = await Promise.race([Promise.resolve(condition()), late])
      if (v === LATE) { last = { error: new Error(`the last check was still running at the deadline (${left} ms)`) }; break }
      if (v !== undefined && v !== null && v !== false) return v as T
      last = { value: v }
    } catch (err) {
      if (opts.failOnError === true) throw err
      last = { error: err }
    } finally {
      clearTimeout(timer)
    }
    await new Promise(resolve => setTimeout(resolve, Math.min(intervalMs, Math.max(0, deadline - Date.now()))))
  }
  let state: string
  if (opts.state !== undefined) {
    try { state = describe(opts.state()) } catch (err) { state = `(state() threw: ${describe(err)})` }
  } else if (last === undefined) {
    state = '(never checked)'
  } else {
    state = 'error' in last ? `threw ${describe(last.error)}` : describe(last.value)
  }
  throw new WaitTimeoutError(`timed out after ${timeoutMs} ms (${checks} checks) waiting for ${opts.what}; last observed: ${state}`)
}

function describe (x: unknown): string {
  if (x instanceof Error) return `${x.name}: ${x.message}`
  if (typeof x === 'string') return x
  return inspect(x, { depth: 4, breakLength: Infinity, maxArrayLength: 20, maxStringLength: 500 })
}
