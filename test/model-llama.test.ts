// The llama architecture: config validation and defaults, parameter counts of the presets, a
// 2-layer forward/backward on the CPU backend against a float64 reference written here from the
// Llama definitions (RMSNorm, rotate-half RoPE as in transformers, SwiGLU, untied head), with the
// gradients checked by central differences of that reference, and the stage split round trip.
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import {
  countParameters, defaultFfnHidden, MODEL_PRESETS, ModelConfigError, modelPreset, validateModelConfig
} from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { estimateStageMemory } from '../core/model/memory-estimate.ts'
import { numel, stageParamSpecs } from '../core/model/params.ts'
import { stageLayouts, wholeModelLayout } from '../core/model/stage-split.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { assertSameGrads, checkCentralDifferences, llamaRefLoss, lossesAndGrads, loudParams, refBatch, spreadIndices, type RefParams } from './llama-reference.ts'

const CFG = validateModelConfig({ arch: 'llama', vocabSize: 16, blockSize: 8, nLayer: 2, nHead: 2, dModel: 8, ffnHidden: 12, ropeTheta: 100 })
const B = 2
const T = 5

const refLoss = (p: RefParams, tokens: Int32Array, targets: Int32Array): number => llamaRefLoss(CFG, p, tokens, targets, B, T)
const batch = (V: number): { tokens: Int32Array, targets: Int32Array } => refBatch(V, B, T)

describe('model: llama architecture', function () {
  let be: ComputeBackend
  before(async () => { be = await createCpuBackend({ threads: 1 }) })
  after(async () => { await be?.dispose() })

  it('validates llama configs, fills in the defaults and leaves gpt2 configs as they were', () => {
    const gpt = { vocabSize: 256, blockSize: 64, nLayer: 4, nHead: 4, dModel: 128 }
    assert.deepEqual(validateModelConfig(gpt), gpt)
    assert.deepEqual(validateModelConfig({ ...gpt, arch: 'gpt2', tiedHead: false }), gpt, 'an explicit gpt2 normalizes to the old form')
    assert.deepEqual(validateModelConfig({ ...gpt, arch: 'llama' }),
      { arch: 'llama', ...gpt, ffnHidden: 384, ropeTheta: 10000, normEps: 1e-5 })
    assert.equal(defaultFfnHidden(768), 2048)
    assert.equal(defaultFfnHidden(4096), 10944) // Llama-7B has 11008: multiple_of 256 there
    const cases: Array<[unknown, RegExp]> = [
      [{ ...gpt, arch: 'mamba' }, /arch must be "gpt2" or "llama"/],
      [{ ...gpt, ffnHidden: 100 }, /ffnHidden is a llama field/],
      [{ ...gpt, arch: 'llama', ffnHidden: 0 }, /ffnHidden must be a positive integer/],
      [{ ...gpt, arch: 'llama', ropeTheta: -1 }, /ropeTheta must be a finite number/],
      [{ ...gpt, arch: 'llama', normEps: 0 }, /normEps must be a number in \(0, 1\)/],
      [{ ...gpt, arch: 'llama', tiedHead: true }, /tiedHead must be false/],
      [{ ...gpt, arch: 'llama', nHead: 128 }, /even head dimension/]
    ]
    for (const [cfg, msg] of cases) assert.throws(() => validateModelConfig(cfg), (e: unknown) => e instanceof ModelConfigError && msg.test(e.message))
  })

  it('presets count the parameters their layouts hold', () => {
    const want: Record<string, number> = { 'llama-20m': 19_895_520, 'llama-60m': 59_840_640, 'llama-125m': 123_818_880 }
    for (const [name, n] of Object.entries(want)) {
      const c = modelPreset(name)
      assert.deepEqual(validateModelConfig({ ...c }), c)
      assert.equal(countParameters(c), n, name)
      assert.equal(stageParamSpecs(wholeModelLayout(c)).reduce((a, s) => a + numel(s.shape), 0), n, name)
      assert.equal(countParameters(c, { tiedHead: true }), n - c.vocabSize * c.dModel)
    }
    for (const c of Object.values(MODEL_PRESETS)) {
      assert.equal(stageParamSpecs(wholeModelLayout(c)).reduce((a, s) => a + numel(s.shape), 0), countParameters(c))
    }
    const names = stageParamSpecs(wholeModelLayout(CFG)).map(s => s.name)
    assert.ok(!names.some(n => n.endsWith('.bias') || n.startsWith('wpe')), names.join(' '))
    assert.deepEqual(stageParamSpecs(wholeModelLayout(CFG)).find(s => s.name === 'layers.1.mlp.gate_up_proj.weight')?.shape, [24, 8])
    assert.deepEqual(stageParamSpecs(wholeModelLayout(CFG)).find(s => s.name === 'layers.1.mlp.down_proj.weight')?.shape, [8, 12])
  })

  it('forward loss and every gradient match a float64 reference and its central differences', async () => {
    const model = new GptModel(be, CFG, { seed: 3 })
    try {
      const params = await loudParams(model)
      const { tokens, targets } = batch(CFG.vocabSize)
      await model.zeroGrad()
      const loss = await model.forward(tokens, B, T, targets) as number
      await model.backward()
      const grads = await model.downloadGrads()
      const p64 = new Map([...params].map(([k, v]) => [k, Float64Array.from(v)]))
      const ref = refLoss(p64, tokens, targets)
      assert.ok(Math.abs(loss - ref) < 1e-5 * Math.max(1, ref), `loss ${loss} vs float64 ${ref}`)
      assert.ok(loss > 1.5, `a nontrivial loss, got ${loss}`)
      const checked = checkCentralDifferences(p64, grads, () => refLoss(p64, tokens, targets), spreadIndices)
      assert.equal(checked, 4 * p64.size)
    } finally {
      model.dispose()
    }
  })

  it('a 2-stage split computes the whole model: same loss, gradients and parameter names', async () => {
    const whole = new GptModel(be, CFG, { seed: 5 })
    const split = new GptModel(be, CFG, { seed: 5, stages: 2 })
    try {
      assert.deepEqual(split.stages.map(s => s.params.specs.map(x => x.name)).flat(), whole.stages[0].params.specs.map(x => x.name))
      assert.ok(split.stages[1].params.has('norm.weight') && !split.stages[1].params.has('embed_tokens.weight'))
      const { tokens, targets } = batch(CFG.vocabSize)
      const { losses, grads } = await lossesAndGrads([whole, split], tokens, targets, B, T)
      assert.ok(Math.abs(losses[0] - losses[1]) < 1e-6, `${losses[0]} vs ${losses[1]}`)
      assertSameGrads(grads[0], grads[1], 1e-6)
    } finally {
      whole.dispose()
      split.dispose()
    }
    // and with a bottleneck at the boundary, a llama split still runs both ways
    const bn = new GptModel(be, CFG, { seed: 5, stages: 2, bottleneck: 4 })
    try {
      const { tokens, targets } = batch(CFG.vocabSize)
      const l = await bn.forward(tokens, B, T, targets) as number
      await bn.backward()
      assert.ok(Number.isFinite(l))
      assert.ok((await bn.downloadGrads()).has('h.0.bottleneck_down.weight'))
    } finally {
      bn.dispose()
    }
  })

  it('attention "flash" in a llama config computes what full attention does', async () => {
    const flashCfg = validateModelConfig({ ...CFG, attention: 'flash' })
    assert.equal(flashCfg.attention, 'flash')
    const models = [new GptModel(be, CFG, { seed: 9 }), new GptModel(be, flashCfg, { seed: 9 })]
    try {
      const { tokens, targets } = batch(CFG.vocabSize)
      const { losses, grads } = await lossesAndGrads(models, tokens, targets, B, T)
      assert.ok(Math.abs(losses[0] - losses[1]) < 1e-5, `${losses[0]} vs ${losses[1]}`)
      assertSameGrads(grads[0], grads[1], 1e-5)
    } finally {
      for (const m of models) m.dispose()
    }
  })

  it('the stage memory estimate knows the llama layout', () => {
    const c = modelPreset('llama-20m')
    const [s0, s1] = stageLayouts(c, 2)
    const e0 = estimateStageMemory(c, s0, { batch: 2, seqLen: 64 })
    const e1 = estimateStageMemory(c, s1, { batch: 2, seqLen: 64 })
    assert.equal(e0.parameters + e1.parameters, countParameters(c))
    assert.equal(e0.weights, 4 * e0.parameters)
    // stage 0 saves per block 9 BTC + 3 BTH + 2 BT + 2 B NH T^2 floats
    const BT = 128; const C = 160; const H = 448; const att = 2 * 5 * 64 * 64
    const floats0 = 6 * (9 * BT * C + 3 * BT * H + 2 * BT + 2 * att) + 9 * BT * C + 3 * BT * H + 2 * att + BT * C + 2 * 64 * C + BT + BT * C
    assert.equal(e0.activations, 4 * floats0)
    assert.ok(e1.total > e0.total, 'the head stage holds the logits')
  })
})
