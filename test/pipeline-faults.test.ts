// Faults on the path of a microbatch: a stage-1 peer that dies mid-microbatch, and one that hangs,
// make the microbatch go to another peer of the stage (the others never stall); with no peer left
// the microbatch is dropped and counted.
import assert from 'node:assert/strict'
import type { Libp2p } from '@libp2p/interface'
import { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import { PIPELINE_FORWARD_PROTOCOL } from '../core/pipeline/protocol.ts'
import { corpusData } from '../core/data/index.ts'
import { connectedNodes, pipelineSuite, StaticSource, tinyManifest } from './pipeline-helpers.ts'
import { stopNodes } from './wire-helpers.ts'
import { waitFor } from './wait-helpers.ts'

describe('pipeline: faults', function () {
  const fx = pipelineSuite('lsw-pipe-f-')

  /** Stage 0 and the good stage-1 node are real pipeline nodes; the victim only reads requests, then `onRequest` decides. */
  async function swarm (onRequest: (victim: Libp2p) => void, over: { steps?: number, M?: number } = {}): Promise<{ s0: PipelineNode, s1: PipelineNode, victim: Libp2p }> {
    const steps = over.steps ?? 3
    const M = over.M ?? 4
    const manifest = tinyManifest({ stages: 2, steps, batch: 2, seqLen: 16 })
    fx.libp2ps = await connectedNodes(3)
    const [n0, good, victim] = fx.libp2ps
    const source = new StaticSource()
    source.set(0, [n0.peerId.toString()])
    // victim first: with rng 0 the first choice among equals goes to it
    source.set(1, [victim.peerId.toString(), good.peerId.toString()])
    let hit = false
    await victim.handle(PIPELINE_FORWARD_PROTOCOL, (stream) => {
      stream.addEventListener('message', () => {
        if (hit) return
        hit = true
        onRequest(victim)
      })
    })
    const s1 = new PipelineNode({ libp2p: good, backend: fx.be, manifest, stage: 1, source })
    const s0 = new PipelineNode({
      libp2p: n0, backend: fx.be, manifest, stage: 0, source, data: corpusData(fx.corpus, 1), microbatches: M, maxInflight: 2, evalBatches: 0,
      router: { rng: () => 0, initialTimeoutMs: 3000, timeoutFloorMs: 3000 }
    })
    fx.pnodes = [s0, s1]
    await s1.start()
    await s0.start()
    return { s0, s1, victim }
  }

  it('a stage-1 peer that dies mid-microbatch: the microbatch is retried on the other peer, nothing dropped', async () => {
    const { s0, s1, victim } = await swarm(v => { void stopNodes(v) })
    await s0.finished
    const st = s0.status()
    assert.equal(st.state, 'done')
    assert.equal(st.microbatchesDone, 3 * 4)
    assert.equal(st.microbatchesDropped, 0)
    assert.ok(st.microbatchesRetried >= 1, 'the microbatch at the dead peer was retried')
    assert.equal(s1.status().microbatchesDone, 3 * 4, 'the live peer did every microbatch')
    assert.ok(s0.router.isBanned(victim.peerId.toString()), 'the dead peer is banned from routing')
  })

  it('a stage-1 peer that hangs: the microbatch times out there and is retried elsewhere', async () => {
    const { s0, s1, victim } = await swarm(() => {})
    await s0.finished
    const st = s0.status()
    assert.equal(st.microbatchesDone, 3 * 4)
    assert.equal(st.microbatchesDropped, 0)
    assert.ok(st.microbatchesRetried >= 1)
    assert.equal(s1.status().microbatchesDone, 3 * 4)
    assert.ok(s0.router.stats().find(s => s.peer === victim.peerId.toString())!.failures >= 1)
  })

  it('a peer listed at stage 1 that does not speak the pipeline protocol is banned from routing (ERR_PIPELINE_NOT_SERVED), not retried at every microbatch', async () => {
    const manifest = tinyManifest({ stages: 2, steps: 3, batch: 2, seqLen: 16 })
    fx.libp2ps = await connectedNodes(3)
    const [n0, good, fake] = fx.libp2ps
    const source = new StaticSource()
    source.set(0, [n0.peerId.toString()])
    source.set(1, [fake.peerId.toString(), good.peerId.toString()]) // no handler on fake at all
    const s1 = new PipelineNode({ libp2p: good, backend: fx.be, manifest, stage: 1, source })
    const s0 = new PipelineNode({
      libp2p: n0, backend: fx.be, manifest, stage: 0, source, data: corpusData(fx.corpus, 1), microbatches: 4, maxInflight: 2, evalBatches: 0,
      router: { rng: () => 0 }
    })
    fx.pnodes = [s0, s1]
    await s1.start()
    await s0.start()
    await s0.finished
    const st = s0.status()
    assert.equal(st.microbatchesDone, 3 * 4)
    assert.equal(st.microbatchesDropped, 0)
    const fakeStats = s0.router.stats().find(x => x.peer === fake.peerId.toString())
    assert.ok(fakeStats != null && fakeStats.failures >= 1, 'the fake server was tried and failed')
    // banned after its first failure, with a backoff: a run of 12 microbatches tries it a few times at most
    assert.ok(fakeStats.failures <= 4, `the fake server was tried ${fakeStats.failures} times`)
    assert.equal(st.penalties.byPeer[fake.peerId.toString()] ?? 0, 0, 'no penalty: an honest node between stages may briefly lack the handler')
  })

  it('no usable peer left: the microbatch is dropped and counted, the step is not taken', async () => {
    const manifest = tinyManifest({ stages: 2, steps: 2, batch: 2, seqLen: 16 })
    fx.libp2ps = await connectedNodes(2)
    const [n0, victim] = fx.libp2ps
    const source = new StaticSource()
    source.set(1, [victim.peerId.toString()])
    // answers every request with garbage: a protocol violation each time
    await victim.handle(PIPELINE_FORWARD_PROTOCOL, (stream) => {
      stream.addEventListener('message', () => { if (stream.writeStatus === 'writable') { stream.send(new Uint8Array(80).fill(7)); void stream.close().catch(() => {}) } })
    })
    const s0 = new PipelineNode({
      libp2p: n0, backend: fx.be, manifest, stage: 0, source, data: corpusData(fx.corpus, 1), microbatches: 1, maxInflight: 1, evalBatches: 0,
      retry: { peerWaitMs: 200 }, router: { banBaseMs: 100 }
    })
    fx.pnodes = [s0]
    await s0.start()
    await waitFor(() => s0.status().microbatchesDropped >= 2, { what: 'two dropped microbatches', timeoutMs: 30_000, state: () => `dropped ${s0.status().microbatchesDropped}, done ${s0.status().microbatchesDone}` })
    const st = s0.status()
    assert.ok(st.microbatchesDropped >= 2, `dropped ${st.microbatchesDropped}`)
    assert.equal(st.microbatchesDone, 0)
    assert.equal(st.step, 0, 'no update from nothing')
    assert.ok(st.penalties.byPeer[victim.peerId.toString()] >= 2, 'each garbage reply penalized the peer')
  })
})
