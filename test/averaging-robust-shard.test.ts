// Robust shard averaging (core/averaging/robust-shard.ts), without sockets: what a shard owner keeps
// per role. Parameters: deviations from the median are judged (nearly equal honest vectors kept, a
// zeroed or x10 one excluded; a majority of identical members falls back to the reference scale).
// Pseudo-gradients: an idle member's zero delta is kept, x10 and sign flips are excluded. Two
// members keep everything; `enabled: false` is the plain weighted mean; `weightOf` sets the weights.
import assert from 'node:assert/strict'
import { AveragingConfigError, checkRobustOptions, robustShardMean, weightedMean, type ShardContribution } from '../core/averaging/index.ts'
import { Prng } from '../core/model/prng.ts'

const N = 5000

function vectors (seed: string): { params: Float32Array, near: (scale: number) => Float32Array, step: Float32Array } {
  const rng = new Prng(seed)
  const params = Float32Array.from({ length: N }, () => rng.normal())
  const step = Float32Array.from({ length: N }, () => 0.01 * rng.normal())
  return { params, step, near: scale => params.map(x => x + scale * rng.normal()) }
}

const norm = (x: Float32Array): number => Math.sqrt(x.reduce((s, v) => s + v * v, 0))
const ids = (r: ReturnType<typeof robustShardMean>): string[][] => r.excluded.map(e => [e.id, e.reason])

describe('averaging: robust shard mean', () => {
  it("role 'parameter': nearly equal honest parameters are kept; zeros declaring 1e15 and x10 are excluded; the mean is the honest one", () => {
    const v = vectors('rs-params')
    const honest: ShardContribution[] = [0, 1, 2].map(i => ({ peer: `h${i}`, weight: 1 + i, data: v.near(0.02) }))
    for (const bad of [{ peer: 'zeros', weight: 1e15, data: new Float32Array(N) }, { peer: 'x10', weight: 1, data: v.near(0.02).map(x => 10 * x) }]) {
      const r = robustShardMean([...honest, bad], N, 'parameter', norm(v.params))
      assert.deepEqual(ids(r), [[bad.peer, 'norm-high']])
      assert.deepEqual(r.mean, weightedMean(honest, N), 'bit-identical to the honest-only mean')
    }
    assert.equal(robustShardMean(honest, N, 'parameter', norm(v.params)).excluded.length, 0)
  })

  it("role 'parameter': members identical to each other (they did not train since averaging together) do not make one that did an outlier", () => {
    const v = vectors('rs-same')
    const same = v.near(0.02)
    const idle = [0, 1].map(i => ({ peer: `idle${i}`, weight: 1, data: same }))
    const trained = { peer: 'trained', weight: 8, data: same.map((x, i) => x - 50 * v.step[i]) } // moved by half the parameters' norm
    const r = robustShardMean([...idle, trained], N, 'parameter', norm(same))
    assert.equal(r.medianNorm, 0)
    assert.equal(r.excluded.length, 0)
    const x10 = { peer: 'x10', weight: 1, data: same.map(x => 10 * x) }
    assert.deepEqual(ids(robustShardMean([...idle, trained, x10], N, 'parameter', norm(same))), [['x10', 'norm-high']])
    // two members holding the same averaged parameters and a third sending them negated (declared
    // stats intact): the median deviation is 0 and the negation deviates by exactly 2 x their norm,
    // beyond the 1.5 x bound
    const negated = { peer: 'negated', weight: 1e15, data: same.map(x => -x) }
    assert.deepEqual(ids(robustShardMean([...idle, negated], N, 'parameter', norm(same))), [['negated', 'norm-high']])
  })

  it("role 'parameter-grad': an idle member's zero delta is kept; x10 and a sign flip are excluded", () => {
    const v = vectors('rs-grad')
    const rng = new Prng('rs-grad-noise')
    const delta = (): Float32Array => v.step.map(x => x + 0.01 * rng.normal())
    const honest: ShardContribution[] = [0, 1, 2].map(i => ({ peer: `h${i}`, weight: 2, data: delta() }))
    const idle = { peer: 'idle', weight: 1, data: new Float32Array(N) }
    assert.equal(robustShardMean([...honest, idle], N, 'parameter-grad', norm(v.params)).excluded.length, 0)
    assert.deepEqual(ids(robustShardMean([...honest, idle, { peer: 'x10', weight: 1, data: delta().map(x => 10 * x) }], N, 'parameter-grad', norm(v.params))), [['x10', 'norm-high']])
    assert.deepEqual(ids(robustShardMean([...honest, { peer: 'flip', weight: 1, data: delta().map(x => -x) }], N, 'parameter-grad', norm(v.params))), [['flip', 'direction']])
  })

  it('two members: nothing is judged; disabled: the plain weighted mean of everything; weightOf sets the weights', () => {
    const v = vectors('rs-misc')
    const pair = [{ peer: 'a', weight: 1, data: v.near(0.02) }, { peer: 'b', weight: 1e15, data: new Float32Array(N) }]
    const two = robustShardMean(pair, N, 'parameter', norm(v.params))
    assert.equal(two.robust, false)
    assert.equal(two.kept.length, 2)
    const four = [...pair, { peer: 'c', weight: 3, data: v.near(0.02) }, { peer: 'd', weight: 2, data: v.near(0.02) }]
    const off = robustShardMean(four, N, 'parameter', norm(v.params), { enabled: false })
    assert.equal(off.excluded.length, 0)
    assert.deepEqual(off.mean, weightedMean(four, N))
    const ledger = robustShardMean(four, N, 'parameter', norm(v.params), { weightOf: peer => peer === 'c' ? 7 : 1 })
    assert.deepEqual(ledger.kept.map(k => [k.id, k.weight]), [['a', 1], ['c', 4], ['d', 1]], 'c capped at 4 x the median weight 1')
  })

  it('refuses options out of range', () => {
    for (const o of [{ paramNormFactor: 0.5 }, { gradNormFactor: Infinity }, { minCosine: 2 }, { weightCap: 0 }, { maxRelNorm: -1 }]) {
      assert.throws(() => { checkRobustOptions(o) }, AveragingConfigError, JSON.stringify(o))
    }
    checkRobustOptions({})
  })
})
