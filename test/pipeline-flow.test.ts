// Forward and backward through 2 and 3 stages over real libp2p (one process): the swarm with one
// node per stage and one microbatch in flight reproduces the single-process trainer's losses and
// final parameters; three stages with several microbatches in flight train and stay consistent.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { validateModelConfig } from '../core/model/config.ts'
import { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import { trainLocal } from '../core/train/trainer.ts'
import { corpusData } from '../core/data/index.ts'
import { loadCheckpoint } from '../core/train/checkpoint.ts'
import { connectedNodes, pipelineSuite, StaticSource, TINY, tinyManifest } from './pipeline-helpers.ts'

describe('pipeline: forward and backward over libp2p', function () {
  const fx = pipelineSuite('lsw-pipe-')

  it('2 stages, one microbatch in flight: same losses and parameters as the single-process trainer', async () => {
    const steps = 4
    const M = 2
    const manifest = tinyManifest({ stages: 2, steps, batch: 2, seqLen: 16, lr: 3e-3, warmup: 2, clip: 0, seed: 3 })
    const local = await trainLocal({
      backend: fx.be,
      config: validateModelConfig(TINY),
      data: corpusData(fx.corpus, 3, 'local'),
      steps,
      batchSize: 2,
      seqLen: 16,
      microbatches: M,
      schedule: { maxLr: 3e-3, minLr: 3e-4, warmupSteps: 2, totalSteps: steps },
      optimizer: { gradClip: 0 },
      seed: 3,
      evalBatches: 2,
      checkpointDir: join(fx.dir, 'local-ck')
    })

    fx.libp2ps = await connectedNodes(2)
    const source = new StaticSource()
    source.set(0, [fx.libp2ps[0].peerId.toString()])
    source.set(1, [fx.libp2ps[1].peerId.toString()])
    const s1 = new PipelineNode({ libp2p: fx.libp2ps[1], backend: fx.be, manifest, stage: 1, source })
    const s0 = new PipelineNode({
      libp2p: fx.libp2ps[0], backend: fx.be, manifest, stage: 0, source, data: corpusData(fx.corpus, 3, 'local'),
      microbatches: M, maxInflight: 1, evalBatches: 2
    })
    fx.pnodes = [s0, s1]
    await s1.start()
    await s0.start()
    await s0.finished
    const st0 = s0.status()
    const st1 = s1.status()
    assert.equal(st0.state, 'done')
    assert.equal(st0.step, steps)
    assert.equal(st1.step, steps, 'stage 1 stepped once per step')
    assert.equal(st0.microbatchesDone, steps * M)
    assert.equal(st0.microbatchesDropped, 0)
    assert.equal(st1.microbatchesDone, steps * M)
    assert.deepEqual(st0.loss.map(([s]) => s), [1, 2, 3, 4])
    for (let i = 0; i < steps; i++) {
      assert.ok(Math.abs(st0.loss[i][1] - local.losses[i]) < 1e-5, `step ${i + 1}: swarm ${st0.loss[i][1]} vs local ${local.losses[i]}`)
      assert.ok(Math.abs(st1.loss[i][1] - local.losses[i]) < 1e-5, `stage 1 step ${i + 1}`)
    }
    const finalEval = local.evals.at(-1)?.loss as number
    assert.ok(st0.evalLoss != null && Math.abs(st0.evalLoss - finalEval) < 1e-5, `eval ${st0.evalLoss} vs ${finalEval}`)
    assert.ok(st1.evalLoss != null && Math.abs(st1.evalLoss - finalEval) < 1e-5, 'the last stage saw the eval too')
    // the parameters after the run match the single-process trainer's (its final checkpoint)
    const ref = (await loadCheckpoint(local.lastCheckpoint as string, { optimizer: false })).params
    for (const p of [s0, s1]) {
      for (const [name, v] of await p.worker.stage.params.download()) {
        const r = ref.get(name) as Float32Array
        let worst = 0
        for (let i = 0; i < v.length; i++) worst = Math.max(worst, Math.abs(v[i] - r[i]))
        assert.ok(worst < 1e-5, `${name}: max |swarm - local| = ${worst}`)
      }
    }
    assert.equal(st0.tokens, steps * M * 2 * 16)
    // bytes: activations [2,16,32] f32 + targets [2,16] i32 per train microbatch, gradients back
    assert.equal(st1.bytesBackward, steps * M * 2 * 16 * 32 * 4)
    assert.ok(st0.bytesForward >= steps * M * (2 * 16 * 32 * 4 + 2 * 16 * 4))
  })

  it('3 stages, several microbatches in flight: every microbatch comes back and the loss falls', async () => {
    const steps = 8
    const M = 3
    const manifest = tinyManifest({ stages: 3, steps, batch: 2, seqLen: 16, lr: 1e-2, warmup: 1, clip: 1 })
    fx.libp2ps = await connectedNodes(3)
    const source = new StaticSource()
    fx.libp2ps.forEach((n, s) => { source.set(s, [n.peerId.toString()]) })
    const s2 = new PipelineNode({ libp2p: fx.libp2ps[2], backend: fx.be, manifest, stage: 2, source })
    const s1 = new PipelineNode({ libp2p: fx.libp2ps[1], backend: fx.be, manifest, stage: 1, source })
    const s0 = new PipelineNode({ libp2p: fx.libp2ps[0], backend: fx.be, manifest, stage: 0, source, data: corpusData(fx.corpus, 1), microbatches: M, maxInflight: 3, evalBatches: 0 })
    fx.pnodes = [s0, s1, s2]
    for (const p of [s2, s1, s0]) await p.start()
    await s0.finished
    const [a, b, c] = fx.pnodes.map(p => p.status())
    assert.equal(a.microbatchesDone, steps * M)
    assert.equal(b.microbatchesDone, steps * M)
    assert.equal(c.microbatchesDone, steps * M)
    assert.equal(a.step, steps)
    assert.equal(c.step, steps, 'the last stage stepped once per step')
    assert.equal(a.loss.length, steps)
    assert.ok(a.loss[steps - 1][1] < a.loss[0][1] - 0.5, `loss ${a.loss[0][1]} -> ${a.loss[steps - 1][1]}`)
    assert.deepEqual(c.loss, a.loss, 'every stage reports the losses of its steps')
    assert.equal(a.microbatchesRetried + b.microbatchesRetried, 0)
  })
})
