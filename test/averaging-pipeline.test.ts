// Averaging inside the pipeline (core/pipeline/stage-averaging.ts): a 2-stage swarm of real nodes
// (createNode: TCP + noise + yamux, the gossip membership view, the private Kademlia DHT for groups) in
// one process, stage 1 served by two nodes, averaging every 3 steps. After each round the two stage-1
// nodes hold bit-identical parameters (same digest of the values read back from the backend), the
// round moved them (distance before > 0, after = 0), the lone stage-0 node skipped every round at
// once, and training went on to the end with a falling loss.
import assert from 'node:assert/strict'
import { validateModelConfig } from '../core/model/config.ts'
import { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import { flatten, fnv1a } from '../core/pipeline/stage-averaging.ts'
import { validateManifest } from '../core/run/manifest.ts'
import { corpusData } from '../core/data/index.ts'
import { pipelineFixture, startSwarm } from './averaging-helpers.ts'
import { tinyManifest } from './pipeline-helpers.ts'
import { waitFor } from './wait-helpers.ts'

describe('averaging in the pipeline', function () {
  const fx = pipelineFixture('lsw-avgpipe-')

  it('two nodes of stage 1 average every 3 steps: identical parameters after each round, training goes on', async () => {
    const steps = 12
    const period = 3
    const base = tinyManifest({ stages: 2, steps, batch: 2, seqLen: 16, lr: 1e-2, warmup: 1, clip: 1, seed: 5 })
    const manifest = validateManifest({ ...structuredClone(base), averaging: { period, mode: 'params' } } as never, { validateModel: validateModelConfig })
    const { be, corpus } = fx
    const swarm = fx.swarm = await startSwarm(3)
    const [n0, n1, n2] = swarm.nodes
    // both stage-1 nodes start from the same seeded init; they drift apart by training on different microbatches
    const s1a = new PipelineNode({ libp2p: n1.libp2p, backend: be, manifest, stage: 1, heartbeatMs: 300, lingerMs: 5000 })
    const s1b = new PipelineNode({ libp2p: n2.libp2p, backend: be, manifest, stage: 1, heartbeatMs: 300, lingerMs: 5000 })
    const s0 = new PipelineNode({
      libp2p: n0.libp2p, backend: be, manifest, stage: 0, data: corpusData(corpus, 5), microbatches: 4, maxInflight: 4, evalBatches: 2, heartbeatMs: 300, lingerMs: 5000
    })
    const pnodes = fx.pnodes = [s0, s1a, s1b]
    await s1a.start()
    await s1b.start()
    // s0 waits for stage-1 peers in its directory; wait until each stage-1 node sees the other too
    await waitFor(() => s1a.status().peersPerStage['1'] >= 2 && s1b.status().peersPerStage['1'] >= 2, {
      what: 'the stage-1 nodes to see each other',
      timeoutMs: 30_000,
      intervalMs: 100,
      state: () => `stage-1 peers seen: ${s1a.status().peersPerStage['1']} and ${s1b.status().peersPerStage['1']}`
    })
    await s0.start()
    await Promise.all(pnodes.map(async p => { await p.finished }))
    // a round queued by the last flush: let it end
    await Promise.all(pnodes.map(async p => { await p.worker.exclusive(async () => {}) }))

    const st0 = s0.status()
    const a = s1a.status()
    const b = s1b.status()
    assert.equal(st0.state, 'done')
    assert.equal(st0.step, steps)
    assert.equal(st0.microbatchesDropped, 0)
    // training went on and learned
    const l = st0.loss.map(([, v]) => v)
    assert.ok(l.slice(-3).reduce((x, y) => x + y) < l.slice(0, 3).reduce((x, y) => x + y), `loss fell: ${l.join(', ')}`)

    // stage 0 is alone: every round skipped at once, none failed
    assert.ok(st0.averaging != null)
    assert.equal(st0.averaging.rounds, 0)
    assert.equal(st0.averaging.alone, Math.floor(steps / period))
    assert.equal(st0.averaging.failed, 0)

    for (const s of [a, b]) {
      const av = s.averaging
      assert.ok(av != null)
      // every round with the partner, the first and the one at the run's last step included
      assert.equal(av.rounds, Math.floor(steps / period), `rounds ${av.rounds} (alone ${av.alone}, failed ${av.failed}, error ${av.lastError})`)
      assert.equal(av.alone, 0)
      assert.equal(av.failed, 0, av.lastError ?? '')
      assert.equal(av.lastGroupSize, 2)
      assert.equal(av.lostShards, 0)
      assert.equal(av.excluded, 0)
      for (const [round, , size, before, after] of av.history) {
        assert.equal(size, 2)
        assert.ok(before > 0, `round ${round}: the nodes had drifted apart (distance ${before})`)
        assert.equal(after, 0, `round ${round}: written back exactly`)
      }
    }
    // the rounds both nodes took part in, and after the last common one: identical bits
    const ra = a.averaging!.history.map(h => h[0])
    const rb = b.averaging!.history.map(h => h[0])
    assert.deepEqual(ra, rb, 'same rounds on both stage-1 nodes')
    assert.equal(a.averaging!.lastRound, b.averaging!.lastRound)
    assert.equal(a.averaging!.paramsDigest, b.averaging!.paramsDigest, 'identical parameters after the round')
    // both nodes trained after the last round, so the digests of what they hold now differ from it
    // unless the last round came last; then the parameters themselves must be identical
    const names = s1a.worker.stage.params.specs.map(s => s.name)
    const pa = flatten(await s1a.worker.stage.params.download(), names)
    const pb = flatten(await s1b.worker.stage.params.download(), names)
    if (a.averaging!.lastRound === Math.floor(steps / period)) {
      assert.equal(fnv1a(pa), fnv1a(pb))
      assert.deepEqual(pa, pb)
    }
    console.log(`      stage-1 rounds ${JSON.stringify(a.averaging!.history.map(h => [h[0], h[1], +h[3].toExponential(3), h[4]]))} / ${JSON.stringify(b.averaging!.history.map(h => [h[0], h[1], +h[3].toExponential(3), h[4]]))}, |params| ${a.averaging!.paramNorm?.toFixed(3)}, round ${a.averaging!.lastMs?.toFixed(0)} ms`)
    assert.ok(a.step + b.step >= steps, `stage 1 steps ${a.step} + ${b.step}`)
  })
})
