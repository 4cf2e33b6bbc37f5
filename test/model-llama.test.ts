// The llama architecture: config validation and defaults, parameter counts of the presets, a
// 2-layer forward/backward on the CPU backend against a float64 reference written here from the
// Llama definitions (RMSNorm, rotate-half RoPE as in transformers, SwiGLU, untied head), with the
// gradients checked by central differences of that reference, and the stage split round trip.
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import {
  countParameters, defaultFfnHidden, MODEL_PRESETS, ModelConfigError, modelPreset, validateModelConfig, type ModelConfig
} from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { estimateStageMemory } from '../core/model/memory-estimate.ts'
import { numel, stageParamSpecs } from '../core/model/params.ts'
import { stageLayouts, wholeModelLayout } from '../core/model/stage-split.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'

const CFG = validateModelConfig({ arch: 'llama', vocabSize: 16, blockSize: 8, nLayer: 2, nHead: 2, dModel: 8, ffnHidden: 12, ropeTheta: 100 })
const B = 2
const T = 5

type P = ReadonlyMap<string, Float64Array>

/** Mean cross-entropy of the llama model in float64 (the reference). */
function refLoss (c: ModelConfig, p: P, tokens: Int32Array, targets: Int32Array): number {
  const C = c.dModel
  const NH = c.nHead
  const hd = C / NH
  const H = c.ffnHidden as number
  const eps = c.normEps as number
  const theta = c.ropeTheta as number
  const g = (n: string): Float64Array => p.get(n) as Float64Array
  const rms = (x: Float64Array, w: Float64Array): Float64Array => {
    let ss = 0
    for (let i = 0; i < x.length; i++) ss += x[i] * x[i]
    const r = 1 / Math.sqrt(ss / x.length + eps)
    return x.map((v, i) => v * r * w[i])
  }
  const mm = (x: Float64Array, w: Float64Array, out: number): Float64Array => {
    const inn = x.length
    const y = new Float64Array(out)
    for (let o = 0; o < out; o++) for (let i = 0; i < inn; i++) y[o] += x[i] * w[o * inn + i]
    return y
  }
  let loss = 0
  for (let b = 0; b < B; b++) {
    let xs: Float64Array[] = []
    for (let t = 0; t < T; t++) xs.push(g('embed_tokens.weight').slice(tokens[b * T + t] * C, (tokens[b * T + t] + 1) * C))
    for (let l = 0; l < c.nLayer; l++) {
      const n = `layers.${l}`
      const qkv = xs.map((x, t) => {
        const v = mm(rms(x, g(`${n}.input_layernorm.weight`)), g(`${n}.self_attn.qkv_proj.weight`), 3 * C)
        for (const off of [0, C]) { // rotate q and k, rotate-half pairs (i, i + hd/2) per head
          for (let h = 0; h < NH; h++) {
            for (let i = 0; i < hd / 2; i++) {
              const a = t * theta ** (-2 * i / hd)
              const j = off + h * hd + i
              const x1 = v[j]; const x2 = v[j + hd / 2]
              v[j] = x1 * Math.cos(a) - x2 * Math.sin(a)
              v[j + hd / 2] = x1 * Math.sin(a) + x2 * Math.cos(a)
            }
          }
        }
        return v
      })
      xs = xs.map((x, t) => {
        const y = new Float64Array(C)
        for (let h = 0; h < NH; h++) {
          const s = Array.from({ length: t + 1 }, (_, u) => {
            let d = 0
            for (let i = 0; i < hd; i++) d += qkv[t][h * hd + i] * qkv[u][C + h * hd + i]
            return d / Math.sqrt(hd)
          })
          const m = Math.max(...s)
          const e = s.map(v => Math.exp(v - m))
          const z = e.reduce((a, v) => a + v, 0)
          for (let u = 0; u <= t; u++) for (let i = 0; i < hd; i++) y[h * hd + i] += e[u] / z * qkv[u][2 * C + h * hd + i]
        }
        const r2 = x.map((v, i) => v + mm(y, g(`${n}.self_attn.o_proj.weight`), C)[i])
        const gu = mm(rms(r2, g(`${n}.post_attention_layernorm.weight`)), g(`${n}.mlp.gate_up_proj.weight`), 2 * H)
        const hid = new Float64Array(H).map((_, i) => gu[i] / (1 + Math.exp(-gu[i])) * gu[H + i])
        const down = mm(hid, g(`${n}.mlp.down_proj.weight`), C)
        return r2.map((v, i) => v + down[i])
      })
    }
    for (let t = 0; t < T; t++) {
      const logits = mm(rms(xs[t], g('norm.weight')), g('lm_head.weight'), c.vocabSize)
      const m = Math.max(...logits)
      const lse = m + Math.log(logits.reduce((a, v) => a + Math.exp(v - m), 0))
      loss += lse - logits[targets[b * T + t]]
    }
  }
  return loss / (B * T)
}

function batch (V: number): { tokens: Int32Array, targets: Int32Array } {
  const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % V)
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % V)
  return { tokens, targets }
}

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
      // larger-than-init weights so attention and the norms are far from trivial
      const params = new Map<string, Float32Array>()
      for (const [k, v] of await model.downloadParams()) params.set(k, k.endsWith('norm.weight') || k.endsWith('layernorm.weight') ? v.map((x, i) => 1 + 0.1 * Math.sin(i + 1)) : v.map(x => x * 15))
      await model.loadParams(params)
      const { tokens, targets } = batch(CFG.vocabSize)
      await model.zeroGrad()
      const loss = await model.forward(tokens, B, T, targets) as number
      await model.backward()
      const grads = await model.downloadGrads()
      const p64 = new Map([...params].map(([k, v]) => [k, Float64Array.from(v)]))
      const ref = refLoss(CFG, p64, tokens, targets)
      assert.ok(Math.abs(loss - ref) < 1e-5 * Math.max(1, ref), `loss ${loss} vs float64 ${ref}`)
      assert.ok(loss > 1.5, `a nontrivial loss, got ${loss}`)
      let checked = 0
      for (const [name, w] of p64) {
        const g = grads.get(name) as Float32Array
        let gmax = 0
        for (const x of g) gmax = Math.max(gmax, Math.abs(x))
        assert.ok(gmax > 0, `${name} has a gradient`)
        for (let n = 0; n < 4; n++) {
          const i = (n * 7919 + 13) % w.length
          const h = 1e-5
          const old = w[i]
          w[i] = old + h; const up = refLoss(CFG, p64, tokens, targets)
          w[i] = old - h; const dn = refLoss(CFG, p64, tokens, targets)
          w[i] = old
          const fd = (up - dn) / (2 * h)
          assert.ok(Math.abs(fd - g[i]) < 2e-3 * gmax + 1e-6, `${name}[${i}]: backend ${g[i]} vs finite difference ${fd} (max |g| ${gmax})`)
          checked++
        }
      }
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
      const losses: number[] = []
      const grads: Array<Map<string, Float32Array>> = []
      for (const m of [whole, split]) {
        await m.zeroGrad()
        losses.push(await m.forward(tokens, B, T, targets) as number)
        await m.backward()
        grads.push(await m.downloadGrads())
      }
      assert.ok(Math.abs(losses[0] - losses[1]) < 1e-6, `${losses[0]} vs ${losses[1]}`)
      for (const [k, g] of grads[0]) {
        const h = grads[1].get(k) as Float32Array
        for (let i = 0; i < g.length; i++) assert.ok(Math.abs(g[i] - h[i]) < 1e-6, `${k}[${i}]`)
      }
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
      const losses: number[] = []
      const grads: Array<Map<string, Float32Array>> = []
      for (const m of models) {
        losses.push(await m.forward(tokens, B, T, targets) as number)
        await m.backward()
        grads.push(await m.downloadGrads())
      }
      assert.ok(Math.abs(losses[0] - losses[1]) < 1e-5, `${losses[0]} vs ${losses[1]}`)
      for (const [k, g] of grads[0]) {
        const h = grads[1].get(k) as Float32Array
        for (let i = 0; i < g.length; i++) assert.ok(Math.abs(g[i] - h[i]) < 1e-5, `${k}[${i}]: ${g[i]} vs ${h[i]}`)
      }
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
