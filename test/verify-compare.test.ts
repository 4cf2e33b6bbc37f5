// Comparing a recomputed tensor with a claimed one (core/verify/compare.ts): the metrics on known
// cases, honest differences of the measured size accepted, each attack of issue 13 rejected with its
// reason, NaN/Inf/shape handled as typed failures, and bad tolerances refused.
import assert from 'node:assert/strict'
import { Prng } from '../core/model/prng.ts'
import { DEFAULT_TOLERANCE, VerifyOptionsError, compareTensors, tensorDiff, type CompareVerdict, type TensorLike } from '../core/verify/index.ts'

const SHAPE = [8, 64, 128]
const N = 8 * 64 * 128
const rng = new Prng('verify-compare')
const normal = (n: number, std = 1): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * std)
const t = (data: Float32Array, shape: readonly number[] = SHAPE): TensorLike => ({ data, shape })
const reasonOf = (v: CompareVerdict): string => v.ok ? 'ok' : v.reason

describe('verify: comparing a recomputation with a claim', () => {
  const ref = normal(N)

  it('computes relL2, cosine, norm ratio and max abs on known vectors', () => {
    const d = tensorDiff(Float32Array.of(1, 0), Float32Array.of(0, 1))
    assert.ok(Math.abs(d.relL2 - Math.SQRT2) < 1e-12)
    assert.equal(d.cosine, 0)
    assert.equal(d.normRatio, 1)
    assert.equal(d.maxAbs, 1)
    assert.equal(d.maxAbsRel, 1)
    const z = tensorDiff(new Float32Array(3), new Float32Array(3))
    assert.deepEqual([z.relL2, z.cosine, z.normRatio, z.maxAbsRel], [0, 1, 0, 0])
    const zr = tensorDiff(Float32Array.of(1, 0, 0), new Float32Array(3))
    assert.deepEqual([zr.relL2, zr.cosine, zr.normRatio], [Infinity, 0, Infinity])
  })

  it('accepts a bit-identical claim and honest differences of the measured size (int8-block codec: relL2 ~6e-3)', () => {
    const same = compareTensors(t(ref.slice()), t(ref))
    assert.ok(same.ok)
    assert.equal(same.diff.relL2, 0)
    // elementwise relative noise of 6e-3 (uniform quantisation-like), and a tiny f32-backend-like jitter
    for (const eps of [1e-7, 3.5e-5, 6e-3]) {
      const claim = ref.map(x => x + (rng.nextFloat() - 0.5) * 2 * Math.sqrt(3) * eps)
      const v = compareTensors(t(claim), t(ref))
      assert.ok(v.ok, `eps ${eps}: ${v.ok ? '' : v.detail}`)
    }
  })

  it('rejects each attack kind with a conclusive reason', () => {
    const other = normal(N)
    const cases: Array<[string, Float32Array, string]> = [
      ['random values', normal(N), 'rel-l2'],
      ['scaled x10', ref.map(x => 10 * x), 'rel-l2'],
      ['sign-flipped', ref.map(x => -x), 'rel-l2'],
      ['all zeros (lazy)', new Float32Array(N), 'rel-l2'],
      ['cached output of another input, correlated 0.9', ref.map((x, i) => 0.9 * x + 0.44 * other[i]), 'rel-l2'],
      ['scaled x1.025 (inside relL2, outside the norm ratio)', ref.map(x => 1.025 * x), 'norm-ratio'],
      ['one element moved by half the max (a sparse edit)', (() => { const c = ref.slice(); c[17] += 0.5 * Math.max(...ref.map(Math.abs)); return c })(), 'max-abs']
    ]
    for (const [what, claim, reason] of cases) {
      const v = compareTensors(t(claim), t(ref))
      assert.equal(reasonOf(v), reason, what)
      assert.ok(!v.ok && v.conclusive && v.detail.length > 0, what)
    }
    // a direction change too small for relL2 but past a stricter cosine bound
    const turned = ref.map((x, i) => x + 0.02 * other[i])
    const strict = compareTensors(t(turned), t(ref), { ...DEFAULT_TOLERANCE, minCosine: 0.99999 })
    assert.equal(reasonOf(strict), 'cosine')
  })

  it('NaN/Inf in the claim convict, in the recomputation are inconclusive; shapes must match', () => {
    const nan = ref.slice(); nan[5] = NaN
    const inf = ref.slice(); inf[9] = -Infinity
    const c1 = compareTensors(t(nan), t(ref))
    assert.ok(!c1.ok && c1.reason === 'non-finite-claimed' && c1.conclusive)
    const c2 = compareTensors(t(inf), t(ref))
    assert.ok(!c2.ok && c2.reason === 'non-finite-claimed')
    const c3 = compareTensors(t(ref), t(inf))
    assert.ok(!c3.ok && c3.reason === 'non-finite-reference' && !c3.conclusive)
    for (const [claim, shape] of [[ref, [8, 64, 64, 2]], [ref.subarray(1), SHAPE], [ref, [8, 128, 64]]] as const) {
      const v = compareTensors(t(claim, shape), t(ref))
      assert.ok(!v.ok && v.reason === 'shape' && v.conclusive && v.diff === null)
    }
    // a reference whose data does not fill its own shape is a shape failure too, never a crash
    assert.equal(reasonOf(compareTensors(t(ref.subarray(1)), t(ref.subarray(1)))), 'shape')
    assert.throws(() => tensorDiff(ref, ref.subarray(1)), VerifyOptionsError)
  })

  it('refuses tolerances out of range', () => {
    const bad = [{ maxRelL2: -1 }, { maxRelL2: NaN }, { minCosine: 2 }, { normRatio: [1.1, 0.9] as const }, { maxAbsRel: -0.1 }]
    for (const over of bad) assert.throws(() => compareTensors(t(ref), t(ref), { ...DEFAULT_TOLERANCE, ...over }), VerifyOptionsError)
  })
})
