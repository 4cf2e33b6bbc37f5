// What the backend compliance suite's groups of tests share (compliance.ts registers them): the
// suite's options, the backend under test (made in the suite's before(), so read it inside a test),
// tensor helpers whose tensors are freed after each test, and the ShapeError checks, whose failure
// says what was thrown instead.
import assert from 'node:assert/strict'
import type { ComputeBackend, Tensor } from '../contracts/index.ts'

export interface ComplianceOptions {
  /** Relative tolerance against the float64 reference: |a - r| <= tol * (1 + |r|). Default 1e-4. */
  tolerance?: number
  /** PRNG seed for inputs (default 1234). */
  seed?: number
  /** Skip the larger shapes (for slow backends under development). */
  skipLarge?: boolean
  /**
   * For backends whose matmuls round operands below f32 (e.g. f16 with f32 accumulation): matmul
   * outputs are checked as |a - r| <= matmulTolerance * (1 + sum_k |x_k w_k|), the error bound of a
   * dot product of rounded operands, instead of `tolerance`. Default: none (matmuls use `tolerance`).
   */
  matmulTolerance?: number
  /**
   * Check that kernels leave the event loop free (default true). Only a backend that computes on the
   * caller's thread by design (the CPU backend's inline mode, a reference) turns it off: such a
   * backend stalls a node's networking for as long as each kernel runs.
   */
  eventLoop?: boolean
}

export interface SuiteContext {
  readonly opts: ComplianceOptions
  /** Relative tolerance (opts.tolerance or its default). */
  readonly tol: number
  readonly seed: number
  /** The backend under test; set before the first test runs. */
  readonly be: ComputeBackend
  /** A tensor with a copy of `data`, freed after the test. */
  up: (data: Float32Array | Int32Array, shape: number[]) => Tensor
  /** A zero-filled tensor, freed after the test. */
  zeros: (shape: number[], dtype?: 'f32' | 'i32') => Tensor
  get: (t: Tensor) => Promise<Float32Array>
  /** Awaits `fn` and fails unless it rejected with a ShapeError. */
  rejectsShape: (fn: () => Promise<unknown>, what: string) => Promise<void>
  /** Calls `fn` and fails unless it threw a ShapeError. */
  throwsShape: (fn: () => unknown, what: string) => void
}

/** The context of one registration of the suite: call `setUp` in before(), `freeLive` after each test. */
export function suiteContext (opts: ComplianceOptions): SuiteContext & { setUp: (be: ComputeBackend) => void, freeLive: () => void, backend: () => ComputeBackend | undefined } {
  let be: ComputeBackend | undefined
  let live: Tensor[] = []
  const the = (): ComputeBackend => {
    if (be === undefined) throw new Error('compliance suite: the backend factory has not run (or failed)')
    return be
  }
  return {
    opts,
    tol: opts.tolerance ?? 1e-4,
    seed: opts.seed ?? 1234,
    get be () { return the() },
    up: (data, shape) => { const t = the().upload(data, shape); live.push(t); return t },
    zeros: (shape, dtype = 'f32') => { const t = the().alloc(shape, dtype); live.push(t); return t },
    get: async t => await the().download(t) as Float32Array,
    rejectsShape: async (fn, what) => {
      let outcome: { thrown: unknown } | undefined
      try { await fn() } catch (err) { outcome = { thrown: err } }
      expectShapeError(outcome, what)
    },
    throwsShape: (fn, what) => {
      let outcome: { thrown: unknown } | undefined
      try { fn() } catch (err) { outcome = { thrown: err } }
      expectShapeError(outcome, what)
    },
    setUp: b => { be = b },
    freeLive: () => { for (const t of live) be?.free(t); live = [] },
    backend: () => be
  }
}

const isShapeError = (err: unknown): boolean => (err as { code?: unknown })?.code === 'ERR_SHAPE'

/** Fails unless `outcome` holds a ShapeError; the message says what happened instead (nothing thrown, or which error). */
export function expectShapeError (outcome: { thrown: unknown } | undefined, what: string): void {
  if (outcome == null) assert.fail(`${what}: expected ShapeError (code ERR_SHAPE), but nothing was thrown`)
  const err = outcome.thrown as { name?: unknown, code?: unknown, message?: unknown } | undefined
  if (isShapeError(err)) return
  const code = (err as { code?: unknown } | undefined)?.code
  const desc = err instanceof Error ? `${err.name}${code != null ? ` (code ${String(code)})` : ''}: ${err.message}` : `a non-Error value ${String(err)}`
  assert.fail(`${what}: expected ShapeError (code ERR_SHAPE), got ${desc}`)
}
