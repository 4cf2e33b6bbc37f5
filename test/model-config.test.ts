// Model config validation, stage split, parameter layout and init, LR schedule, and AdamW's
// clipping and non-finite skip.
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { ConfigError } from '../core/errors.ts'
import {
  countParameters, MODEL_PRESETS, ModelConfigError, modelPreset, parseModelConfig, validateModelConfig
} from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { learningRate, validateLrSchedule } from '../core/model/lr-schedule.ts'
import { initialValues, stageParamSpecs } from '../core/model/params.ts'
import { Prng } from '../core/model/prng.ts'
import { splitStages, stageLayouts, wholeModelLayout } from '../core/model/stage-split.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'

describe('model: config and layout', function () {
  it('presets are valid and tiny has the GPT-2 shape asked for', () => {
    for (const name of Object.keys(MODEL_PRESETS)) assert.deepEqual(validateModelConfig({ ...modelPreset(name) }), modelPreset(name))
    assert.deepEqual(modelPreset('tiny'), { vocabSize: 256, blockSize: 64, nLayer: 4, nHead: 4, dModel: 128 })
    assert.throws(() => modelPreset('huge'), ModelConfigError)
    assert.throws(() => modelPreset('constructor'), ModelConfigError)
  })

  it('rejects bad configs with ModelConfigError (a ConfigError) naming the field', () => {
    const ok = { vocabSize: 256, blockSize: 64, nLayer: 4, nHead: 4, dModel: 128 }
    const cases: Array<[unknown, RegExp]> = [
      [{ ...ok, nHead: 3 }, /nHead \(3\) must divide dModel/],
      [{ ...ok, nLayer: 0 }, /nLayer must be a positive integer/],
      [{ ...ok, dModel: 12.5 }, /dModel must be a positive integer/],
      [{ ...ok, vocabSize: '256' }, /vocabSize must be a positive integer/],
      [{ ...ok, blockSize: undefined }, /blockSize must be a positive integer/],
      [{ ...ok, nEmbd: 3 }, /unknown field "nEmbd"/],
      [[1, 2], /must be an object/],
      [null, /must be an object/]
    ]
    for (const [cfg, msg] of cases) {
      assert.throws(() => validateModelConfig(cfg), (err: unknown) => err instanceof ModelConfigError && err instanceof ConfigError && msg.test(err.message))
    }
    assert.throws(() => parseModelConfig('{"vocabSize": 2,', 'my.json'), /my\.json: not valid JSON/)
    assert.throws(() => parseModelConfig('{"vocabSize": 2}', 'my.json'), /my\.json: model config: blockSize/)
    assert.deepEqual(parseModelConfig(JSON.stringify(ok)), ok)
  })

  it('splits blocks into balanced contiguous stages, longer stages first', () => {
    const cfg = { ...modelPreset('tiny'), nLayer: 7 }
    const ranges = splitStages(cfg, 3).map(r => [r.firstBlock, r.endBlock])
    assert.deepEqual(ranges, [[0, 3], [3, 5], [5, 7]])
    assert.deepEqual(splitStages(cfg, 7).map(r => r.endBlock - r.firstBlock), [1, 1, 1, 1, 1, 1, 1])
    assert.throws(() => splitStages(cfg, 8), ModelConfigError)
    assert.throws(() => splitStages(cfg, 0), ModelConfigError)
    assert.throws(() => stageLayouts(cfg, 2, 129), ModelConfigError)
  })

  it('lays out HF GPT-2 names with [OC,C] weights, and counts parameters', () => {
    const cfg = modelPreset('tiny')
    const specs = stageParamSpecs(wholeModelLayout(cfg))
    const byName = new Map(specs.map(s => [s.name, s]))
    assert.deepEqual(byName.get('h.0.attn.c_attn.weight')?.shape, [384, 128])
    assert.deepEqual(byName.get('h.3.mlp.c_proj.weight')?.shape, [128, 512])
    assert.deepEqual(byName.get('lm_head.weight')?.shape, [256, 128])
    assert.equal(byName.get('h.1.ln_2.bias')?.decay, false)
    assert.equal(byName.get('h.1.attn.c_attn.bias')?.decay, false)
    assert.equal(byName.get('wte.weight')?.decay, true)
    assert.equal(specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0), countParameters(cfg))
    // each stage holds its slice; with a bottleneck, the projections sit on the boundary blocks
    const [a, b] = stageLayouts(cfg, 2, 16).map(stageParamSpecs)
    assert.equal(a[0].name, 'wte.weight')
    assert.deepEqual(a.at(-2)?.name, 'h.1.bottleneck_down.weight')
    assert.deepEqual(a.at(-2)?.shape, [16, 128])
    assert.deepEqual(b[0].name, 'h.2.bottleneck_up.weight')
    assert.deepEqual(b[0].shape, [128, 16])
    assert.equal(b.at(-1)?.name, 'lm_head.weight')
  })

  it('init is seeded per tensor: deterministic, GPT-2 scaled, independent of the split', () => {
    const cfg = modelPreset('tiny')
    const specs = stageParamSpecs(wholeModelLayout(cfg))
    const spec = (n: string) => specs.find(s => s.name === n) as (typeof specs)[number]
    const w = initialValues(spec('h.2.attn.c_attn.weight'), 42)
    assert.deepEqual(w, initialValues(spec('h.2.attn.c_attn.weight'), 42))
    assert.notDeepEqual(w, initialValues(spec('h.2.attn.c_attn.weight'), 43))
    assert.notDeepEqual(w.subarray(0, 100), initialValues(spec('h.1.attn.c_attn.weight'), 42).subarray(0, 100))
    const std = (x: Float32Array): number => Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length)
    assert.ok(Math.abs(std(w) - 0.02) < 0.001, `std ${std(w)}`)
    const proj = initialValues(spec('h.2.mlp.c_proj.weight'), 42)
    assert.ok(Math.abs(std(proj) - 0.02 / Math.sqrt(8)) < 0.0005, `c_proj std ${std(proj)}`)
    assert.ok(initialValues(spec('h.0.ln_1.weight'), 1).every(v => v === 1))
    const split = stageLayouts(cfg, 4).flatMap(stageParamSpecs).find(s => s.name === 'h.2.attn.c_attn.weight')
    assert.deepEqual(initialValues(split as (typeof specs)[number], 42), w)
  })

  it('Prng streams are reproducible and roughly uniform / normal', () => {
    const a = new Prng('x')
    const b = new Prng('x')
    const xs = Array.from({ length: 20000 }, () => a.nextFloat())
    assert.deepEqual(xs.slice(0, 10), Array.from({ length: 10 }, () => b.nextFloat()))
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length
    assert.ok(Math.abs(mean - 0.5) < 0.01 && xs.every(x => x >= 0 && x < 1))
    const n = new Prng(5)
    const ns = Array.from({ length: 20000 }, () => n.normal())
    const m = ns.reduce((s, x) => s + x, 0) / ns.length
    const v = ns.reduce((s, x) => s + (x - m) ** 2, 0) / ns.length
    assert.ok(Math.abs(m) < 0.03 && Math.abs(v - 1) < 0.05, `mean ${m} var ${v}`)
  })

  it('learning rate: linear warmup, cosine to the floor, floor after', () => {
    const s = validateLrSchedule({ maxLr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 110 })
    assert.equal(learningRate(0, s), 1e-4)
    assert.equal(learningRate(9, s), 1e-3)
    assert.equal(learningRate(10, s), 1e-3)
    assert.ok(Math.abs(learningRate(60, s) - 5.5e-4) < 1e-12)
    assert.equal(learningRate(110, s), 1e-4)
    assert.equal(learningRate(5000, s), 1e-4)
    for (let i = 11; i < 110; i++) assert.ok(learningRate(i, s) < learningRate(i - 1, s))
    assert.throws(() => validateLrSchedule({ ...s, minLr: 1 }), ModelConfigError)
    assert.throws(() => validateLrSchedule({ ...s, warmupSteps: -1 }), ModelConfigError)
  })

  describe('AdamW', function () {
    let be: ComputeBackend
    before(async () => { be = await createCpuBackend({ threads: 1 }) })
    after(async () => { await be.dispose() })
    const cfg = validateModelConfig({ vocabSize: 11, blockSize: 8, nLayer: 1, nHead: 2, dModel: 8 })
    const tokens = Int32Array.from({ length: 16 }, (_, i) => i % 11)
    const targets = Int32Array.from({ length: 16 }, (_, i) => (i + 1) % 11)

    it('skips the step, changing nothing, when the gradient is not finite', async () => {
      const m = new GptModel(be, cfg, { seed: 1 })
      const p = await m.downloadParams()
      const bad = new Map(p)
      bad.set('h.0.mlp.c_fc.weight', (p.get('h.0.mlp.c_fc.weight') as Float32Array).map((x, i) => i === 0 ? Infinity : x))
      await m.loadParams(bad)
      await m.zeroGrad()
      await m.forward(tokens, 2, 8, targets)
      await m.backward()
      const r = await m.update({ lr: 1e-2 })
      assert.equal(r.applied, false)
      assert.ok(!Number.isFinite(r.gradNorm))
      assert.equal(m.optimizerStep, 0)
      assert.deepEqual(await m.downloadParams(), bad)
      m.dispose()
    })

    it('clips to the global norm', async () => {
      const m = new GptModel(be, cfg, { seed: 1, optimizer: { gradClip: 0.01 } })
      await m.zeroGrad()
      await m.forward(tokens, 2, 8, targets)
      await m.backward()
      const sumSq = await m.stages[0].gradSumSquares()
      const r = await m.update({ lr: 0.1, gradScale: 2 })
      assert.equal(r.applied, true)
      assert.ok(Math.abs(r.gradNorm - 2 * Math.sqrt(sumSq)) < 1e-9)
      assert.ok(Math.abs(r.clipScale * r.gradNorm - 0.01) < 1e-9)
      assert.equal(m.optimizerStep, 1)
      m.dispose()
    })

    it('decays matrices and embeddings, never biases or LayerNorm', async () => {
      const m = new GptModel(be, cfg, { seed: 1, optimizer: { weightDecay: 0.5 } })
      const before = await m.downloadParams()
      await m.zeroGrad()
      await m.update({ lr: 0.1 }) // zero gradient: only decoupled decay moves weights, by (1 - lr*wd)
      const after = await m.downloadParams()
      for (const spec of m.stages[0].params.specs) {
        const b = before.get(spec.name) as Float32Array
        const a = after.get(spec.name) as Float32Array
        const want = spec.decay ? b.map(x => x * (1 - 0.05)) : b
        for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - want[i]) <= 1e-7, `${spec.name}[${i}]: ${a[i]} vs ${want[i]}`)
      }
      assert.deepEqual(after.get('h.0.ln_1.weight'), before.get('h.0.ln_1.weight'))
      m.dispose()
    })
  })
})
