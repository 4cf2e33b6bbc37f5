// Grouped-query attention (config nKvHead, core/model/gqa.ts): config rules, parameter counts and the
// preset, a 2-layer GQA model's loss and every gradient against a float64 reference written here to
// transformers' Llama semantics (repeat_kv: query head h reads K/V head h / (NH / NKV)) and its central
// differences, the expansion with NKV = NH equal to plain MHA bit for bit, the stage split, a
// checkpoint round trip, the memory estimate's GQA term, and the WebGPU backend (the expansion uses
// the encoder kernels every backend has) against the CPU, with recompute on.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ComputeBackend, Tensor } from '../core/contracts/backend.ts'
import { countParameters, ModelConfigError, modelPreset, validateModelConfig, type ModelConfig } from '../core/model/config.ts'
import { createKvExpansion, freeKvExpansion, kvExpansionFloats, kvExpansionRows } from '../core/model/gqa.ts'
import { GptModel } from '../core/model/gpt.ts'
import { allocLlamaBlockActivations, allocLlamaBlockScratch, llamaBlockBackward, llamaBlockForward, type LlamaBlockParams } from '../core/model/llama-layers.ts'
import { estimateStageMemory } from '../core/model/memory-estimate.ts'
import { numel, stageParamSpecs } from '../core/model/params.ts'
import { stageLayouts, wholeModelLayout } from '../core/model/stage-split.ts'
import { loadCheckpoint, saveCheckpoint } from '../core/train/checkpoint.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { createWebGpuBackend } from '../plugins/backend-webgpu/index.ts'
import { probeWebGpu, skipOrFail } from './backend-webgpu-helpers.ts'
import { assertSameGrads, checkCentralDifferences, llamaRefLoss, lossesAndGrads, loudParams, refBatch, spreadIndices, type RefParams } from './llama-reference.ts'

const CFG = validateModelConfig({ arch: 'llama', vocabSize: 16, blockSize: 8, nLayer: 2, nHead: 4, nKvHead: 2, dModel: 16, ffnHidden: 12, ropeTheta: 100 })
const B = 2
const T = 5

const refLoss = (c: ModelConfig, p: RefParams, tokens: Int32Array, targets: Int32Array): number => llamaRefLoss(c, p, tokens, targets, B, T)
const batch = (V: number): { tokens: Int32Array, targets: Int32Array } => refBatch(V, B, T)

describe('model: grouped-query attention', function () {
  let be: ComputeBackend
  before(async () => { be = await createCpuBackend({ threads: 1 }) })
  after(async () => { await be?.dispose() })

  it('validates nKvHead: divides nHead, >= 1, llama only; nKvHead = nHead normalizes away', () => {
    const base = { arch: 'llama', vocabSize: 16, blockSize: 8, nLayer: 2, nHead: 4, dModel: 16 }
    assert.equal(validateModelConfig({ ...base, nKvHead: 2 }).nKvHead, 2)
    assert.equal(validateModelConfig({ ...base, nKvHead: 1 }).nKvHead, 1, 'multi-query attention')
    assert.deepEqual(validateModelConfig({ ...base, nKvHead: 4 }), validateModelConfig(base), 'MHA configs (and their run ids) stay as they were')
    assert.ok(!('nKvHead' in validateModelConfig(base)))
    const cases: Array<[unknown, RegExp]> = [
      [{ ...base, nKvHead: 3 }, /nKvHead must be a positive integer dividing nHead \(4\), got 3/],
      [{ ...base, nKvHead: 0 }, /nKvHead must be a positive integer dividing nHead/],
      [{ ...base, nKvHead: 8 }, /nKvHead must be a positive integer dividing nHead/],
      [{ ...base, nKvHead: 1.5 }, /nKvHead must be a positive integer/],
      [{ ...base, nKvHead: '2' }, /nKvHead must be a positive integer/],
      [{ ...base, arch: 'gpt2', nKvHead: 2 }, /nKvHead is a llama field/],
      [{ ...base, arch: undefined, nKvHead: 2 }, /nKvHead is a llama field/]
    ]
    for (const [cfg, msg] of cases) {
      assert.throws(() => validateModelConfig(cfg), (e: unknown) => e instanceof ModelConfigError && e.code === 'ERR_CONFIG' && msg.test(e.message), JSON.stringify(cfg))
    }
  })

  it('parameters: Wqkv is [C + 2 Ckv, C]; the llama-125m-gqa preset counts what its layout holds', () => {
    const qkv = stageParamSpecs(wholeModelLayout(CFG)).find(s => s.name === 'layers.0.self_attn.qkv_proj.weight')
    assert.deepEqual(qkv?.shape, [16 + 2 * 8, 16])
    const c = modelPreset('llama-125m-gqa')
    assert.equal(c.nKvHead, 2)
    assert.deepEqual(validateModelConfig({ ...c }), c)
    const mha = modelPreset('llama-125m')
    assert.deepEqual({ ...c, nKvHead: undefined }, { ...mha, nKvHead: undefined }, 'llama-125m with 2 K/V heads, nothing else changed')
    assert.equal(countParameters(c), 115_954_560)
    // each block's K and V lose (C - Ckv) x C = 512 x 640' worth each
    assert.equal(countParameters(mha) - countParameters(c), 12 * 2 * 512 * 640)
    assert.equal(stageParamSpecs(wholeModelLayout(c)).reduce((a, s) => a + numel(s.shape), 0), countParameters(c))
    for (const S of [2, 3]) {
      assert.equal(stageLayouts(c, S).flatMap(stageParamSpecs).reduce((a, s) => a + numel(s.shape), 0), countParameters(c), `${S} stages`)
    }
  })

  it('the expansion rows repeat each K/V head for its group of query heads', () => {
    // C 8, NH 4 (hd 2), NKV 2: q rows 0..7; k heads at rows 8..9 and 10..11; v heads at 12..13 and 14..15
    assert.deepEqual([...kvExpansionRows(8, 4, 2)], [
      0, 1, 2, 3, 4, 5, 6, 7,
      8, 9, 8, 9, 10, 11, 10, 11,
      12, 13, 12, 13, 14, 15, 14, 15
    ])
    assert.deepEqual([...kvExpansionRows(4, 2, 2)], [...Array(12).keys()], 'NKV = NH: the identity')
  })

  it('forward loss and every gradient match a float64 reference and its central differences', async function () {
    this.timeout(60_000)
    for (const cfg of [CFG, validateModelConfig({ ...CFG, nKvHead: 1 })]) {
      const model = new GptModel(be, cfg, { seed: 3 })
      try {
        const params = await loudParams(model)
        const { tokens, targets } = batch(cfg.vocabSize)
        await model.zeroGrad()
        const loss = await model.forward(tokens, B, T, targets) as number
        await model.backward()
        const grads = await model.downloadGrads()
        const p64 = new Map([...params].map(([k, v]) => [k, Float64Array.from(v)]))
        const ref = refLoss(cfg, p64, tokens, targets)
        assert.ok(Math.abs(loss - ref) < 1e-5 * Math.max(1, ref), `NKV ${cfg.nKvHead}: loss ${loss} vs float64 ${ref}`)
        assert.ok(loss > 1.5, `a nontrivial loss, got ${loss}`)
        if (cfg !== CFG) continue // the gradients once, with groups of 2
        // Wqkv: rows of q, of both K heads and of both V heads; elsewhere spread indices
        const checked = checkCentralDifferences(p64, grads, () => refLoss(cfg, p64, tokens, targets),
          (name, w) => name.endsWith('qkv_proj.weight') ? [3, 16 * 16 + 5, 20 * 16 + 7, 24 * 16 + 2, 28 * 16 + 15, 31 * 16 + 9] : spreadIndices(name, w))
        assert.ok(checked >= 4 * p64.size)
      } finally {
        model.dispose()
      }
    }
  })

  it('the expansion with NKV = NH computes plain multi-head attention bit for bit (forward and backward)', async () => {
    const cfg = validateModelConfig({ ...CFG, nKvHead: undefined })
    const C = cfg.dModel; const NH = cfg.nHead; const H = cfg.ffnHidden as number
    const mk = (shape: number[], seed: number): Tensor => be.upload(Float32Array.from({ length: shape.reduce((a, b) => a * b) }, (_, i) => Math.sin(seed * 31 + i * 0.7) * 0.5), shape)
    const param = (shape: number[], seed: number): { w: Tensor, g: Tensor } => ({ w: mk(shape, seed), g: be.alloc(shape) })
    const kv = createKvExpansion(be, C, NH, NH)
    const results: Float32Array[][] = []
    const held: Tensor[] = []
    try {
      for (const expand of [null, kv]) {
        const p: LlamaBlockParams = {
          attnNorm: param([C], 1), qkvw: param([3 * C, C], 2), ow: param([C, C], 3), ffnNorm: param([C], 4), gateUpw: param([2 * H, C], 5), downw: param([C, H], 6)
        }
        const a = allocLlamaBlockActivations(be, B, T, C, NH, H)
        const s = allocLlamaBlockScratch(be, B, T, C, NH, H)
        const x = mk([B, T, C], 7)
        const dres = mk([B, T, C], 8)
        const d = { NH, theta: 100, eps: 1e-5, kv: expand }
        await llamaBlockForward(be, p, a, x, d)
        await llamaBlockBackward(be, p, a, s, x, dres, d)
        const out: Float32Array[] = [await be.download(a.residual3) as Float32Array, await be.download(dres) as Float32Array]
        for (const q of Object.values(p)) out.push(await be.download(q.g) as Float32Array)
        results.push(out)
        held.push(x, dres, ...Object.values(a).filter((t): t is Tensor => t != null), ...Object.values(s).filter((t): t is Tensor => t != null),
          ...Object.values(p).flatMap(q => [q.w, q.g]))
      }
      assert.equal(results[0].length, 8)
      results[0].forEach((r, i) => assert.deepEqual(results[1][i], r, `output ${i}`))
    } finally {
      freeKvExpansion(be, kv)
      for (const t of held) be.free(t)
    }
  })

  it('a 2-stage split and a checkpoint round trip keep the GQA model', async () => {
    const whole = new GptModel(be, CFG, { seed: 5 })
    const split = new GptModel(be, CFG, { seed: 5, stages: 2 })
    const dir = await mkdtemp(join(tmpdir(), 'ls-gqa-'))
    try {
      const { tokens, targets } = batch(CFG.vocabSize)
      const { losses, grads } = await lossesAndGrads([whole, split], tokens, targets, B, T)
      assert.ok(Math.abs(losses[0] - losses[1]) < 1e-6, `${losses[0]} vs ${losses[1]}`)
      assertSameGrads(grads[0], grads[1], 1e-6)
      const path = join(dir, 'gqa.safetensors')
      const params = await whole.downloadParams()
      await saveCheckpoint(path, { config: CFG, layout: { stages: 1, bottleneck: 0, stage: null }, params })
      const ck = await loadCheckpoint(path, { optimizer: false })
      assert.deepEqual(ck.config, CFG)
      assert.deepEqual(ck.params.get('layers.1.self_attn.qkv_proj.weight'), params.get('layers.1.self_attn.qkv_proj.weight'))
      const back = new GptModel(be, ck.config, { params: ck.params, stages: 2 })
      try {
        assert.equal(await back.forward(tokens, B, T, targets), losses[0])
      } finally {
        back.dispose()
      }
    } finally {
      whole.dispose()
      split.dispose()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('on the WebGPU backend, a GQA model with recompute computes what the CPU backend does', async function () {
    this.timeout(120_000)
    const probe = await probeWebGpu()
    if (probe.missing !== null) { skipOrFail(this, probe.missing); return }
    const gpu = await createWebGpuBackend({ allowSoftwareGpu: true })
    try {
      const cfg = validateModelConfig({ ...CFG, recompute: true, attention: 'flash' })
      const { tokens, targets } = batch(cfg.vocabSize)
      const out: Array<{ loss: number, grads: Map<string, Float32Array> }> = []
      for (const backend of [be, gpu]) {
        const m = new GptModel(backend, cfg, { seed: 4, stages: 2 })
        try {
          await loudParams(m)
          const loss = await m.forward(tokens, B, T, targets) as number
          await m.backward()
          out.push({ loss, grads: await m.downloadGrads() })
        } finally {
          m.dispose()
        }
      }
      assert.ok(Math.abs(out[0].loss - out[1].loss) < 1e-4 * Math.max(1, out[0].loss), `cpu ${out[0].loss} vs webgpu ${out[1].loss}`)
      for (const [k, g] of out[0].grads) {
        const h = out[1].grads.get(k) as Float32Array
        let gmax = 0
        for (const x of g) gmax = Math.max(gmax, Math.abs(x))
        for (let i = 0; i < g.length; i++) assert.ok(Math.abs(g[i] - h[i]) < 1e-3 * gmax + 1e-6, `${k}[${i}]: cpu ${g[i]} vs webgpu ${h[i]} (max |g| ${gmax})`)
      }
    } finally {
      await gpu.dispose()
    }
  })

  it('the memory estimate: fewer parameters, plus the stage\'s weight expansion', () => {
    const gqa = modelPreset('llama-125m-gqa')
    const mha = modelPreset('llama-125m')
    const opts = { batch: 2, seqLen: 256 }
    for (const [lg, lm] of stageLayouts(gqa, 3).map((l, i) => [l, stageLayouts(mha, 3)[i]] as const)) {
      const eg = estimateStageMemory(gqa, lg, opts)
      const em = estimateStageMemory(mha, lm, opts)
      assert.equal(em.parameters - eg.parameters, 4 * 2 * 512 * 640, 'four blocks a stage')
      assert.equal(eg.activations - em.activations, 4 * kvExpansionFloats(640))
      assert.equal(kvExpansionFloats(640), 9 * 640 * 640 + 5 * 640)
      assert.equal(eg.workspace, em.workspace)
      assert.ok(eg.total < em.total)
    }
  })
})
