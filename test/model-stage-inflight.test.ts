// A stage with several microbatches in flight keeps one activation set per microbatch (stage.ts
// `keep`): each backward uses its own forward's activations instead of running the forward again,
// and the gradients are bit for bit those of the one-set path (forward and backward one microbatch
// at a time). The memory estimate counts the kept sets; the budget bounds how many are kept.
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { ConfigError, ShapeError } from '../core/errors.ts'
import { validateModelConfig, type ModelConfig } from '../core/model/config.ts'
import { estimateStageMemory, keptSetsThatFit } from '../core/model/memory-estimate.ts'
import { Prng } from '../core/model/prng.ts'
import { Stage, StageStateError, type StageInput } from '../core/model/stage.ts'
import { stageLayouts, type StageLayout } from '../core/model/stage-split.ts'
import { StageWorker } from '../core/pipeline/stage-worker.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'

const GPT: ModelConfig = validateModelConfig({ vocabSize: 23, blockSize: 12, nLayer: 3, nHead: 2, dModel: 16 })
const LLAMA_GQA_RECOMPUTE: ModelConfig = validateModelConfig({ arch: 'llama', vocabSize: 23, blockSize: 12, nLayer: 4, nHead: 4, nKvHead: 2, dModel: 16, recompute: true })
const B = 2
const T = 8
const INFLIGHT = 4
const SCHEDULE = { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 0, totalSteps: 10 }

const CASES: Array<{ name: string, layout: StageLayout }> = [
  { name: 'GPT-2 stage 0 of 2', layout: stageLayouts(GPT, 2, 0)[0] },
  { name: 'GPT-2 middle stage of 3, bottleneck k = 4', layout: stageLayouts(GPT, 3, 4)[1] },
  { name: 'llama GQA with block recompute, stage 0 of 2', layout: stageLayouts(LLAMA_GQA_RECOMPUTE, 2, 0)[0] }
]

function floats (rng: Prng, n: number): Float32Array {
  return new Float32Array(n).map(() => rng.nextU32() / 2 ** 32 - 0.5)
}

/** Microbatch i's input and output gradient for `layout` (deterministic). */
function microbatch (layout: StageLayout, w: { in: number, out: number }, i: number): { input: StageInput, dout: Float32Array } {
  const rng = new Prng(100 + i)
  const input: StageInput = layout.range.index === 0
    ? { B, T, tokens: new Int32Array(B * T).map(() => rng.nextU32() % layout.config.vocabSize) }
    : { B, T, hidden: floats(rng, B * T * w.in) }
  return { input, dout: floats(rng, B * T * w.out) }
}

function widths (s: Stage): { in: number, out: number } {
  return { in: s.boundaryWidth, out: s.boundaryWidth }
}

describe('model: a stage keeps one activation set per microbatch in flight', function () {
  this.timeout(120_000)
  let be: ComputeBackend

  before(async () => { be = await createCpuBackend({ threads: 2 }) })
  after(async () => { await be?.dispose() })

  /** The one-set path: each microbatch's forward and backward in turn (unkeyed). */
  async function reference (layout: StageLayout): Promise<{ grads: Map<string, Float32Array>, dinputs: Array<Float32Array | null> }> {
    const st = new Stage(be, layout, { seed: 7 })
    try {
      const dinputs: Array<Float32Array | null> = []
      for (let i = 0; i < INFLIGHT; i++) {
        const { input, dout } = microbatch(layout, widths(st), i)
        await st.forward(input)
        dinputs.push(await st.backward(dout))
      }
      return { grads: await st.params.downloadGrads(), dinputs }
    } finally {
      st.dispose()
    }
  }

  for (const { name, layout } of CASES) {
    it(`${name}: ${INFLIGHT} forwards, then their backwards: no recompute with keep ${INFLIGHT}, and the one-set path's gradients bit for bit`, async () => {
      const ref = await reference(layout)
      // keep 1 is the old behaviour (every backward recomputes); 2 keeps the oldest and gives up the newest
      for (const [keep, recomputes] of [[1, 4], [2, 2], [INFLIGHT, 0]] as const) {
        const st = new Stage(be, layout, { seed: 7, keep })
        const worker = new StageWorker(st, { schedule: SCHEDULE, auto: false })
        try {
          const mbs = Array.from({ length: INFLIGHT }, (_, i) => microbatch(layout, widths(st), i))
          for (let i = 0; i < INFLIGHT; i++) await worker.forward(`o:${i}`, mbs[i].input)
          const dinputs: Array<Float32Array | null> = []
          for (let i = 0; i < INFLIGHT; i++) {
            const r = await worker.backward(`o:${i}`, mbs[i].input, mbs[i].dout, { origin: 'o', step: 0, micros: INFLIGHT })
            dinputs.push(r.dinput)
          }
          assert.equal(worker.recomputed, recomputes, `keep ${keep}: backwards that re-ran their forward`)
          assert.equal(st.forwards, INFLIGHT + recomputes, `keep ${keep}: forwards run`)
          const grads = await st.params.downloadGrads()
          assert.equal(grads.size, ref.grads.size)
          for (const [n, g] of ref.grads) assert.deepEqual(grads.get(n), g, `keep ${keep}: gradient ${n}`)
          assert.deepEqual(dinputs, ref.dinputs, `keep ${keep}: input gradients`)
        } finally {
          st.dispose()
        }
      }
    })
  }

  it('an optimizer step or a parameter write gives up the kept forwards (they no longer match the weights): the backward recomputes', async () => {
    const layout = CASES[0].layout
    const st = new Stage(be, layout, { seed: 7, keep: 4 })
    const worker = new StageWorker(st, { schedule: SCHEDULE, auto: false })
    try {
      const a = microbatch(layout, widths(st), 0)
      const b = microbatch(layout, widths(st), 1)
      await worker.forward('o:0', a.input)
      await worker.backward('o:0', a.input, a.dout, { origin: 'o', step: 0, micros: 1 })
      await worker.forward('o:1', b.input)
      assert.equal(st.holds('o:1'), true)
      await worker.step(0)
      assert.equal(st.holds('o:1'), false)
      await worker.backward('o:1', b.input, b.dout, { origin: 'o', step: 1, micros: 1 })
      assert.equal(worker.recomputed, 1)
      // a read-only exclusive section (a state snapshot, a checkpoint) keeps them; a write-back (averaging) gives them up
      await worker.forward('o:2', a.input)
      await worker.exclusive(async () => await st.params.download())
      assert.equal(st.holds('o:2'), true)
      await worker.exclusive(async () => { await st.params.load(await st.params.download()) })
      assert.equal(st.holds('o:2'), false)
    } finally {
      st.dispose()
    }
  })

  it('typed errors: a backward of a key with no kept forward, keep < 1; another shape frees the kept sets', async () => {
    const layout = CASES[0].layout
    assert.throws(() => new Stage(be, layout, { keep: 0 }), ShapeError)
    assert.throws(() => new Stage(be, layout, { keep: 1.5 }), ShapeError)
    const st = new Stage(be, layout, { seed: 7, keep: 2 })
    try {
      const a = microbatch(layout, widths(st), 0)
      await assert.rejects(st.backward(a.dout, 'never'), StageStateError)
      await st.forward(a.input, 'k')
      await st.backward(a.dout, 'k')
      await assert.rejects(st.backward(a.dout, 'k'), StageStateError) // used once
      await st.forward(a.input, 'k')
      const rng = new Prng(3)
      await st.forward({ B: 1, T, tokens: new Int32Array(T).map(() => rng.nextU32() % layout.config.vocabSize) }, 'other')
      assert.equal(st.holds('k'), false)
      assert.equal(st.holds('other'), true)
    } finally {
      st.dispose()
    }
  })

  it('the memory estimate counts each kept set; the budget bounds how many are kept', () => {
    const layout = CASES[0].layout // GPT-2 stage 0 of 2: blocks 0..1, no bottleneck
    const opts = { batch: B, seqLen: T }
    const C = GPT.dModel
    const NH = GPT.nHead
    const blocks = layout.range.endBlock - layout.range.firstBlock
    // one set: each block's saved tensors, the token ids and the embedded input (stage-activations.ts allocSet)
    const setFloats = blocks * (16 * B * T * C + 4 * B * T + 2 * B * NH * T * T) + B * T + B * T * C
    const one = estimateStageMemory(GPT, layout, opts)
    assert.deepEqual(estimateStageMemory(GPT, layout, { ...opts, keptSets: 1 }), one)
    for (const k of [2, 4]) {
      const e = estimateStageMemory(GPT, layout, { ...opts, keptSets: k })
      assert.equal(e.activations - one.activations, (k - 1) * 4 * setFloats)
      assert.equal(e.weights, one.weights)
    }
    // the last stage's set holds the head's buffers too
    const last = stageLayouts(GPT, 2, 0)[1]
    const V = GPT.vocabSize
    const lastSet = (last.range.endBlock - last.range.firstBlock) * (16 * B * T * C + 4 * B * T + 2 * B * NH * T * T) + B * T * C + 2 * B * T * C + 3 * B * T * V + 4 * B * T
    assert.equal(estimateStageMemory(GPT, last, { ...opts, keptSets: 3 }).activations - estimateStageMemory(GPT, last, opts).activations, 2 * 4 * lastSet)

    const total = (k: number): number => estimateStageMemory(GPT, layout, { ...opts, keptSets: k }).total
    assert.equal(keptSetsThatFit(GPT, layout, opts, 4, undefined), 4)
    assert.equal(keptSetsThatFit(GPT, layout, opts, 4, total(4)), 4)
    assert.equal(keptSetsThatFit(GPT, layout, opts, 4, total(3)), 3)
    assert.equal(keptSetsThatFit(GPT, layout, opts, 4, total(3) + 1), 3)
    assert.equal(keptSetsThatFit(GPT, layout, opts, 2, total(4)), 2)
    assert.equal(keptSetsThatFit(GPT, layout, opts, 4, 1), 1) // below one set: the budget check refuses the stage, not this
    assert.throws(() => estimateStageMemory(GPT, layout, { ...opts, keptSets: 0 }), ConfigError)
    assert.throws(() => keptSetsThatFit(GPT, layout, opts, 0, undefined), ConfigError)
  })
})
