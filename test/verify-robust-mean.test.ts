// Robust aggregation (core/verify/robust-mean.ts): with 3 to 8 honest noisy contributions, the
// poisoned ones of issue 13 (all zeros declaring weight 1e15, NaN, x10, sign-flipped) are excluded
// with their reason, alone or all at once, while every honest one is kept and the mean is the honest
// weighted mean; declared weights are bounded; `center` judges deltas (or deviations from the
// median); small contributions can be kept; a zero median has its own scale; too few members is reported.
import assert from 'node:assert/strict'
import { Prng } from '../core/model/prng.ts'
import { VerifyOptionsError, robustMean, type Contribution, type ExclusionReason } from '../core/verify/index.ts'

const N = 4096

function group (honest: number, seed: string): { signal: Float32Array, honest: Contribution[], noisy: () => Float32Array } {
  const rng = new Prng(seed)
  const signal = Float32Array.from({ length: N }, () => rng.normal())
  // noise as large as the signal: honest members agree only at cosine ~0.5
  const noisy = (): Float32Array => signal.map(x => x + rng.normal())
  return {
    signal,
    honest: Array.from({ length: honest }, (_, i) => ({ id: `honest-${i}`, data: noisy(), weight: 1 + (i % 3) })),
    noisy
  }
}

function attackers (noisy: () => Float32Array): Array<[Contribution, ExclusionReason]> {
  const nan = noisy(); nan[100] = NaN
  return [
    [{ id: 'zeros-1e15', data: new Float32Array(N), weight: 1e15 }, 'norm-low'],
    [{ id: 'nan', data: nan, weight: 1 }, 'non-finite'],
    [{ id: 'x10', data: noisy().map(x => 10 * x), weight: 1 }, 'norm-high'],
    [{ id: 'sign-flip', data: noisy().map(x => -x), weight: 1 }, 'direction']
  ]
}

function weightedMean (cs: readonly Contribution[]): Float32Array {
  const acc = new Float64Array(N)
  let w = 0
  for (const c of cs) { w += c.weight; for (let i = 0; i < N; i++) acc[i] += c.weight * c.data[i] }
  return Float32Array.from(acc, x => x / w)
}

function assertHonestResult (r: ReturnType<typeof robustMean>, honest: readonly Contribution[], what: string): void {
  assert.deepEqual(r.kept.map(k => k.id).sort(), honest.map(h => h.id).sort(), `${what}: kept`)
  assert.ok(r.robust)
  const expected = weightedMean(honest)
  const mean = r.mean as Float32Array
  for (let i = 0; i < N; i++) assert.ok(Math.abs(mean[i] - expected[i]) < 1e-5, `${what}: mean[${i}] ${mean[i]} vs ${expected[i]}`)
}

describe('verify: robust mean of averaging contributions', () => {
  for (let K = 3; K <= 8; K++) {
    it(`${K} honest: each poisoned contribution alone is excluded with its reason, every honest one kept`, () => {
      const g = group(K, `rm-${K}`)
      for (const [bad, reason] of attackers(g.noisy)) {
        const all = [...g.honest]
        all.splice(K >> 1, 0, bad) // not always last
        const r = robustMean(all, N)
        assert.deepEqual(r.excluded.map(e => [e.id, e.reason]), [[bad.id, reason]], `${K} honest + ${bad.id}`)
        assertHonestResult(r, g.honest, `${K} honest + ${bad.id}`)
      }
    })

    it(`${K} honest: all four poisoned contributions at once are excluded`, () => {
      const g = group(K, `rm-all-${K}`)
      const bad = attackers(g.noisy)
      const r = robustMean([...bad.map(b => b[0]), ...g.honest], N)
      assert.deepEqual(new Map(r.excluded.map(e => [e.id, e.reason])), new Map(bad.map(([c, reason]) => [c.id, reason])))
      assertHonestResult(r, g.honest, `${K} honest + all`)
    })
  }

  it('an honest-looking contribution declaring a huge weight counts as weightCap typical members at most', () => {
    const g = group(5, 'rm-weight')
    const loud = { id: 'loud', data: g.noisy(), weight: 1e15 }
    const r = robustMean([...g.honest, loud], N)
    assert.equal(r.excluded.length, 0)
    const k = r.kept.find(x => x.id === 'loud')
    const median = 2 // weights 1,2,3,1,2 and 1e15: median of six = 2
    assert.equal(k?.weight, 4 * median)
    assert.equal(k?.declaredWeight, 1e15)
    const bounded = robustMean([...g.honest, loud], N, { maxWeight: 3, minWeight: 1.5 })
    assert.deepEqual(bounded.kept.map(x => x.weight), [1.5, 2, 3, 1.5, 2, 3])
  })

  it('center: a sign-flipped delta hidden under large shared parameters is excluded only when deltas are judged', () => {
    const g = group(4, 'rm-center')
    const rng = new Prng('rm-center-params')
    const params = Float32Array.from({ length: N }, () => 100 * rng.normal())
    const asParams = (d: Float32Array): Float32Array => d.map((x, i) => params[i] + 0.01 * x)
    const honest = g.honest.map(c => ({ ...c, data: asParams(c.data) }))
    const flipped = { id: 'flip', data: asParams(g.noisy().map(x => -x)), weight: 1 }
    assert.equal(robustMean([...honest, flipped], N).excluded.length, 0, 'parameters dominate: nothing looks wrong')
    const r = robustMean([...honest, flipped], N, { center: params })
    assert.deepEqual(r.excluded.map(e => [e.id, e.reason]), [['flip', 'direction']])
  })

  it('invalid contributions: wrong length and bad weights; fewer than 3 valid ones skip the norm and direction checks', () => {
    const g = group(2, 'rm-small')
    const r = robustMean([
      ...g.honest,
      { id: 'short', data: new Float32Array(N - 1), weight: 1 },
      { id: 'w0', data: g.noisy(), weight: 0 },
      { id: 'wnan', data: g.noisy(), weight: NaN },
      { id: 'winf', data: g.noisy(), weight: Infinity }
    ], N)
    assert.deepEqual(r.excluded.map(e => [e.id, e.reason]), [['short', 'length'], ['w0', 'weight'], ['wnan', 'weight'], ['winf', 'weight']])
    assert.equal(r.robust, false)
    assert.equal(r.kept.length, 2)
    const none = robustMean([{ id: 'nan', data: Float32Array.of(NaN), weight: 1 }], 1)
    assert.equal(none.mean, null)
    assert.ok(Number.isNaN(none.medianNorm))
  })

  it("center 'median': deviations from the coordinate-wise median are judged by norm only; nearly equal parameters are not outliers", () => {
    const rng = new Prng('rm-median')
    const params = Float32Array.from({ length: N }, () => rng.normal())
    const near = (): Float32Array => params.map(x => x + 0.01 * rng.normal())
    const honest = Array.from({ length: 4 }, (_, i) => ({ id: `h${i}`, data: near(), weight: 1 }))
    const all = [...honest, { id: 'zeros', data: new Float32Array(N), weight: 1e15 }, { id: 'x10', data: near().map(x => 10 * x), weight: 1 }]
    const r = robustMean(all, N, { center: 'median' })
    assert.deepEqual(r.excluded.map(e => [e.id, e.reason]), [['zeros', 'norm-high'], ['x10', 'norm-high']])
    assert.ok(r.kept.every(k => Number.isNaN(k.cosine)), 'no direction step')
    assert.ok(robustMean(honest, N, { center: 'median' }).excluded.length === 0)
    // a sign flip of parameters that are all nearly equal is a parameter vector far from the rest
    assert.deepEqual(robustMean([...honest, { id: 'flip', data: near().map(x => -x), weight: 1 }], N, { center: 'median' }).excluded.map(e => e.reason), ['norm-high'])
  })

  it('minNormFactor Infinity keeps small contributions; zeroMedianScale judges where a majority sent the center itself', () => {
    const g = group(4, 'rm-low')
    const zeros = { id: 'idle', data: new Float32Array(N), weight: 1 }
    assert.deepEqual(robustMean([...g.honest, zeros], N).excluded.map(e => e.reason), ['norm-low'])
    assert.equal(robustMean([...g.honest, zeros], N, { minNormFactor: Infinity }).excluded.length, 0)
    // three identical members and one that moved: the median deviation is 0
    const same = g.noisy()
    const moved = { id: 'moved', data: same.map((x, i) => x + 0.1 * g.signal[i]), weight: 1 }
    const trio = [0, 1, 2].map(i => ({ id: `same-${i}`, data: same, weight: 1 }))
    const bare = robustMean([...trio, moved], N, { center: 'median' })
    assert.equal(bare.medianNorm, 0)
    assert.deepEqual(bare.excluded.map(e => e.id), ['moved'], 'with no scale, any move is an outlier')
    // ||moved - same|| is about 0.1 x ||signal|| = 6.4: kept under 3 x 10, the x100 one is not
    const o = { center: 'median', minNormFactor: Infinity, zeroMedianScale: 10 } as const
    assert.equal(robustMean([...trio, moved], N, o).excluded.length, 0)
    const far = { id: 'far', data: same.map(x => 100 * x), weight: 1 }
    assert.deepEqual(robustMean([...trio, moved, far], N, o).excluded.map(e => e.id), ['far'])
  })

  it('refuses options out of range', () => {
    const bad = [
      { normFactor: 0.5 }, { normFactor: Infinity }, { weightCap: 0.5 }, { minCosine: -2 }, { minWeight: -1 }, { minWeight: 2, maxWeight: 1 }, { center: new Float32Array(3) },
      { minNormFactor: 0.5 }, { zeroMedianScale: -1 }, { zeroMedianScale: Infinity }
    ]
    for (const o of bad) assert.throws(() => robustMean([], 4, o), VerifyOptionsError, JSON.stringify(o))
    assert.throws(() => robustMean([], -1), VerifyOptionsError)
  })
})
