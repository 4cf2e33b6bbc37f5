// Activation recomputation (config recompute, core/model/stage.ts): the same loss, gradients and
// AdamW steps as keeping every block's activations, bit for bit on the CPU backend (the recomputed
// forward runs the same kernels on the same inputs); the memory estimate's recompute term against a
// hand computation and against what the CPU backend really allocates.
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { ModelConfigError, modelPreset, validateModelConfig, type ModelConfig } from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { estimateStageMemory, formatBytes } from '../core/model/memory-estimate.ts'
import { stageLayouts } from '../core/model/stage-split.ts'
import { Stage } from '../core/model/stage.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'

const B = 2
const T = 6
const LLAMA = validateModelConfig({ arch: 'llama', vocabSize: 32, blockSize: 8, nLayer: 4, nHead: 4, dModel: 16, ffnHidden: 24 })
const GPT2 = validateModelConfig({ vocabSize: 32, blockSize: 8, nLayer: 4, nHead: 2, dModel: 16 })

function batch (V: number, shift: number): { tokens: Int32Array, targets: Int32Array } {
  return {
    tokens: Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3 + shift) % V),
    targets: Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 1 + shift) % V)
  }
}

/** Losses, gradients and final weights of two training steps (two microbatches each). */
async function train (be: ComputeBackend, cfg: ModelConfig, stages: number, bottleneck: number): Promise<{ losses: number[], grads: Map<string, Float32Array>, params: Map<string, Float32Array> }> {
  const m = new GptModel(be, cfg, { seed: 11, stages, bottleneck })
  try {
    const losses: number[] = []
    let grads = new Map<string, Float32Array>()
    for (let step = 0; step < 2; step++) {
      await m.zeroGrad()
      for (let micro = 0; micro < 2; micro++) {
        const { tokens, targets } = batch(cfg.vocabSize, 2 * step + micro)
        losses.push(await m.forward(tokens, B, T, targets) as number)
        await m.backward()
      }
      grads = await m.downloadGrads()
      for (const s of m.stages) await s.update({ lr: 1e-2 })
    }
    return { losses, grads, params: await m.downloadParams() }
  } finally {
    m.dispose()
  }
}

describe('model: activation recomputation', function () {
  this.timeout(60_000)
  let be: ComputeBackend
  before(async () => { be = await createCpuBackend({ threads: 2 }) })
  after(async () => { await be?.dispose() })

  it('validates recompute: true kept, false normalized away, anything else refused', () => {
    assert.equal(validateModelConfig({ ...LLAMA, recompute: true }).recompute, true)
    assert.equal(validateModelConfig({ ...GPT2, recompute: true }).recompute, true)
    assert.deepEqual(validateModelConfig({ ...GPT2, recompute: false }), GPT2, 'run ids of configs without it stay')
    assert.deepEqual(validateModelConfig({ ...LLAMA, recompute: false }), LLAMA)
    for (const bad of ['yes', 1, null]) {
      assert.throws(() => validateModelConfig({ ...LLAMA, recompute: bad }), (e: unknown) => e instanceof ModelConfigError && /recompute must be true or false/.test(e.message))
    }
  })

  const cases: Array<[string, ModelConfig, number, number]> = [
    ['llama, 1 stage', LLAMA, 1, 0],
    ['llama with GQA and flash attention, 2 stages', validateModelConfig({ ...LLAMA, nKvHead: 2, attention: 'flash' }), 2, 0],
    ['llama, 3 stages with a bottleneck', LLAMA, 3, 8],
    ['gpt2, 1 stage', GPT2, 1, 0],
    ['gpt2, 2 stages', GPT2, 2, 0]
  ]
  for (const [name, cfg, S, k] of cases) {
    it(`${name}: losses, gradients and two AdamW steps are bit-identical with recompute`, async () => {
      const plain = await train(be, cfg, S, k)
      const re = await train(be, validateModelConfig({ ...cfg, recompute: true }), S, k)
      assert.deepEqual(re.losses, plain.losses)
      assert.ok(plain.losses.every(Number.isFinite) && plain.losses[3] < plain.losses[0] + 1, plain.losses.join(' '))
      assert.equal(re.grads.size, plain.grads.size)
      for (const [n, g] of plain.grads) assert.deepEqual(re.grads.get(n), g, `gradient ${n}`)
      for (const [n, p] of plain.params) assert.deepEqual(re.params.get(n), p, `parameter ${n}`)
    })
  }

  it('the estimate: each block but one keeps only its output [B,T,C]', () => {
    const c = modelPreset('llama-20m') // C 160, H 448, NH 5, 12 blocks
    const r = validateModelConfig({ ...c, recompute: true })
    const Bx = 4; const Tx = 256; const BT = Bx * Tx; const C = 160; const H = 448
    const perBlock = 9 * BT * C + 3 * BT * H + 2 * BT + 2 * (Bx * 5 * Tx * Tx)
    for (const S of [1, 2, 4]) {
      const [l0] = stageLayouts(c, S)
      const n = l0.range.endBlock
      const e = estimateStageMemory(c, l0, { batch: Bx, seqLen: Tx })
      const er = estimateStageMemory(r, stageLayouts(r, S)[0], { batch: Bx, seqLen: Tx })
      assert.equal(e.activations - er.activations, 4 * (n - 1) * (perBlock - BT * C), `${S} stages`)
      assert.equal(er.parameters, e.parameters)
      assert.equal(er.weights + er.gradients + er.optimizer + er.workspace, e.weights + e.gradients + e.optimizer + e.workspace)
    }
    // 12 blocks on one stage at B = 8, T = 1024 (full attention): 11 x 428 MB of saved blocks go,
    // leaving the head's 3 BTV logits buffers (4.9 GB) as the largest term
    const whole = (cfg: ModelConfig): number => estimateStageMemory(cfg, stageLayouts(cfg, 1)[0], { batch: 8, seqLen: 1024 }).activations
    assert.ok(whole(c) - whole(r) > 4.6e9 && whole(r) < 0.6 * whole(c), `${whole(c)} -> ${whole(r)}`)
  })

  it('the estimate covers what the CPU backend allocates with recompute (measured), and recompute allocates less', async () => {
    const rows: string[] = []
    const heaps: number[] = []
    const base = validateModelConfig({ ...LLAMA, nLayer: 6, dModel: 32, blockSize: 64, nKvHead: 2, ffnHidden: 64 })
    for (const cfg of [base, validateModelConfig({ ...base, recompute: true })]) {
      const cb = await createCpuBackend({ threads: 0 }) // fresh: a freed block below the heap's top would hide reuse
      try {
        const layout = stageLayouts(cfg, 2)[0]
        const Bx = 4; const Tx = 64
        const heap0 = (cb as unknown as { heap: { reserved: number } }).heap.reserved
        const st = new Stage(cb, layout, { seed: 1 })
        const tokens = new Int32Array(Bx * Tx).map((_, i) => (i * 7) % cfg.vocabSize)
        const dout = new Float32Array(Bx * Tx * cfg.dModel).fill(0.01)
        for (let step = 0; step < 2; step++) {
          await st.zeroGrad()
          await st.forward({ B: Bx, T: Tx, tokens })
          await st.backward(dout)
          await st.update({ lr: 1e-3 })
        }
        const heap = (cb as unknown as { heap: { reserved: number } }).heap.reserved - heap0
        st.dispose()
        const e = estimateStageMemory(cfg, layout, { batch: Bx, seqLen: Tx })
        const tensors = e.weights + e.gradients + e.optimizer + e.activations + e.workspace
        rows.push(`recompute ${cfg.recompute === true}: backend ${formatBytes(heap)}, estimate without margin ${formatBytes(tensors)} (ratio ${(heap / tensors).toFixed(3)})`)
        assert.ok(heap <= 1.15 * tensors && heap >= 0.85 * tensors, rows.at(-1))
        heaps.push(heap)
      } finally {
        await cb.dispose()
      }
    }
    assert.ok(heaps[1] < 0.7 * heaps[0], rows.join('; '))
    console.log('      ' + rows.join('\n      '))
  })
})
