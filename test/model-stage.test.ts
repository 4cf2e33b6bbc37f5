// The GPT as stages: split equivalence with the unsplit model, whole-model and bottleneck
// gradients against finite differences, and typed errors for bad input.
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { NonFiniteError, ShapeError } from '../core/errors.ts'
import { validateModelConfig, type ModelConfig } from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { Prng } from '../core/model/prng.ts'
import { Stage, StageStateError } from '../core/model/stage.ts'
import { stageLayouts } from '../core/model/stage-split.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'

// Small enough for finite differences, big enough to exercise every kernel (NH > 1, T < blockSize).
const CFG: ModelConfig = validateModelConfig({ vocabSize: 23, blockSize: 12, nLayer: 3, nHead: 2, dModel: 16 })
const B = 2
const T = 8

function batch (seed: number): { tokens: Int32Array, targets: Int32Array } {
  const rng = new Prng(seed)
  const tokens = new Int32Array(B * T).map(() => rng.nextU32() % CFG.vocabSize)
  const targets = new Int32Array(B * T).map(() => rng.nextU32() % CFG.vocabSize)
  targets[3] = -1 // ignored target: no loss, no gradient
  return { tokens, targets }
}

function relDiff (a: Float32Array, b: Float32Array): number {
  let num = 0
  let den = 0
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += a[i] ** 2 + b[i] ** 2 }
  return den === 0 ? 0 : Math.sqrt(num / den)
}

function norm (a: Float32Array): number {
  let s = 0
  for (const x of a) s += x * x
  return Math.sqrt(s)
}

/**
 * Checks d(loss)/d(param) of every tensor against central differences along two directions: the
 * gradient itself (derivative = |g|) and a random unit direction. f32 loss, so eps is large and
 * the tolerance is relative to |g|.
 */
async function checkGradients (model: GptModel, tokens: Int32Array, targets: Int32Array): Promise<number> {
  await model.zeroGrad()
  await model.forward(tokens, B, T, targets)
  await model.backward()
  const grads = await model.downloadGrads()
  const params = await model.downloadParams()
  const lossAt = async (name: string, dir: Float32Array, eps: number): Promise<number> => {
    const p = params.get(name) as Float32Array
    const moved = new Map(params)
    moved.set(name, p.map((x, i) => x + eps * dir[i]))
    await model.loadParams(moved)
    return await model.forward(tokens, B, T, targets) as number
  }
  const rng = new Prng(99)
  let checked = 0
  for (const [name, g] of grads) {
    const gn = norm(g)
    const unitG = g.map(x => x / (gn || 1))
    const rand = new Float32Array(g.length).map(() => rng.normal())
    const rn = norm(rand)
    const unitR = rand.map(x => x / rn)
    for (const dir of [unitG, unitR]) {
      let analytic = 0
      for (let i = 0; i < g.length; i++) analytic += g[i] * dir[i]
      const eps = 1e-2
      const fd = (await lossAt(name, dir, eps) - await lossAt(name, dir, -eps)) / (2 * eps)
      const tol = 2e-2 * gn + 2e-4
      assert.ok(Math.abs(fd - analytic) <= tol, `${name}: finite difference ${fd} vs backward ${analytic} (|g| ${gn})`)
      checked++
    }
  }
  await model.loadParams(params)
  return checked
}

describe('model: stages', function () {
  let be: ComputeBackend
  before(async () => { be = await createCpuBackend({ threads: 1 }) })
  after(async () => { await be.dispose() })

  it('running the stages of a 3-way split in sequence matches the unsplit model', async () => {
    const whole = new GptModel(be, CFG, { seed: 7 })
    const split = new GptModel(be, CFG, { seed: 7, stages: 3 })
    assert.equal(split.stages.length, 3)
    assert.deepEqual(split.stages.map(s => [s.layout.range.firstBlock, s.layout.range.endBlock]), [[0, 1], [1, 2], [2, 3]])
    assert.equal(split.numel, whole.numel)
    const { tokens, targets } = batch(1)
    for (const m of [whole, split]) { await m.zeroGrad(); await m.forward(tokens, B, T, targets); await m.backward() }
    const [lw, ls] = [await whole.forward(tokens, B, T, targets), await split.forward(tokens, B, T, targets)]
    assert.ok(Math.abs((lw as number) - (ls as number)) <= 1e-5 * Math.abs(lw as number), `loss ${lw} vs ${ls}`)
    const gw = await whole.downloadGrads()
    const gs = await split.downloadGrads()
    assert.deepEqual([...gs.keys()].sort(), [...gw.keys()].sort())
    for (const [name, g] of gw) {
      assert.ok(norm(g) > 0, `${name} has a zero gradient`)
      assert.ok(relDiff(g, gs.get(name) as Float32Array) <= 1e-5, `${name} gradients differ`)
    }
    // one optimizer step on each keeps them equal (global-norm clipping spans all stages)
    const [rw, rs] = [await whole.update({ lr: 1e-2 }), await split.update({ lr: 1e-2 })]
    assert.ok(Math.abs(rw.gradNorm - rs.gradNorm) <= 1e-6 * rw.gradNorm)
    const pw = await whole.downloadParams()
    const ps = await split.downloadParams()
    for (const [name, p] of pw) assert.ok(relDiff(p, ps.get(name) as Float32Array) <= 1e-6, `${name} after update`)
    whole.dispose(); split.dispose()
  })

  it('whole-model gradients match finite differences', async () => {
    const model = new GptModel(be, CFG, { seed: 3 })
    const { tokens, targets } = batch(2)
    const checked = await checkGradients(model, tokens, targets)
    assert.equal(checked, 2 * (2 + 12 * CFG.nLayer + 3))
    model.dispose()
  })

  it('bottleneck gradients (2 stages, k=4) match finite differences, and the boundary is [B,T,k]', async () => {
    const model = new GptModel(be, CFG, { seed: 5, stages: 2, bottleneck: 4 })
    const names = [...(await model.downloadParams()).keys()]
    assert.ok(names.includes('h.1.bottleneck_down.weight') && names.includes('h.2.bottleneck_up.weight'), names.join(' '))
    const { tokens, targets } = batch(3)
    const out = await model.stages[0].forward({ B, T, tokens })
    assert.equal(out.hidden?.length, B * T * 4)
    const checked = await checkGradients(model, tokens, targets)
    assert.equal(checked, 2 * (2 + 12 * CFG.nLayer + 3 + 4))
    model.dispose()
  })

  it('identity path: with zero projections the first k channels cross the boundary unchanged', async () => {
    const k = 4
    const C = CFG.dModel
    const [b0, b1] = stageLayouts(CFG, 2, k)
    const [p0, p1] = stageLayouts(CFG, 2)
    const zeroProjections = async (s: Stage): Promise<void> => {
      const m = await s.params.download()
      for (const name of m.keys()) if (name.includes('bottleneck_')) m.set(name, new Float32Array(m.get(name)?.length ?? 0))
      await s.params.load(m)
    }
    // same seed: the blocks get the same init whatever the layout
    const [s0, s1, plain0, plain1] = [new Stage(be, b0, { seed: 1 }), new Stage(be, b1, { seed: 1 }), new Stage(be, p0, { seed: 1 }), new Stage(be, p1, { seed: 1 })]
    await zeroProjections(s0)
    await zeroProjections(s1)
    const { tokens, targets } = batch(4)
    const z = (await s0.forward({ B, T, tokens })).hidden as Float32Array
    const x = (await plain0.forward({ B, T, tokens })).hidden as Float32Array
    const padded = new Float32Array(B * T * C)
    for (let n = 0; n < B * T; n++) {
      for (let c = 0; c < k; c++) {
        assert.equal(z[n * k + c], x[n * C + c])
        padded[n * C + c] = z[n * k + c]
      }
    }
    const l1 = (await s1.forward({ B, T, hidden: z, targets })).loss as number
    const l2 = (await plain1.forward({ B, T, hidden: padded, targets })).loss as number
    assert.ok(Math.abs(l1 - l2) <= 1e-6 * l2, `${l1} vs ${l2}`)
    for (const s of [s0, s1, plain0, plain1]) s.dispose()
  })

  it('rejects bad input with typed errors', async () => {
    const [l0, l1, l2] = stageLayouts(CFG, 3)
    const s0 = new Stage(be, l0)
    const s1 = new Stage(be, l1)
    const s2 = new Stage(be, l2)
    const { tokens, targets } = batch(5)
    await assert.rejects(s0.forward({ B, T, tokens: tokens.map(() => CFG.vocabSize) }), ShapeError)
    await assert.rejects(s0.forward({ B, T: CFG.blockSize + 1, tokens: new Int32Array(B * (CFG.blockSize + 1)) }), ShapeError)
    await assert.rejects(s0.forward({ B, T, tokens: tokens.subarray(1) }), ShapeError)
    await assert.rejects(s0.backward(), StageStateError)
    await assert.rejects(s1.forward({ B, T, hidden: new Float32Array(B * T * CFG.dModel - 1) }), ShapeError)
    await assert.rejects(s1.forward({ B, T, hidden: new Float32Array(B * T * CFG.dModel).fill(NaN) }), NonFiniteError)
    const h = (await s0.forward({ B, T, tokens })).hidden as Float32Array
    await assert.rejects(s0.backward(new Float32Array(3)), ShapeError)
    const h1 = (await s1.forward({ B, T, hidden: h })).hidden as Float32Array
    await s2.forward({ B, T, hidden: h1 })
    await assert.rejects(s2.backward(), StageStateError) // no targets, no loss
    await assert.rejects(s2.forward({ B, T, hidden: h1, targets: targets.map(() => CFG.vocabSize) }), ShapeError)
    s0.dispose(); s1.dispose(); s2.dispose()
  })
})
