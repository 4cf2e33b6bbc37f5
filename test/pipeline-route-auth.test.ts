// Work only from the right peers (issue 15): a stage takes activations only from peers its view lists
// at the previous stage, only microbatches their origin signed; a peer that drops what it is sent
// while its stage's other peers complete theirs is judged and routed around.
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { corpusData } from '../core/data/index.ts'
import { OriginAuthError, UpstreamNotServingError } from '../core/pipeline/errors.ts'
import { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import type { MicrobatchMeta } from '../core/pipeline/protocol.ts'
import { OriginSigner, RouteAuth } from '../core/pipeline/route-auth.ts'
import { Router } from '../core/pipeline/router.ts'
import { runId } from '../core/run/manifest.ts'
import { startDropper } from './hostile/dropper.ts'
import { feed } from './hostile/feeder.ts'
import { connectedNodes, pipelineSuite, StaticSource, TINY, tinyManifest } from './pipeline-helpers.ts'

const RUN = '0123456789abcdef0123456789abcdef'
const never = new AbortController().signal

describe('pipeline: route authenticity (route-auth.ts)', function () {
  let keys: PrivateKey[]
  let ids: string[]
  before(async () => {
    keys = await Promise.all([0, 1, 2].map(async () => await generateKeyPair('Ed25519')))
    ids = keys.map(k => peerIdFromPrivateKey(k).toString())
  })
  const meta = (origin: string): MicrobatchMeta => ({ origin, step: 3, micro: 1, micros: 4, mode: 'train' })

  it('an origin signature verifies for its tuple only', async () => {
    const source = new StaticSource()
    source.set(0, [ids[0]])
    const auth = new RouteAuth({ runId: RUN, stage: 1, source, verifyOrigin: true, waitMs: 0 })
    const signed = await new OriginSigner(RUN, keys[0]).sign(meta(ids[0]), 42n)
    await auth.check(ids[0], 42n, signed, never)
    await assert.rejects(auth.checkOrigin(43n, signed), OriginAuthError, 'another microbatch id')
    await assert.rejects(auth.checkOrigin(42n, { ...signed, step: 4 }), OriginAuthError, 'another step')
    await assert.rejects(auth.checkOrigin(42n, meta(ids[0])), OriginAuthError, 'unsigned')
    // a peer naming an honest origin it is not: signed with its own key, not the origin's
    const forged = await new OriginSigner(RUN, keys[2]).sign(meta(ids[0]), 42n)
    await assert.rejects(auth.checkOrigin(42n, forged), OriginAuthError, 'signed by another key')
    const otherRun = new RouteAuth({ runId: RUN.replace('0', 'f'), stage: 1, source, verifyOrigin: true })
    await assert.rejects(otherRun.checkOrigin(42n, signed), OriginAuthError, 'another run')
  })

  it('only peers listed at the previous stage (or within the grace) may send', async () => {
    let t = 1000
    const source = new StaticSource()
    source.set(1, [ids[1]])
    const auth = new RouteAuth({ runId: RUN, stage: 2, source, verifyOrigin: false, waitMs: 0, graceMs: 5000, now: () => t })
    await auth.checkUpstream(ids[1], never)
    await assert.rejects(auth.checkUpstream(ids[2], never), UpstreamNotServingError, 'a peer not serving stage 1')
    await assert.rejects(auth.checkUpstream(ids[0], never), UpstreamNotServingError, 'the origin itself, skipping stage 1')
    // the stage-1 peer moves on: its in-flight microbatches still count for the grace, then no more
    source.set(1, [])
    t += 4000
    await auth.checkUpstream(ids[1], never)
    t += 2000
    await assert.rejects(auth.checkUpstream(ids[1], never), UpstreamNotServingError)
  })

  it('an unlisted sender is waited for briefly: one whose heartbeat arrives in time is taken', async () => {
    const source = new StaticSource()
    const auth = new RouteAuth({ runId: RUN, stage: 1, source, verifyOrigin: false, waitMs: 2000 })
    setTimeout(() => { source.set(0, [ids[0]]) }, 200)
    await auth.checkUpstream(ids[0], never)
  })

  it('the router judges a peer that drops while its stage\'s other peer completes; a stage that drops everywhere blames no one', () => {
    const source = new StaticSource()
    source.set(1, ['good', 'bad'])
    const r = new Router(source)
    for (let i = 0; i < 6; i++) r.succeeded('good', 1, 10)
    assert.equal(r.remoteDropped('good', 1), undefined, 'an occasional drop is free')
    const verdicts = Array.from({ length: 6 }, () => r.remoteDropped('bad', 1))
    assert.equal(verdicts.slice(0, 3).filter(v => v != null).length, 0, 'the first drops are free')
    assert.ok(verdicts.slice(3).every(v => v?.verdict === 'reject'), 'repeated drops are judged')
    const all = new Router(source)
    for (let i = 0; i < 10; i++) {
      assert.equal(all.remoteDropped('good', 1), undefined)
      assert.equal(all.remoteDropped('bad', 1), undefined)
    }
  })
})

describe('pipeline: hostile peers in a live pipeline', function () {
  const fx = pipelineSuite('lsw-route-auth-')

  it('a stage-1 node refuses a feeder that is not a stage-0 node, unsigned and forged origins', async () => {
    const manifest = tinyManifest({ stages: 2, steps: 4, batch: 2, seqLen: 16 })
    const rid = runId(manifest)
    const k = await Promise.all([0, 1, 2].map(async () => await generateKeyPair('Ed25519')))
    fx.libp2ps = await connectedNodes(3, k)
    // both dial the server (test nodes run no identify: a node knows only the addresses it dialled)
    const [feeder, honest, server] = fx.libp2ps
    const [h, f] = [honest.peerId.toString(), feeder.peerId.toString()]
    const source = new StaticSource()
    source.set(0, [h])
    const s1 = new PipelineNode({ libp2p: server, backend: fx.be, manifest, stage: 1, source, privateKey: k[2] })
    fx.pnodes = [s1]
    await s1.start()
    const shape = [2, 8, TINY.dModel] as const
    const base = { step: 0, micro: 0, micros: 1, mode: 'train' }

    const fed = await feed(feeder, server.peerId, { runId: rid, stage: 1, shape, route: [f], metadata: { ...await new OriginSigner(rid, k[0]).sign({ ...base, origin: f } as MicrobatchMeta, 7n) } })
    assert.equal(fed.error?.remoteCode, 'ERR_PIPELINE_UPSTREAM', `a feeder: ${fed.error?.message ?? 'served'}`)
    const unsigned = await feed(honest, server.peerId, { runId: rid, stage: 1, shape, route: [h], metadata: { ...base, origin: h } })
    assert.equal(unsigned.error?.remoteCode, 'ERR_PIPELINE_ORIGIN_AUTH', 'an unsigned microbatch')
    const forged = await feed(honest, server.peerId, { runId: rid, stage: 1, shape, route: [h], metadata: { ...await new OriginSigner(rid, k[0]).sign({ ...base, origin: h } as MicrobatchMeta, 7n) } })
    assert.equal(forged.error?.remoteCode, 'ERR_PIPELINE_ORIGIN_AUTH', 'an origin signed by another key')
    assert.ok(s1.judge.penaltiesOf(f) >= 1, 'the feeder is penalised')
    assert.equal(s1.status().microbatchesDone, 0, 'nothing was trained on')
  })

  it('a dropper at stage 1 is judged and routed around: the honest peer does most of the work', async () => {
    const steps = 6
    const M = 4
    const manifest = tinyManifest({ stages: 2, steps, batch: 2, seqLen: 16 })
    const k = await Promise.all([0, 1].map(async () => await generateKeyPair('Ed25519')))
    fx.libp2ps = await connectedNodes(3, k)
    const [n0, good, bad] = fx.libp2ps
    const dropper = await startDropper(bad, runId(manifest), 1)
    const source = new StaticSource()
    source.set(0, [n0.peerId.toString()])
    source.set(1, [bad.peerId.toString(), good.peerId.toString()])
    const s1 = new PipelineNode({ libp2p: good, backend: fx.be, manifest, stage: 1, source, privateKey: k[1] })
    const s0 = new PipelineNode({ libp2p: n0, backend: fx.be, manifest, stage: 0, source, privateKey: k[0], data: corpusData(fx.corpus, 1), microbatches: M, maxInflight: 2, evalBatches: 0 })
    fx.pnodes = [s0, s1]
    await s1.start()
    await s0.start()
    await s0.finished
    const st = s0.status()
    const done = s1.status().microbatchesDone
    console.log(`      dropper received ${dropper.received}, honest peer completed ${done}, dropped ${st.microbatchesDropped}, penalties ${s0.judge.penaltiesOf(bad.peerId.toString())}`)
    assert.equal(st.state, 'done')
    assert.ok(s0.judge.penaltiesOf(bad.peerId.toString()) >= 1, 'the dropper is penalised')
    assert.ok(dropper.received < done, `the dropper took ${dropper.received} microbatches, the honest peer completed ${done}`)
  })
})
