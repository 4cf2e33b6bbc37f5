// The compressed stage chain (core/train/compressed-chain.ts): with lossless codecs it is exactly
// GptModel; with int8 the loss moves a little but training still works through the encoded
// gradients; the byte accounting matches hand-computed sizes; a bottleneck narrows the wire tensor
// to k. Codecs come from the real compression plugin through the plugin host, as on a node.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { loadCorpus } from '../core/data/index.ts'
import { validateModelConfig } from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { PluginHost } from '../core/node/plugin-host.ts'
import { boundaryCodecs, type BoundaryCodecs } from '../core/codecs/tensor-codecs.ts'
import { CompressedChain, decodeBoundary, encodeBoundary, perToken, trainCompressedChain } from '../core/train/compressed-chain.ts'
import { corpusData, type TrainData } from '../core/data/index.ts'
import { benchCompressionQuality, bottleneckForRatio } from '../bench/compression-quality.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'

const CFG = validateModelConfig({ vocabSize: 256, blockSize: 16, nLayer: 3, nHead: 2, dModel: 32 })
const B = 4
const T = 16

function repetitiveText (): string {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'omega']
  const paras: string[] = []
  for (let i = 0; i < 600; i++) paras.push(`${i}: ${words[i % 5]} ${words[(i + 1) % 5]} ${words[(i + 2) % 5]}. ${words[i % 5]} ${words[(i + 1) % 5]}.`)
  return paras.join('\n\n') + '\n'
}

describe('compression quality: compressed stage chain', function () {
  let dir: string
  let be: ComputeBackend
  let data: TrainData
  let host: PluginHost
  const codecs = (name: string): BoundaryCodecs => boundaryCodecs({ activation: name, 'activation-grad': name }, host.container)

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'layerswarm-cq-'))
    await writeFile(join(dir, 'corpus.txt'), repetitiveText())
    data = corpusData(await loadCorpus({ path: join(dir, 'corpus.txt'), heldOutFraction: 0.05 }), 1)
    // inline kernels (no worker pool): deterministic, and nothing to race on a loaded machine
    be = await createCpuBackend({ threads: 0 })
    // int8 blocks of 64, as the plugin option sets them on a node
    host = new PluginHost({ pluginOptions: { compression: { int8BlockSize: 64 } } })
    await host.load(['compression'])
    await host.start()
  })
  after(async () => {
    await host?.stop()
    await be?.dispose()
    await rm(dir, { recursive: true, force: true })
  })

  /** Losses of `steps` training steps of GptModel, and of the chain with `codec`, same seed and batches. */
  async function lossesOf (codec: string | null, steps: number, bottleneck = 0, lr = 3e-3): Promise<number[]> {
    const run = codec == null
      ? new GptModel(be, CFG, { stages: 3, bottleneck, seed: 5 })
      : new CompressedChain(be, CFG, { stages: 3, bottleneck, seed: 5, codecs: codecs(codec) })
    try {
      const out: number[] = []
      for (let step = 0; step < steps; step++) {
        const b = await data.trainBatch(step, 0, B, T)
        await run.zeroGrad()
        out.push(await run.forward(b.inputs, B, T, b.targets) as number)
        await run.backward()
        await run.update({ lr })
      }
      return out
    } finally {
      run.dispose()
    }
  }

  it('with fp32 (and raw) boundaries reproduces GptModel exactly, with and without a bottleneck', async () => {
    for (const k of [0, 8]) {
      const ref = await lossesOf(null, 4, k)
      for (const codec of ['fp32', 'none']) {
        const got = await lossesOf(codec, 4, k)
        assert.deepEqual(got, ref, `${codec}, k=${k}: ${got.join(', ')} vs ${ref.join(', ')}`)
      }
    }
  })

  it('with int8-block the loss differs a little, and training through encoded gradients still lowers it', async () => {
    const ref = await lossesOf(null, 1)
    const q = await lossesOf('int8-block', 12, 0, 1e-2)
    assert.notEqual(q[0], ref[0], 'int8 changed nothing: the codec is not on the path')
    assert.ok(Math.abs(q[0] - ref[0]) < 0.01 * ref[0], `first loss ${q[0]} vs ${ref[0]}`)
    const head = (q[0] + q[1]) / 2
    const tail = (q[10] + q[11]) / 2
    assert.ok(tail < head - 0.5, `loss did not fall: ${q.map(x => x.toFixed(3)).join(' ')}`)

    // stage 0 only ever sees gradients that crossed both boundaries as int8
    const chain = new CompressedChain(be, CFG, { stages: 3, seed: 5, codecs: codecs('int8-block') })
    try {
      const b = await data.trainBatch(0, 0, B, T)
      await chain.zeroGrad()
      await chain.forward(b.inputs, B, T, b.targets)
      await chain.backward()
      const g = (await chain.model.stages[0].params.downloadGrads()).get('wte.weight') as Float32Array
      assert.ok(g.some(x => x !== 0), 'no gradient reached stage 0')
    } finally {
      chain.dispose()
    }
  })

  it('counts encoded bytes per token per boundary, forward and backward, as the formats give them', async () => {
    const C = CFG.dModel
    const n = B * T * C // 2048 values per boundary tensor
    // codec header: 8 + 4*rank(3) + params + CRC 4; fp32 has no params, int8 a u32 block size
    const cases: Array<[string, number, number]> = [
      ['none', 0, 4 * n],
      ['fp32', 0, 24 + 4 * n],
      ['fp16', 0, 28 + 2 * n],
      ['int8-block', 0, 28 + 4 * (n / 64) + n],
      ['int8-block', 8, 28 + 4 * (B * T * 8 / 64) + B * T * 8]
    ]
    for (const [codec, k, bytes] of cases) {
      const chain = new CompressedChain(be, CFG, { stages: 3, bottleneck: k, seed: 5, codecs: codecs(codec) })
      try {
        for (let step = 0; step < 2; step++) {
          const b = await data.trainBatch(step, 0, B, T)
          await chain.forward(b.inputs, B, T, b.targets)
          await chain.backward()
        }
        assert.equal(chain.traffic.length, 2)
        for (const t of chain.traffic) {
          assert.equal(t.forwardTokens, 2 * B * T)
          assert.equal(t.backwardTokens, 2 * B * T)
          assert.equal(t.forwardBytes, 2 * bytes, `${codec} k=${k} forward`)
          assert.equal(t.backwardBytes, 2 * bytes, `${codec} k=${k} backward`)
          assert.ok(t.forwardFrameBytes > t.forwardBytes, 'frames carry a header')
          const p = perToken(t)
          assert.equal(p.forward, bytes / (B * T))
          assert.equal(p.total, 2 * bytes / (B * T))
        }
        assert.equal(chain.meanPerToken().forward, bytes / (B * T))
      } finally {
        chain.dispose()
      }
    }
  })

  it('with a bottleneck, the tensor on the wire is [B,T,k]', async () => {
    const k = 6
    const chain = new CompressedChain(be, CFG, { stages: 3, bottleneck: k, seed: 5, codecs: codecs('int8-block') })
    try {
      const b = await data.trainBatch(0, 0, B, T)
      await chain.forward(b.inputs, B, T, b.targets)
      for (let s = 0; s < 2; s++) {
        assert.deepEqual(chain.traffic[s].shape, [B, T, k])
        assert.equal(chain.lastReceived[s]?.length, B * T * k)
      }
      // the frame itself says so: decode what encodeBoundary wrote
      const x = Float32Array.from({ length: B * T * k }, (_, i) => Math.sin(i))
      const { frame } = encodeBoundary(codecs('int8-block'), 'activation', x, [B, T, k], { stage: 1 })
      const y = decodeBoundary(codecs('int8-block'), 'activation', frame)
      assert.equal(y.length, x.length)
      assert.throws(() => decodeBoundary(codecs('fp16'), 'activation', frame), /not the run's codec|codec/)
    } finally {
      chain.dispose()
    }
  })

  it('picks the widest k that really reaches each ratio', () => {
    assert.equal(bottleneckForRatio(32, 128, 256, 1024), 15)
    assert.equal(bottleneckForRatio(64, 128, 256, 1024), 7)
    assert.equal(bottleneckForRatio(128, 128, 256, 1024), 3)
    for (const [r, k] of [[32, 15], [64, 7], [128, 3]]) {
      const n = 1024 * k
      const perTok = (n + 4 * Math.ceil(n / 256) + 28) / 1024
      assert.ok(512 / perTok >= r, `${r}x: k=${k} gives ${512 / perTok}x`)
    }
  })

  it('trainCompressedChain and the bench report: baseline none, same eval batches, ratios', async () => {
    const r = await trainCompressedChain({
      backend: be, config: CFG, data, codecs: codecs('int8-block'), steps: 3, stages: 2, bottleneck: 8, batchSize: B, seqLen: T,
      schedule: { maxLr: 3e-3, minLr: 3e-4, warmupSteps: 1, totalSteps: 3 }, seed: 1, evalBatches: 2
    })
    assert.equal(r.losses.length, 3)
    assert.equal(r.evalBatches, 2)
    assert.equal(r.boundaryWidth, 8)
    assert.equal(r.traffic[0].forwardTokens, 3 * B * T, 'eval crossings are not counted')

    const report = await benchCompressionQuality({
      model: CFG, steps: 2, stages: 2, batchSize: B, evalBatches: 2, data, threads: 0, settings: ['int8-block', 'bn32-int8']
    })
    assert.equal(report.suite, 'compression-quality')
    assert.deepEqual(report.settings.map(s => s.name), ['none', 'int8-block', 'bn32-int8'])
    const [none, q, bn] = report.settings
    assert.equal(none.lossRatio, 1)
    assert.equal(none.ratioForward, 1)
    assert.ok(q.ratioForward > 3.5 && q.ratioForward < 4, `int8 ratio ${q.ratioForward}`)
    assert.ok(bn.ratioForward >= 32, `bn32 ratio ${bn.ratioForward}`)
    assert.equal(bn.boundaryWidth, bn.bottleneck)
    const row = report.results.find(x => x.name === 'int8-block.eval_loss')
    assert.equal(row?.baseline?.value, none.evalLoss)
  })
})
