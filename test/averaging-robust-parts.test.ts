// The part-wise robust shard mean (core/averaging/robust-parts.ts) against the whole-shard one
// (robustShardMean): for both roles, robust averaging on and off, weightOf, groups of 2 to 5 with
// poisoned members (zeros declaring 1e15, x10, negated, a sign flip, all identical), and part sizes
// from 1 element to the whole shard, the exclusions, kept weights, norms, cosines and every bit of
// the mean must be the same. Also the shard reducer (shard-reducer.ts): pass 1 run while parts
// arrive and restarted when a member drops out gives the same average as a fresh one.
import assert from 'node:assert/strict'
import { robustShardMean, type AveragingRole, type RobustAveragingOptions, type ShardContribution } from '../core/averaging/index.ts'
import { PartwiseRobustMean } from '../core/averaging/robust-parts.ts'
import { ShardReducer } from '../core/averaging/shard-reducer.ts'
import { shardCodecs } from '../core/codecs/tensor-codecs.ts'
import { Prng } from '../core/model/prng.ts'

const N = 1201

function partwise (inputs: readonly ShardContribution[], role: AveragingRole, refNorm: number, partElements: number, options?: RobustAveragingOptions): ReturnType<typeof robustShardMean> {
  const pw = new PartwiseRobustMean(N, partElements, role, refNorm, options)
  pw.reset(inputs)
  // pass 1 in uneven steps, as parts arrive
  for (let p = 0; p <= pw.parts; p += 3) pw.advance(p)
  const d = pw.decide()
  let mean: Float32Array | null = null
  if (d.kept.length > 0) {
    mean = new Float32Array(N)
    for (let p = 0; p < pw.parts; p++) mean.set(pw.meanPart(p) as Float32Array, pw.range(p)[0])
  }
  return { ...d, mean }
}

function cases (seed: string): Array<{ name: string, inputs: ShardContribution[], role: AveragingRole, refNorm: number }> {
  const rng = new Prng(seed)
  const params = Float32Array.from({ length: N }, () => rng.normal())
  const near = (s: number): Float32Array => params.map(x => x + s * rng.normal())
  const step = Float32Array.from({ length: N }, () => 0.01 * rng.normal())
  const delta = (): Float32Array => step.map(x => x + 0.01 * rng.normal())
  const refNorm = Math.sqrt(params.reduce((a, v) => a + v * v, 0))
  const h = (k: number, f: () => Float32Array): ShardContribution[] => Array.from({ length: k }, (_, i) => ({ peer: `h${i}`, weight: 1 + i, data: f() }))
  const same = near(0.02)
  return [
    { name: 'two parameters', role: 'parameter', refNorm, inputs: h(2, () => near(0.02)) },
    { name: 'honest parameters', role: 'parameter', refNorm, inputs: h(4, () => near(0.02)) },
    { name: 'zeros declaring 1e15', role: 'parameter', refNorm, inputs: [...h(3, () => near(0.02)), { peer: 'z', weight: 1e15, data: new Float32Array(N) }] },
    { name: 'x10 parameters', role: 'parameter', refNorm, inputs: [...h(4, () => near(0.02)), { peer: 'x', weight: 1, data: near(0.02).map(x => 10 * x) }] },
    { name: 'identical and negated', role: 'parameter', refNorm, inputs: [{ peer: 'a', weight: 1, data: same }, { peer: 'b', weight: 1, data: same }, { peer: 'n', weight: 1e15, data: same.map(x => -x) }] },
    { name: 'honest deltas and an idle one', role: 'parameter-grad', refNorm, inputs: [...h(3, delta), { peer: 'idle', weight: 1, data: new Float32Array(N) }] },
    { name: 'x10 delta', role: 'parameter-grad', refNorm, inputs: [...h(4, delta), { peer: 'x', weight: 1, data: delta().map(x => 10 * x) }] },
    { name: 'sign flip', role: 'parameter-grad', refNorm, inputs: [...h(3, delta), { peer: 'f', weight: 1, data: delta().map(x => -x) }] }
  ]
}

describe('averaging: the robust shard mean part by part', () => {
  it('gives robustShardMean bit for bit, for every part size, both roles, on and off, with weightOf', () => {
    const optionSets: Array<RobustAveragingOptions | undefined> = [undefined, { enabled: false }, { weightOf: (peer, w) => peer === 'h1' ? 40 * w : w }]
    let excludedSeen = 0
    for (const c of cases('robust-parts')) {
      for (const options of optionSets) {
        const whole = robustShardMean(c.inputs, N, c.role, c.refNorm, options)
        excludedSeen += whole.excluded.length
        for (const part of [1, 7, 256, 1000, N]) {
          const got = partwise(c.inputs, c.role, c.refNorm, part, options)
          const what = `${c.name}, parts of ${part}, options ${JSON.stringify(options ?? {})}`
          assert.deepEqual(got.excluded, whole.excluded, what)
          assert.deepEqual(got.kept, whole.kept, what)
          assert.ok(Object.is(got.medianNorm, whole.medianNorm), what)
          assert.equal(got.robust, whole.robust, what)
          assert.deepEqual(got.mean, whole.mean, what)
        }
      }
    }
    assert.ok(excludedSeen >= 5, 'the cases exclude poisoned members')
  })

  it('the shard reducer: pass 1 while parts arrive, restarted when a member drops out, equals robustShardMean', () => {
    const codecs = shardCodecs({ parameter: 'none', 'parameter-grad': 'none' })
    const c = cases('reducer')[3] // four honest members and an x10 one, role 'parameter'
    const members = c.inputs.map(i => i.peer)
    const me = 0
    for (const drop of [undefined, 2]) {
      const r = new ShardReducer(codecs, 'parameter', members, me, c.inputs[me].data, c.inputs[me].weight, 500, c.refNorm, undefined)
      const bufs = c.inputs.map((inp, k) => k === me ? null : r.open(k, inp.weight))
      // parts of 300 elements arrive from each member in turn
      for (let at = 0; at < N; at += 300) {
        c.inputs.forEach((inp, k) => {
          const b = bufs[k]
          if (b == null) return
          const end = Math.min(N, at + 300)
          b.set(inp.data.subarray(at, end), at)
          r.progress(k, end)
        })
      }
      const done = members.map((_, k) => k).filter(k => k !== me && k !== drop)
      if (drop != null) r.drop(drop)
      const avg = r.close(done)
      const expected = robustShardMean(c.inputs.filter((_, k) => k !== drop), N, 'parameter', c.refNorm)
      assert.deepEqual(avg.decision.excluded, expected.excluded)
      assert.deepEqual(avg.complete(), expected.mean, `drop ${String(drop)}`)
      assert.equal(avg.partCount, Math.ceil(N / 500))
      assert.equal(avg.part(0).elements, 500)
    }
  })
})
