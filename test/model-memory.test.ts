// Presets' parameter counts, the stage memory estimate (core/model/memory-estimate.ts) against hand
// computations and against what the CPU backend really allocates training a stage, memory sizes
// (--max-memory), and a pinned stage over the budget refused at start.
import assert from 'node:assert/strict'
import { countParameters, MODEL_PRESETS, modelPreset } from '../core/model/config.ts'
import {
  checkStageFits, estimateStageMemory, formatBytes, MAX_MEMORY_BYTES, MemorySizeError, parseMemorySize, RUNTIME_BASE_BYTES,
  StageMemoryError, stageMemoryTotals
} from '../core/model/memory-estimate.ts'
import { stageLayouts } from '../core/model/stage-split.ts'
import { Stage } from '../core/model/stage.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { parseTrainingOptions, startTrainingRuntime } from '../core/runtime/training-runtime.ts'

describe('model presets and memory estimates', () => {
  it('countParameters of every preset; gpt2-124m is GPT-2 small plus the untied head', () => {
    // the GPT-2 presets (the llama ones are counted beside the llama architecture)
    const counts = Object.fromEntries(['tiny', 'small', 'gpt2-30m', 'gpt2-124m'].map(k => [k, countParameters(MODEL_PRESETS[k])]))
    assert.deepEqual(counts, { tiny: 867_072, small: 4_902_912, 'gpt2-30m': 30_732_800, 'gpt2-124m': 163_037_184 })
    const g = modelPreset('gpt2-124m')
    assert.deepEqual(g, { vocabSize: 50257, blockSize: 1024, nLayer: 12, nHead: 12, dModel: 768 })
    // GPT-2 ties the head to wte: 124,439,808; the untied head adds V x C
    assert.equal(countParameters(g, { tiedHead: true }), 124_439_808)
    assert.equal(countParameters(g) - countParameters(g, { tiedHead: true }), 50257 * 768)
  })

  it('the estimate of tiny split in 2 at B=2, T=16 matches the hand computation', () => {
    const cfg = modelPreset('tiny') // V 256, maxT 64, L 4, NH 4, C 128
    const [s0, s1] = stageLayouts(cfg, 2)
    // params: a block is 12C^2 + 13C = 198,272; stage 0: wte 256x128 + wpe 64x128 + 2 blocks; stage 1: 2 blocks + ln_f 2C + lm_head VxC
    const P0 = 32768 + 8192 + 2 * 198272
    const P1 = 2 * 198272 + 256 + 32768
    // BT = 32, C = 128, B NH T^2 = 2048; per block 16 BTC + 4 BT + 2 B NH T^2 = 69,760 floats; scratch 14 BTC + 2 B NH T^2 = 61,440; dres BTC = 4096
    const blocks = 2 * 69760 + 61440 + 4096
    const act0 = 4 * (blocks + 32 + 4096) // + token ids BT + embedded input BTC
    const act1 = 4 * (blocks + 4096 + 2 * 4096 + 3 * 32 * 256 + 4 * 32) // + hidden input BTC + head 2 BTC + 3 BTV + 4 BT
    const work = 8 * 32 * 512 // 8 BT x max(4C, V)
    for (const [layout, P, act] of [[s0, P0, act0], [s1, P1, act1]] as const) {
      const e = estimateStageMemory(cfg, layout, { batch: 2, seqLen: 16, optimizer: 'adamw' })
      const tensors = 16 * P + act + work
      const margin = Math.ceil(RUNTIME_BASE_BYTES + 8 * P + 0.1 * tensors)
      assert.deepEqual(e, { parameters: P, weights: 4 * P, gradients: 4 * P, optimizer: 8 * P, activations: act, workspace: work, margin, total: tensors + margin })
    }
    // a bare StageRange and its config give the same figure; the totals helper lists every stage
    assert.deepEqual(estimateStageMemory(cfg, s1.range, { batch: 2, seqLen: 16 }), estimateStageMemory(cfg, s1, { batch: 2, seqLen: 16 }))
    assert.deepEqual(stageMemoryTotals(cfg, 2, 0, { batch: 2, seqLen: 16 }), [s0, s1].map(l => estimateStageMemory(cfg, l, { batch: 2, seqLen: 16 }).total))
  })

  it('the attention [B,NH,T,T] buffers grow the activations as T^2', () => {
    const cfg = modelPreset('gpt2-124m')
    const mid = stageLayouts(cfg, 12)[5] // one block, neither embedding nor head
    const a = (T: number): number => estimateStageMemory(cfg, mid, { batch: 1, seqLen: T }).activations
    // one block + scratch: 4 x (30 TC + 4T + 4 NH T^2) + dres and input 2 TC
    assert.equal(a(1024), 4 * (30 * 1024 * 768 + 4 * 1024 + 4 * 12 * 1024 * 1024 + 2 * 1024 * 768))
    // the linear terms cancel in a(2T) - 2 a(T): what is left is the T^2 buffers' growth
    assert.equal(a(1024) - 2 * a(512), 4 * 4 * 12 * (1024 ** 2 - 2 * 512 ** 2))
  })

  it('estimates cover what the CPU backend allocates training a stage (measured)', async function () {
    this.timeout(60_000)
    const cfg = modelPreset('tiny')
    const rows: string[] = []
    for (const [S, s, k] of [[1, 0, 0], [2, 1, 32], [2, 0, 32]] as const) {
      // a fresh backend each time: a freed block is reused below the heap's top, which would hide it
      const be = await createCpuBackend({ threads: 0 })
      try {
        const layout = stageLayouts(cfg, S, k)[s]
        const B = 4
        const T = 32
        const heap0 = (be as unknown as { heap: { reserved: number } }).heap.reserved
        const st = new Stage(be, layout, { seed: 1 })
        const tokens = new Int32Array(B * T).map((_, i) => (i * 7) % cfg.vocabSize)
        const W = k > 0 ? k : cfg.dModel
        const hidden = new Float32Array(B * T * W).fill(0.01)
        for (let step = 0; step < 2; step++) {
          await st.zeroGrad()
          await st.forward({ B, T, ...(st.isFirst ? { tokens } : { hidden }), ...(st.isLast ? { targets: tokens } : {}) })
          await st.backward(st.isLast ? undefined : hidden)
          await st.update({ lr: 1e-3 })
        }
        const heap = (be as unknown as { heap: { reserved: number } }).heap.reserved - heap0
        st.dispose()
        const e = estimateStageMemory(cfg, layout, { batch: B, seqLen: T })
        const tensors = e.weights + e.gradients + e.optimizer + e.activations + e.workspace
        rows.push(`S=${S} s=${s} k=${k}: backend ${formatBytes(heap)}, estimate without margin ${formatBytes(tensors)} (ratio ${(heap / tensors).toFixed(3)}), total ${formatBytes(e.total)}`)
        // the tensors part is within 15% of the allocations and the total covers them
        assert.ok(heap <= 1.15 * tensors && heap >= 0.85 * tensors, rows.at(-1))
        assert.ok(e.total > heap)
      } finally {
        be.dispose?.()
      }
    }
    console.log('      ' + rows.join('\n      ') + `\n      process peak RSS ${formatBytes(process.resourceUsage().maxRSS * 1024)}`)
  })

  it('parses memory sizes (binary units) and refuses bad ones', () => {
    assert.equal(parseMemorySize('512M'), 512 * 2 ** 20)
    assert.equal(parseMemorySize('2G'), 2 * 2 ** 30)
    assert.equal(parseMemorySize('1.5GiB'), 1.5 * 2 ** 30)
    assert.equal(parseMemorySize('64 MB'), 64 * 2 ** 20)
    assert.equal(parseMemorySize('4096'), 4096)
    assert.equal(parseMemorySize(1_000_000), 1_000_000)
    assert.equal(parseMemorySize('100k'), 102_400)
    for (const bad of ['', 'abc', '-1G', '0', '0M', '0.1', '2X', '1e9', '2iB', 'G', '1.2.3M', '2 G B', '2P', String(MAX_MEMORY_BYTES + 1)]) {
      assert.throws(() => parseMemorySize(bad), MemorySizeError, bad)
    }
    assert.throws(() => parseMemorySize('lots'), /is not a size: give bytes or a number with K, M, G or T/)
  })

  it('a stage over the budget is refused with the estimate and the budget in the message', () => {
    const cfg = modelPreset('gpt2-124m')
    const e = estimateStageMemory(cfg, stageLayouts(cfg, 2)[1], { batch: 4, seqLen: 1024 })
    assert.doesNotThrow(() => { checkStageFits(e, 1, undefined) })
    assert.doesNotThrow(() => { checkStageFits(e, 1, e.total) })
    assert.throws(() => { checkStageFits(e, 1, 2 ** 30) }, (err: unknown) => {
      assert.ok(err instanceof StageMemoryError)
      assert.equal(err.code, 'ERR_STAGE_MEMORY')
      assert.match(err.message, new RegExp(`stage 1 needs an estimated ${formatBytes(e.total)} .* but --max-memory is 1 GiB`))
      return true
    })
  })

  it('a pinned stage that does not fit fails the start before the node is touched', async () => {
    const opts = parseTrainingOptions({ model: 'small', stages: '2', stage: '1', batch: '8', maxMemory: '64M' })
    assert.equal(opts.maxMemory, 64 * 2 ** 20)
    await assert.rejects(startTrainingRuntime({} as never, opts), (err: unknown) => {
      assert.ok(err instanceof StageMemoryError)
      assert.match(err.message, /stage 1 needs an estimated .* but --max-memory is 64 MiB/)
      return true
    })
    assert.throws(() => parseTrainingOptions({ maxMemory: 'big' }), /--max-memory: memory size "big" is not a size/)
  })
})
