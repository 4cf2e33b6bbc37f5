// The producer's store of the hops it sent (core/pipeline/hop-commits.ts HopStore) and the reveal
// that reads it: a microbatch the pipeline retried through another peer is computed again under the
// same id, maybe at a later step. Every computation stays revealable, and a reveal returns the one the
// checked commitment names: with only the newest kept, an honest last stage revealed the retry's
// record for the first commitment and was convicted of withholding (the poison swarm's CI failure).
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { HopStore, ParamsWitness } from '../core/pipeline/hop-commits.ts'
import { signCommitment, verifyCommitment, type HopCommitment } from '../core/verify/commitment.ts'
import { hashHex } from '../core/verify/digest.ts'
import type { HopRecord } from '../core/verify/hop-records.ts'
import { REVEAL_PROTOCOL, RevealServer, requestReveal } from '../core/verify/reveal.ts'
import { openFramed, RemoteError } from '../core/wire/index.ts'
import { createTestNode, stopNodes } from './wire-helpers.ts'

const RUN = '0123456789abcdef0123456789abcdef'
const DIGEST = 'ab'.repeat(32)

async function hop (key: PrivateKey, step: number, fill: number, microbatchId = 5n): Promise<{ record: HopRecord, c: HopCommitment }> {
  const input = new Uint8Array(64).fill(fill)
  const output = new Uint8Array(64).fill(fill + 1)
  const signed = await signCommitment({
    runId: RUN, stage: 2, microbatchId, kind: 'backward', step, inputHash: hashHex(input), outputHash: hashHex(output),
    paramsDigest: DIGEST, codecId: 0, producer: peerIdFromPrivateKey(key).toString(), time: Date.now()
  }, key)
  const record: HopRecord = {
    commitment: signed,
    kind: 'backward',
    microbatchId,
    stage: 2,
    inputs: [{ bytes: input, codecId: 0, dtype: 'f32', shape: [16] }],
    output: { bytes: output, codecId: 0, dtype: 'f32', shape: [16] },
    paramsDigest: DIGEST
  }
  return { record, c: (await verifyCommitment(signed)).commitment }
}

const which = (c: HopCommitment): { step: number, outputHash: string } => ({ step: c.step, outputHash: c.outputHash })

describe('verify: the producer keeps every computation of a retried microbatch', function () {
  this.timeout(30_000)
  let key: PrivateKey

  before(async () => { key = await generateKeyPair('Ed25519') })

  it('returns the computation the commitment names, and the newest when none is named', async () => {
    const store = new HopStore(new ParamsWitness())
    const first = await hop(key, 3, 1)
    const retry = await hop(key, 4, 7)
    store.add(first.record)
    store.add(retry.record)
    assert.equal(store.record(5n, 'backward', which(first.c)), first.record)
    assert.equal(store.record(5n, 'backward', which(retry.c)), retry.record)
    assert.equal(store.record(5n, 'backward'), retry.record)
    assert.equal(store.record(5n, 'backward', { step: 9, outputHash: first.c.outputHash }), undefined, 'a computation never made is not revealed')
    assert.equal(store.record(6n, 'backward'), undefined)
  })

  it('the same computation again replaces its record; at most 4 are kept per hop; past the window none is', async () => {
    let t = 1_000_000
    const store = new HopStore(new ParamsWitness(), { retainMs: 1000, now: () => t })
    const hops = []
    for (let i = 0; i < 6; i++) hops.push(await hop(key, 10 + i, i))
    store.add(hops[0].record)
    store.add((await hop(key, 10, 0)).record)
    assert.notEqual(store.record(5n, 'backward', which(hops[0].c)), undefined)
    for (const h of hops.slice(1)) store.add(h.record)
    assert.equal(store.record(5n, 'backward', which(hops[0].c)), undefined, 'the oldest of 6 computations left')
    assert.equal(store.record(5n, 'backward', which(hops[1].c)), undefined)
    for (const h of hops.slice(2)) assert.equal(store.record(5n, 'backward', which(h.c)), h.record)
    t += 1001
    assert.equal(store.record(5n, 'backward'), undefined, 'past the retention window')
  })

  it('over the byte cap, the oldest hops go first and the newest stays', async () => {
    const store = new HopStore(new ParamsWitness(), { maxBytes: 300 })
    const hops = []
    for (let i = 0; i < 4; i++) hops.push(await hop(key, 1, i, BigInt(i)))
    for (const h of hops) store.add(h.record)
    // each record holds 128 payload bytes: two fit under 300
    assert.equal(store.record(0n, 'backward'), undefined)
    assert.equal(store.record(1n, 'backward'), undefined)
    assert.equal(store.record(2n, 'backward'), hops[2].record)
    assert.equal(store.record(3n, 'backward'), hops[3].record)
  })

  describe('over a real stream', () => {
    let producer: Libp2p
    let checker: Libp2p
    let server: RevealServer
    let store: HopStore

    before(async () => {
      producer = await createTestNode(key)
      checker = await createTestNode()
      store = new HopStore(new ParamsWitness())
      server = new RevealServer(producer, { runId: RUN, source: () => store })
      await server.start()
      await checker.dial(producer.getMultiaddrs()[0])
    })
    after(async () => {
      await server?.stop()
      await stopNodes(producer, checker)
    })

    it('the reveal of the first computation returns it, after the retry was computed', async () => {
      const first = await hop(key, 3, 1)
      const retry = await hop(key, 4, 7)
      store.add(first.record)
      store.add(retry.record)
      // the weights travel with the reveal: a snapshot under the commitment's digest is not needed, the
      // checker says it holds them
      const cache = new Map([[DIGEST, new Map<string, Float32Array>()]])
      const got = await requestReveal(checker, producer.peerId.toString(), first.c, { runId: RUN, paramsCache: cache })
      assert.deepEqual(got.record.commitment, first.record.commitment)
      const again = await requestReveal(checker, producer.peerId.toString(), retry.c, { runId: RUN, paramsCache: cache })
      assert.deepEqual(again.record.commitment, retry.record.commitment)
    })

    it('a request naming a step without an outputHash is refused with a typed error, and the server goes on', async () => {
      const fs = await openFramed(checker, producer.peerId, REVEAL_PROTOCOL, { runId: RUN })
      await fs.send({ kind: 'request', microbatchId: 5n, stage: 2, metadata: { op: 'reveal', kind: 'backward', params: false, step: 3 } })
      await assert.rejects(fs.expect(), (err: unknown) => err instanceof RemoteError && err.remoteCode === 'ERR_VERIFY_PROTOCOL')
      const first = await hop(key, 3, 1)
      store.add(first.record)
      const got = await requestReveal(checker, producer.peerId.toString(), first.c, { runId: RUN, paramsCache: new Map([[DIGEST, new Map()]]) })
      assert.deepEqual(got.record.commitment, first.record.commitment)
    })
  })
})
