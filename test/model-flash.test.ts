// The model config's `attention: 'flash'`: configs without it hash as before, a bad value is a typed
// error, a flash stage trains to the same losses and gradients as full attention, and the memory
// estimate drops the [B,NH,T,T] terms.
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { ModelConfigError, validateModelConfig, type ModelConfig } from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { estimateStageMemory } from '../core/model/memory-estimate.ts'
import { Prng } from '../core/model/prng.ts'
import { stageLayouts } from '../core/model/stage-split.ts'
import { canonicalJson } from '../core/run/manifest.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'

const SHAPE = { vocabSize: 23, blockSize: 12, nLayer: 2, nHead: 2, dModel: 16 }
const B = 2
const T = 11 // not a multiple of anything

describe('model config attention', function () {
  it('absent and "full" normalize to the same config (run ids unchanged); "flash" is kept', function () {
    const plain = validateModelConfig(SHAPE)
    assert.equal(canonicalJson(validateModelConfig({ ...SHAPE, attention: 'full' })), canonicalJson(plain))
    assert.equal(canonicalJson(plain), canonicalJson(SHAPE))
    assert.equal(validateModelConfig({ ...SHAPE, attention: 'flash' }).attention, 'flash')
  })

  it('rejects an unknown attention with a ModelConfigError', function () {
    assert.throws(() => validateModelConfig({ ...SHAPE, attention: 'sparse' }), (e: unknown) => e instanceof ModelConfigError && /attention must be "full" or "flash"/.test(e.message))
  })

  it('the memory estimate keeps no [B,NH,T,T] term with flash', function () {
    const full = validateModelConfig({ ...SHAPE, blockSize: 1024 })
    const flash = validateModelConfig({ ...SHAPE, blockSize: 1024, attention: 'flash' })
    const [layout] = stageLayouts(full, 1, 0)
    const opts = { batch: 2, seqLen: 1024 }
    const a = estimateStageMemory(full, layout.range, opts).activations
    const b = estimateStageMemory(flash, layout.range, opts).activations
    const { nLayer: L, nHead: NH } = SHAPE
    // per block and in the shared scratch: 2 B NH T^2 floats become B NH T
    assert.equal(a - b, 4 * (L + 1) * (2 * 2 * NH * 1024 * 1024 - 2 * NH * 1024))
  })
})

describe('flash attention trains like full attention', function () {
  this.timeout(60_000)
  let be: ComputeBackend
  before(async function () { be = await createCpuBackend({ threads: 0 }) })
  after(async function () { await be.dispose() })

  async function run (cfg: ModelConfig): Promise<{ losses: number[], grads: Float32Array[] }> {
    const model = new GptModel(be, cfg, { seed: 7 })
    const rng = new Prng(3)
    const losses: number[] = []
    let grads: Float32Array[] = []
    for (let step = 0; step < 3; step++) {
      const tokens = new Int32Array(B * T).map(() => rng.nextU32() % cfg.vocabSize)
      const targets = new Int32Array(B * T).map(() => rng.nextU32() % cfg.vocabSize)
      await model.zeroGrad()
      losses.push(await model.forward(tokens, B, T, targets) as number)
      await model.backward()
      if (step === 0) {
        grads = [...(await model.stages[0].params.downloadGrads()).values()]
      }
      await model.update({ lr: 1e-2 })
    }
    return { losses, grads }
  }

  it('same losses over 3 AdamW steps and the same first gradients (B=2, T=11, 2 blocks)', async function () {
    const full = await run(validateModelConfig(SHAPE))
    const flash = await run(validateModelConfig({ ...SHAPE, attention: 'flash' }))
    for (let i = 0; i < full.losses.length; i++) {
      assert.ok(Math.abs(full.losses[i] - flash.losses[i]) <= 1e-5 * (1 + Math.abs(full.losses[i])), `step ${i}: full ${full.losses[i]}, flash ${flash.losses[i]}`)
    }
    assert.equal(flash.grads.length, full.grads.length)
    for (let g = 0; g < full.grads.length; g++) {
      for (let i = 0; i < full.grads[g].length; i++) {
        const a = full.grads[g][i]; const b = flash.grads[g][i]
        assert.ok(Math.abs(a - b) <= 1e-4 * (1 + Math.abs(a)), `grad ${g}[${i}]: full ${a}, flash ${b}`)
      }
    }
  })
})
