// Verification between real libp2p nodes on loopback (TCP, noise, yamux, gossipsub): the reveal
// protocol serves what a producer retains and refuses what it does not; receipts come back verified
// (a forged one fails the exchange); the validator role passes an honest producer, catches a cheater
// (sign-flipped gradients) and a producer that refuses to reveal, and every other node convicts them
// from the gossiped accusation alone; a false accuser is penalised and its target stays clean; a
// malformed or forged accusation is REJECTed at the gossip validator.
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import type { ComputeBackend } from '../core/contracts/index.ts'
import { PeerJudge } from '../core/peer-judge.ts'
import { runId } from '../core/run/manifest.ts'
import { RemoteError } from '../core/wire/index.ts'
import {
  EvidenceService, ReceiptServer, RevealServer, Validator, VerifyProtocolError, WorkLedger, hopKey, recomputeHop, requestReceipts, requestReveal,
  signAccusation, verifyCommitment, type HopKind, type HopRecord, type HopRecordSource, type ReceiptSource, type RevealedHop
} from '../core/verify/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'
import { cheat, producer, runHops, verifyManifest, type HopSet, type Producer } from './verify-helpers.ts'
import { waitFor } from './wait-helpers.ts'
import { createGossipNode, stopNodes } from './wire-helpers.ts'

interface Peer {
  node: Libp2p<{ pubsub: GossipSub }>
  key: PrivateKey
  id: string
  judge: PeerJudge
  ledger: WorkLedger
  evidence: EvidenceService
  /** What this node serves as a producer (mutable: tests swap in a cheater's records). */
  hops: Map<string, RevealedHop>
  /** Signed commitments this node received, by producer and kind. */
  receipts: Map<string, Uint8Array[]>
  servers: Array<{ stop: () => Promise<void> }>
  withholding: boolean
}

/** A producer-side store over `hops` (nothing while withholding). */
function recordSource (p: Peer): () => HopRecordSource | undefined {
  return () => p.withholding
    ? undefined
    : {
        record: (id: bigint, kind: HopKind): HopRecord | undefined => p.hops.get(hopKey(id, kind))?.record,
        params: (digest: string) => [...p.hops.values()].find(h => h.record.paramsDigest === digest)?.params
      }
}

function receiptSource (p: Peer): ReceiptSource {
  return { recent: (producer, kind, max) => (p.receipts.get(`${producer}|${kind}`) ?? []).slice(0, max) }
}

describe('verify: protocols, validator, evidence (real nodes)', function () {
  this.timeout(120_000)
  const manifest = verifyManifest(3)
  const run = runId(manifest)
  let backend: ComputeBackend
  let peers: Peer[] = []
  let set: HopSet
  let other: HopSet

  async function makePeer (who: Producer): Promise<Peer> {
    const node = await createGossipNode(who.key) as unknown as Libp2p<{ pubsub: GossipSub }>
    const judge = new PeerJudge()
    const p: Peer = { node, key: who.key, id: who.id, judge, ledger: new WorkLedger(), evidence: undefined as unknown as EvidenceService, hops: new Map(), receipts: new Map(), servers: [], withholding: false }
    p.evidence = new EvidenceService({
      libp2p: node, privateKey: who.key, judge, ledger: p.ledger, manifest, backend, codecs: set.codecs, evidenceTimeoutMs: 10_000, revealTimeoutMs: 3000
    })
    const reveal = new RevealServer(node, { runId: run, source: recordSource(p) })
    const receipts = new ReceiptServer(node, { runId: run, source: () => receiptSource(p) })
    await Promise.all([reveal.start(), receipts.start(), p.evidence.start()])
    p.servers.push(reveal, receipts, p.evidence)
    return p
  }

  before(async () => {
    backend = await createCpuBackend({ threads: 1 })
    // stage producers: the nodes of stages 0, 1, 2; then a validator and a witness
    const who = await Promise.all([0, 1, 2, 3, 4].map(async () => await producer()))
    set = await runHops(manifest, backend, { producers: who.slice(0, 3) })
    other = await runHops(manifest, backend, { producers: who.slice(0, 3), seed: 9, microbatchId: 2n })
    for (const w of who) peers.push(await makePeer(w))
    for (let i = 0; i < peers.length; i++) {
      for (let j = i + 1; j < peers.length; j++) await peers[i].node.dial(peers[j].node.getMultiaddrs()[0])
    }
    // every producer serves its hops; every receiver keeps the commitments it got
    for (const [k, hop] of set.hops) {
      const [kind, s] = k.split(':')
      const stage = Number(s)
      peers[stage].hops.set(hopKey(hop.record.microbatchId, hop.record.kind), hop)
      const to = kind === 'forward' ? stage + 1 : stage - 1
      peers[to].receipts.set(`${peers[stage].id}|${kind}`, [hop.record.commitment])
    }
    const topic = peers[0].evidence.topic
    await waitFor(() => peers.every(p => p.node.services.pubsub.getSubscribers(topic).length === peers.length - 1), { what: 'every node to see the others on the evidence topic' })
  })

  after(async () => {
    for (const p of peers) for (const s of p.servers) await s.stop()
    await stopNodes(...peers.map(p => p.node))
    peers = []
    await backend?.dispose()
  })

  const validator = (v: Peer, stages: number[]): Validator => new Validator({
    libp2p: v.node, evidence: v.evidence, ledger: v.ledger, manifest, backend, codecs: set.codecs, stages,
    peersOfStage: s => [peers[s].id], revealTimeoutMs: 3000
  })

  it('reveal: serves a retained hop (with or without weights) and refuses what it does not hold', async () => {
    const [, p1, , v] = peers
    const hop = set.hops.get('forward:1')!
    const { commitment: c } = await verifyCommitment(hop.record.commitment)
    const got = await requestReveal(v.node, p1.id, c, { runId: run })
    assert.deepEqual(got.record.commitment, hop.record.commitment)
    assert.ok((await recomputeHop(got, { manifest, backend, codecs: set.codecs }, { expected: c })).ok)
    const cached = await requestReveal(v.node, p1.id, c, { runId: run, paramsCache: new Map([[c.paramsDigest, hop.params]]) })
    assert.ok((await recomputeHop(cached, { manifest, backend, codecs: set.codecs }, { expected: c })).ok)
    await assert.rejects(requestReveal(v.node, p1.id, { ...c, microbatchId: 77n }, { runId: run }),
      (err: unknown) => err instanceof RemoteError && err.remoteCode === 'ERR_VERIFY_NOT_RETAINED')
  })

  it('receipts: come back verified; a forged one fails the exchange', async () => {
    const [, p1, p2, v] = peers
    const got = await requestReceipts(v.node, p2.id, { producer: p1.id, kind: 'forward', max: 8 }, { runId: run })
    assert.equal(got.length, 1)
    assert.equal(got[0].commitment.producer, p1.id)
    const good = p2.receipts.get(`${p1.id}|forward`)!
    p2.receipts.set(`${p1.id}|forward`, [good[0].map((b, i) => i === 60 ? b ^ 1 : b)])
    try {
      await assert.rejects(requestReceipts(v.node, p2.id, { producer: p1.id, kind: 'forward', max: 8 }, { runId: run }), VerifyProtocolError)
    } finally {
      p2.receipts.set(`${p1.id}|forward`, good)
    }
  })

  it('the validator passes an honest producer', async () => {
    const v = peers[3]
    const val = validator(v, [1])
    for (let i = 0; i < 4; i++) assert.equal(await val.checkOnce(), 'passed')
    assert.equal(v.evidence.convictions.size, 0)
    assert.equal((val.status() as { passed: number }).passed, 4)
    assert.equal(v.ledger.peer(peers[1].id)?.checks.own.passed, 4)
  })

  it('a cheater (sign-flipped gradients) is caught, and every node convicts it from the accusation', async () => {
    const [p0, p1, p2, v, w] = peers
    const hop = set.hops.get('backward:1')!
    const bad = await cheat(set, hop, 'signflip', { key: p1.key, id: p1.id })
    const honest = new Map(p1.hops)
    p1.hops.set(hopKey(bad.record.microbatchId, 'backward'), bad)
    p0.receipts.set(`${p1.id}|backward`, [bad.record.commitment])
    // the forward hops of p1 have no receipts now: the validator samples its backward hop
    const forward = p2.receipts.get(`${p1.id}|forward`)
    p2.receipts.delete(`${p1.id}|forward`)
    try {
      const val = validator(v, [1])
      let r
      for (let i = 0; i < 20 && r !== 'failed'; i++) r = await val.checkOnce()
      assert.equal(r, 'failed')
      assert.ok(v.evidence.convictions.has(p1.id))
      for (const x of [p0, p2, w]) {
        await waitFor(() => x.evidence.convictions.has(p1.id), { what: `${x.id.slice(-4)} to convict the cheater`, state: () => x.evidence.status() })
        assert.ok(x.judge.penaltiesOf(p1.id) >= 1)
        assert.equal(x.judge.penaltiesOf(v.id), 0, 'the true accuser is not penalised')
      }
      assert.equal(w.ledger.peer(p1.id)?.checks.accusation.failed, 1)
      assert.equal(w.ledger.peer(v.id)?.accusations.upheld, 1)
      // p1 never convicts itself
      assert.equal(p1.evidence.convictions.has(p1.id), false)
    } finally {
      p1.hops.clear()
      for (const [k, h] of honest) p1.hops.set(k, h)
      p0.receipts.set(`${p1.id}|backward`, [hop.record.commitment])
      p2.receipts.set(`${p1.id}|forward`, forward!)
    }
  })

  it('a producer that refuses to reveal is accused of withholding and convicted by the others', async () => {
    const [, , p2, v, w] = peers
    p2.withholding = true
    const val = validator(v, [2])
    assert.equal(await val.checkOnce(), 'withheld')
    for (const x of [v, w]) await waitFor(() => x.evidence.convictions.get(p2.id)?.kind === 'withhold', { what: 'the withholder convicted', state: () => x.evidence.status() })
    assert.equal(w.judge.penaltiesOf(v.id), 0)
  })

  it('a false accuser is penalised and its target stays clean (mismatch and withhold)', async () => {
    const [p0, p1, p2, v, w] = peers
    const falseAccusation = async (liar: Peer, witnesses: Peer[], accuse: () => Promise<boolean>): Promise<void> => {
      const penalties = (x: Peer): number => x.judge.penaltiesOf(liar.id)
      const b0 = witnesses.map(penalties)
      assert.equal(await accuse(), true)
      for (const [i, x] of witnesses.entries()) {
        await waitFor(() => penalties(x) > b0[i], { what: 'the false accuser penalised', state: () => x.evidence.status() })
        assert.equal(x.evidence.convictions.has(p0.id), false, 'the honest producer is not convicted')
        assert.equal(x.ledger.peer(liar.id)?.accusations.false, 1)
      }
    }
    // mismatch: the liar serves the honest hop as its "evidence"
    const hop = set.hops.get('forward:0')!
    await falseAccusation(v, [w, p2], async () => await v.evidence.accuse('mismatch', hop.record.commitment, hop))
    // withhold: p0 reveals the hop to everyone who asks
    const another = other.hops.get('forward:0')!
    p0.hops.set(hopKey(another.record.microbatchId, 'forward'), another)
    await falseAccusation(w, [p1, p2], async () => await w.evidence.accuse('withhold', another.record.commitment))
  })

  it('a malformed, forged or misattributed accusation is rejected at the gossip validator', async () => {
    const [, , , v, w] = peers
    const rejected = (): number => Object.values(w.evidence.status().received.rejected).reduce((a, b) => a + b, 0)
    const r0 = rejected()
    const convicted = w.evidence.convictions.size
    const pubsub = v.node.services.pubsub
    await pubsub.publish(w.evidence.topic, new TextEncoder().encode('{"v":1,"kind":"mismatch"}'))
    await waitFor(() => rejected() > r0, { what: 'a malformed accusation rejected' })
    // a valid accusation by mallory, published by v: the gossip author is not the accuser
    const c = set.hops.get('forward:1')!.record.commitment
    const mallory = await producer()
    const forged = await signAccusation({ kind: 'withhold', accuser: mallory.id, commitment: c, time: Date.now() }, mallory.key)
    await pubsub.publish(w.evidence.topic, forged)
    await waitFor(() => rejected() > r0 + 1, { what: 'an accusation published by another than its accuser rejected' })
    assert.equal(w.evidence.status().received.rejected.ERR_VERIFY_ACCUSATION_MALFORMED, rejected() - r0)
    assert.equal(w.evidence.convictions.size, convicted)
  })
})
