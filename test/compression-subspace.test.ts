// The subspace-constrained boundary (core/codecs/subspace.ts) and its training chain
// (bench/subspace-chain.ts): the basis is orthonormal and seeded, activations and gradients
// round-trip, bad input gets typed errors, and with lossless codecs the chain computes exactly the
// loss and every gradient of the same constrained model run whole (the gradient check: k values
// cross each way, the receiver's (I - UU^T) g reaches the embeddings).
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { corpusData, loadCorpus, type TrainData } from '../core/data/index.ts'
import { validateModelConfig, type ModelConfig } from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { PluginHost } from '../core/node/plugin-host.ts'
import { boundaryCodecs, type BoundaryCodecs } from '../core/codecs/tensor-codecs.ts'
import { BoundarySubspace, SubspaceConfigError, subspaceBasis } from '../core/codecs/subspace.ts'
import { NonFiniteError, ShapeError } from '../core/errors.ts'
import { SubspaceChain, trainSubspaceChain } from '../bench/subspace-chain.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'

const LLAMA = validateModelConfig({ arch: 'llama', vocabSize: 256, blockSize: 8, nLayer: 3, nHead: 2, dModel: 16 })
const GPT2 = validateModelConfig({ vocabSize: 256, blockSize: 8, nLayer: 2, nHead: 2, dModel: 16 })
const B = 2
const T = 8

function rand (n: number, seed: number): Float32Array {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32 - 0.5 })
}

describe('compression: subspace-constrained boundary', function () {
  it('draws an orthonormal, seeded basis', () => {
    const C = 16
    const k = 5
    const u = subspaceBasis(C, k, 3)
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) {
        let dot = 0
        for (let c = 0; c < C; c++) dot += u[c * k + i] * u[c * k + j]
        assert.ok(Math.abs(dot - (i === j ? 1 : 0)) < 1e-12, `U^T U [${i},${j}] = ${dot}`)
      }
    }
    assert.deepEqual(subspaceBasis(C, k, 3), u, 'same (C, k, seed): same basis on both sides')
    assert.notDeepEqual(subspaceBasis(C, k, 4), u)
  })

  it('round-trips a stream that obeys the constraint, and splits a gradient in two', () => {
    const sp = new BoundarySubspace(16, 4, 0)
    const N = 6
    const z = rand(N * 4, 1)
    const e = rand(N * 16, 2)
    const x = sp.decodeActivation(z, e)
    assert.equal(x.length, N * 16)
    const z2 = sp.encodeActivation(x, e)
    assert.equal(z2.length, N * 4)
    for (let i = 0; i < z.length; i++) assert.ok(Math.abs(z[i] - z2[i]) < 1e-6)
    assert.ok(sp.outsideShare(x, e) < 1e-6)
    assert.ok(sp.outsideShare(rand(N * 16, 3), e) > 0.5, 'an arbitrary stream is mostly outside a 4-of-16 subspace')
    const g = rand(N * 16, 4)
    const inside = sp.decodeGradient(sp.encodeGradient(g))
    const rest = sp.residualGradient(g)
    for (let i = 0; i < g.length; i++) assert.ok(Math.abs(inside[i] + rest[i] - g[i]) < 1e-6)
    assert.equal(sp.ratio, 4)
    // a projected weight matrix writes only inside: projecting again changes nothing
    const w = rand(16 * 7, 5)
    sp.projectColumns(w, 7)
    const again = Float32Array.from(w)
    sp.projectColumns(again, 7)
    for (let i = 0; i < w.length; i++) assert.ok(Math.abs(w[i] - again[i]) < 1e-6)
  })

  it('rejects bad settings, shapes and non-finite values with typed errors', () => {
    assert.throws(() => new BoundarySubspace(16, 0), SubspaceConfigError)
    assert.throws(() => new BoundarySubspace(16, 17), SubspaceConfigError)
    assert.throws(() => new BoundarySubspace(16, 2.5), SubspaceConfigError)
    assert.throws(() => new BoundarySubspace(0, 1), SubspaceConfigError)
    assert.throws(() => new BoundarySubspace(16, 4, -1), (e: unknown) => e instanceof SubspaceConfigError && e.code === 'ERR_SUBSPACE_CONFIG')
    const sp = new BoundarySubspace(16, 4)
    assert.throws(() => sp.encodeActivation(new Float32Array(15), new Float32Array(15)), ShapeError)
    assert.throws(() => sp.encodeActivation(new Float32Array(32), new Float32Array(16)), ShapeError)
    assert.throws(() => sp.decodeActivation(new Float32Array(6), new Float32Array(32)), ShapeError)
    assert.throws(() => sp.encodeGradient(new Float64Array(16) as unknown as Float32Array), ShapeError)
    assert.throws(() => sp.projectColumns(new Float32Array(16 * 3), 4), ShapeError)
    const bad = rand(32, 1)
    bad[7] = NaN
    assert.throws(() => sp.encodeActivation(bad, new Float32Array(32)), NonFiniteError)
    assert.throws(() => sp.encodeGradient(bad), NonFiniteError)
    const inf = new Float32Array(8)
    inf[3] = Infinity
    assert.throws(() => sp.decodeGradient(inf), NonFiniteError)
    assert.throws(() => sp.decodeActivation(new Float32Array(8), bad), NonFiniteError)
  })

  describe('the chain', function () {
    let be: ComputeBackend
    let host: PluginHost
    let dir: string
    let data: TrainData
    const codecs = (name: string): BoundaryCodecs => boundaryCodecs({ activation: name, 'activation-grad': name }, host.container)

    before(async () => {
      be = await createCpuBackend({ threads: 0 })
      host = new PluginHost({ pluginOptions: { compression: { int8BlockSize: 64 } } })
      await host.load(['compression'])
      await host.start()
      dir = await mkdtemp(join(tmpdir(), 'layerswarm-sub-'))
      const words = ['alpha', 'beta', 'gamma', 'delta']
      await writeFile(join(dir, 'c.txt'), Array.from({ length: 300 }, (_, i) => `${words[i % 4]} ${words[(i + 1) % 4]} ${i}.`).join('\n\n'))
      data = corpusData(await loadCorpus({ path: join(dir, 'c.txt'), heldOutFraction: 0.1 }), 2)
    })
    after(async () => {
      await host?.stop()
      await be?.dispose()
      if (dir != null) await rm(dir, { recursive: true, force: true })
    })

    for (const [name, cfg] of [['llama', LLAMA], ['gpt2', GPT2]] as Array<[string, ModelConfig]>) {
      it(`${name}: with raw boundaries, the loss and every gradient equal the whole constrained model's`, async () => {
        const chain = new SubspaceChain(be, cfg, { stages: 2, k: 3, seed: 7, codecs: codecs('none') })
        await chain.project('values')
        const whole = new GptModel(be, cfg, { stages: 1, params: await chain.model.downloadParams() })
        try {
          const b = await data.trainBatch(0, 0, B, T)
          await chain.model.zeroGrad()
          await whole.zeroGrad()
          const l1 = await chain.forward(b.inputs, B, T, b.targets) as number
          const l2 = await whole.forward(b.inputs, B, T, b.targets) as number
          assert.ok(Math.abs(l1 - l2) < 1e-5, `chain ${l1} vs whole ${l2}`)
          await chain.backward()
          await whole.backward()
          await chain.project('grads')
          const g1 = await chain.model.downloadGrads()
          const g2 = await whole.downloadGrads()
          assert.deepEqual([...g1.keys()].sort(), [...g2.keys()].sort())
          // the constrained projections' reference gradient is the whole model's, projected the same way
          const constrained = new Set(name === 'llama'
            ? ['layers.0.self_attn.o_proj.weight', 'layers.0.mlp.down_proj.weight', 'layers.1.self_attn.o_proj.weight', 'layers.1.mlp.down_proj.weight']
            : ['h.0.attn.c_proj.weight', 'h.0.attn.c_proj.bias', 'h.0.mlp.c_proj.weight', 'h.0.mlp.c_proj.bias'])
          let checked = 0
          for (const [k, a] of g1) {
            const ref = Float32Array.from(g2.get(k) as Float32Array)
            if (constrained.has(k)) { chain.subspace.projectColumns(ref, ref.length / cfg.dModel); checked++ }
            let maxAbs = 0
            let diff = 0
            for (let i = 0; i < a.length; i++) { maxAbs = Math.max(maxAbs, Math.abs(ref[i])); diff = Math.max(diff, Math.abs(a[i] - ref[i])) }
            assert.ok(diff <= 1e-4 * Math.max(maxAbs, 1e-3), `${k}: max diff ${diff} of max ${maxAbs}`)
          }
          assert.equal(checked, constrained.size, 'the constrained weights are the ones this test names')
        } finally {
          chain.dispose()
          whole.dispose()
        }
      })
    }

    it('trains through int8 coordinates: k values per token cross each way, the loss falls', async () => {
      const r = await trainSubspaceChain({
        backend: be, config: LLAMA, data, codecs: codecs('int8-block'), steps: 6, stages: 3, k: 4, batchSize: B, seqLen: T,
        schedule: { maxLr: 1e-2, minLr: 1e-3, warmupSteps: 1, totalSteps: 6 }, seed: 1, evalBatches: 2
      })
      assert.equal(r.boundaryWidth, 4)
      assert.equal(r.traffic.length, 2)
      for (const t of r.traffic) {
        assert.deepEqual(t.shape, [B, T, 4])
        assert.equal(t.forwardTokens, 6 * B * T)
        assert.equal(t.backwardTokens, 6 * B * T)
      }
      assert.ok(r.perToken.forward < 4 * 16 / 3, `forward ${r.perToken.forward} B/token`)
      assert.ok(Number.isFinite(r.evalLoss))
      assert.ok(r.losses[5] < r.losses[0], `losses ${r.losses.join(', ')}`)
    })
  })
})
