// Helpers for the compliance suite: a seeded PRNG, random tensors, tolerant comparison, and central
// finite differences in float64 (to check the float64 reference backward kernels).
import assert from 'node:assert/strict'
import { mulberry32 } from '../model/prng.ts'

/** mulberry32: small, fast, seeded, so a failing case reproduces from its seed. */
export const rng: (seed: number) => () => number = mulberry32

/** Uniform in [offset - scale, offset + scale), rounded to float32. */
export function randF32 (r: () => number, n: number, scale = 1, offset = 0): Float32Array {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = offset + (r() * 2 - 1) * scale
  return a
}

export function randInts (r: () => number, n: number, lo: number, hi: number): Int32Array {
  const a = new Int32Array(n)
  for (let i = 0; i < n; i++) a[i] = lo + Math.floor(r() * (hi - lo))
  return a
}

export function f64 (a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a)
}

/** a + b elementwise in float64 (initial gradient contents + reference gradient). */
export function plus (a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const out = new Float64Array(a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i]
  return out
}

/**
 * Asserts |actual - expected| <= tol * (1 + |expected|) everywhere (indices in `only`, if given),
 * reporting the worst element.
 */
export function assertClose (actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string, only?: (i: number) => boolean): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != ${expected.length}`)
  let worst = -1
  let worstErr = 0
  for (let i = 0; i < actual.length; i++) {
    if (only !== undefined && !only(i)) continue
    const e = expected[i]
    const a = actual[i]
    const err = Math.abs(a - e) / (1 + Math.abs(e))
    if (!(err <= tol)) { // also catches NaN
      if (worst < 0 || !(err <= worstErr)) { worst = i; worstErr = err }
    }
  }
  if (worst >= 0) {
    assert.fail(`${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (relative error ${worstErr} > ${tol})`)
  }
}

/**
 * Central finite differences of L(x) = sum(f(x) * g) with respect to every element of x (float64).
 * `f` must not keep x: x is perturbed in place and restored.
 */
export function numericGrad (f: (x: Float64Array) => Float64Array, x: Float64Array, g: Float64Array, h = 1e-6): Float64Array {
  const grad = new Float64Array(x.length)
  const L = (): number => { const y = f(x); let s = 0; for (let i = 0; i < y.length; i++) s += y[i] * g[i]; return s }
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]
    x[i] = x0 + h
    const lp = L()
    x[i] = x0 - h
    const lm = L()
    x[i] = x0
    grad[i] = (lp - lm) / (2 * h)
  }
  return grad
}
