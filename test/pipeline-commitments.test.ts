// Commitments on every hop (core/pipeline/hop-commits.ts): nodes with an identity key sign every
// training output they send and refuse a training hop whose commitment is missing, forged, by
// someone else or about other bytes; the producer keeps what a checker needs to recompute the hop,
// the receiver keeps the signed commitment. Real libp2p nodes on loopback.
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { base64 } from 'multiformats/bases/base64'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { corpusData } from '../core/data/index.ts'
import { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import { int32Bytes, PIPELINE_FORWARD_PROTOCOL, type MicrobatchMeta } from '../core/pipeline/protocol.ts'
import { OriginSigner } from '../core/pipeline/route-auth.ts'
import { runId } from '../core/run/manifest.ts'
import { signCommitment, verifyCommitment } from '../core/verify/commitment.ts'
import { hashHex } from '../core/verify/digest.ts'
import { hopInputHash } from '../core/verify/hop-records.ts'
import { paramsDigest } from '../core/verify/params-digest.ts'
import { openFramed, RemoteError } from '../core/wire/index.ts'
import { connectedNodes, StaticSource, TINY, tinyCorpus, tinyManifest } from './pipeline-helpers.ts'
import { stopNodes } from './wire-helpers.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

describe('pipeline: commitments on every hop', function () {
  this.timeout(60_000)
  let be: ComputeBackend
  let nodes: Libp2p[] = []
  let keys: PrivateKey[]
  let pnodes: PipelineNode[] = []
  let dir: string

  before(async () => {
    be = await createCpuBackend({ threads: 1 })
    dir = await mkdtemp(join(tmpdir(), 'ls-commit-'))
    keys = await Promise.all([0, 1, 2].map(async () => await generateKeyPair('Ed25519')))
  })
  afterEach(async () => {
    for (const p of pnodes) await p.stop()
    pnodes = []
    await stopNodes(...nodes)
    nodes = []
  })
  after(async () => {
    await be?.dispose()
    await rm(dir, { recursive: true, force: true })
  })

  it('a 3-stage run: every training hop is signed, accepted as a receipt, and retained with what recomputing it needs', async () => {
    const steps = 3
    const manifest = tinyManifest({ stages: 3, steps, batch: 2, seqLen: 16 })
    const { corpus } = await tinyCorpus(dir)
    nodes = await connectedNodes(3, keys)
    const source = new StaticSource()
    nodes.forEach((n, s) => { source.set(s, [n.peerId.toString()]) })
    const [s0, s1, s2] = [0, 1, 2].map(s => new PipelineNode({
      libp2p: nodes[s], backend: be, manifest, stage: s, source, privateKey: keys[s], evalBatches: 1,
      ...(s === 0 ? { data: corpusData(corpus, 1) } : {})
    }))
    pnodes = [s0, s1, s2]
    for (const p of [s2, s1, s0]) await p.start()
    await s0.finished
    assert.equal(s0.status().microbatchesDone, steps)
    const [id0, id1, id2] = nodes.map(n => n.peerId.toString())
    // receipts: stage 1 holds stage 0's forward commitments, stage 0 holds stage 1's backward ones, ...
    const fwd01 = s1.receipts()?.recent(id0, 'forward', 10) ?? []
    const fwd12 = s2.receipts()?.recent(id1, 'forward', 10) ?? []
    const back21 = s1.receipts()?.recent(id2, 'backward', 10) ?? []
    const back10 = s0.receipts()?.recent(id1, 'backward', 10) ?? []
    for (const [what, list] of [['0->1 forward', fwd01], ['1->2 forward', fwd12], ['2->1 backward', back21], ['1->0 backward', back10]] as const) {
      assert.equal(list.length, steps, `${what}: one receipt per training microbatch (eval hops carry none)`)
    }
    // each receipt verifies by itself, and its producer still holds the hop: inputs, output and weights match it
    for (const [producer, receipts, node] of [[id1, back10, s1], [id1, fwd12, s1], [id0, fwd01, s0], [id2, back21, s2]] as const) {
      for (const signed of receipts) {
        const { commitment: c } = await verifyCommitment(signed, { producer })
        const rec = node.hopRecords()?.record(c.microbatchId, c.kind)
        assert.ok(rec != null, `${c.kind} hop ${c.microbatchId} retained by its producer`)
        assert.deepEqual(rec.commitment, signed)
        assert.equal(hopInputHash(rec.inputs.map(t => t.bytes)), c.inputHash)
        assert.equal(hashHex(rec.output.bytes), c.outputHash)
        const params = node.hopRecords()?.params(c.paramsDigest)
        assert.ok(params != null, 'the weights it used are retained')
        assert.equal(paramsDigest(params, node.worker.stage.params.specs), c.paramsDigest)
        assert.equal(rec.inputs.length, c.kind === 'forward' ? 1 : 2)
      }
    }
    // the last stage's backward inputs: its activation and the targets
    const last = s2.hopRecords()?.record((await verifyCommitment(back21[0])).commitment.microbatchId, 'backward')
    assert.equal(last?.inputs[1].dtype, 'i32')
  })

  describe('a committing stage-1 node and a hand-made sender', () => {
    const B = 2
    const T = 8
    const C = TINY.dModel
    const manifest = tinyManifest({ stages: 2, steps: 4, batch: B, seqLen: 16 })
    const rid = runId(manifest)
    let server: PipelineNode

    beforeEach(async () => {
      nodes = await connectedNodes(2, keys)
      const source = new StaticSource()
      source.set(0, [nodes[0].peerId.toString()])
      server = new PipelineNode({ libp2p: nodes[1], backend: be, manifest, stage: 1, source, privateKey: keys[1] })
      pnodes = [server]
      await server.start()
    })

    const hidden = Float32Array.from({ length: B * T * C }, (_, i) => Math.sin(i) * 0.5)
    const payload = new Uint8Array(hidden.buffer.slice(0))
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % 256)

    async function commitment (key: PrivateKey, over: { outputHash?: string, microbatchId?: bigint } = {}): Promise<string> {
      const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
      return base64.baseEncode(await signCommitment({
        runId: rid, stage: 0, microbatchId: over.microbatchId ?? 7n, kind: 'forward', step: 0,
        inputHash: hashHex(int32Bytes(targets)), outputHash: over.outputHash ?? hashHex(payload),
        paramsDigest: '0'.repeat(64), codecId: 0, producer: peerIdFromPrivateKey(key).toString(), time: Date.now()
      }, key))
    }

    async function send (c: string | undefined): Promise<{ frame?: any, error?: Error }> {
      const client = nodes[0].peerId.toString()
      const fs = await openFramed(nodes[0], nodes[1].peerId, PIPELINE_FORWARD_PROTOCOL, { runId: rid })
      try {
        // the client is stage 0: it signs the microbatch's origin tuple (route-auth.ts)
        const signed = await new OriginSigner(rid, keys[0]).sign({ origin: client, step: 0, micro: 0, micros: 1, mode: 'train' } satisfies MicrobatchMeta, 7n)
        const meta = { ...signed, ...(c != null ? { commitment: c } : {}) }
        await fs.send({ kind: 'activation', microbatchId: 7n, stage: 1, dtype: 'f32', shape: [B, T, C], route: [client], metadata: meta }, payload)
        await fs.send({ kind: 'request', microbatchId: 7n, stage: 1, dtype: 'i32', shape: [B, T], route: [client], metadata: { op: 'targets' } }, int32Bytes(targets))
        const frame = await fs.expect()
        await fs.close().catch(() => {})
        return { frame }
      } catch (err) {
        fs.abort(err as Error)
        return { error: err as Error }
      }
    }
    const code = (r: { error?: Error }): string | undefined => r.error instanceof RemoteError ? r.error.remoteCode : undefined

    it('refuses a hop without a commitment, by another signer, about other bytes or another microbatch, and penalizes the sender', async () => {
      const client = nodes[0].peerId.toString()
      const cases: Array<[string, string | undefined, string]> = [
        ['missing', undefined, 'ERR_PIPELINE_COMMITMENT'],
        ['signed by a third key', await commitment(keys[2]), 'ERR_VERIFY_WRONG_SIGNER'],
        ['about other bytes', await commitment(keys[0], { outputHash: 'ab'.repeat(32) }), 'ERR_PIPELINE_COMMITMENT'],
        ['for another microbatch', await commitment(keys[0], { microbatchId: 8n }), 'ERR_PIPELINE_COMMITMENT'],
        ['not base64', '%%%', 'ERR_PIPELINE_COMMITMENT']
      ]
      for (const [what, c, want] of cases) {
        const before = server.status().penalties.byPeer[client] ?? 0
        const r = await send(c)
        assert.equal(code(r), want, `${what}: ${r.error?.message ?? 'served'}`)
        assert.equal(server.status().penalties.byPeer[client], before + 1, `${what}: penalized`)
      }
    })

    it('serves a hop with a valid commitment and answers with its own, which verifies and names the weights it used', async () => {
      const used = paramsDigest(await server.worker.stage.params.download(), server.worker.stage.params.specs)
      const r = await send(await commitment(keys[0]))
      assert.equal(r.error, undefined)
      const signed = base64.baseDecode(r.frame.header.metadata.commitment as string)
      const { commitment: c } = await verifyCommitment(signed, { producer: nodes[1].peerId.toString() })
      assert.equal(c.kind, 'backward')
      assert.equal(c.stage, 1)
      assert.equal(c.outputHash, hashHex(r.frame.payload))
      assert.equal(c.inputHash, hopInputHash([payload, int32Bytes(targets)]))
      assert.equal(c.paramsDigest, used, 'the weights it computed with (the step it then took changed them)')
      assert.notEqual(paramsDigest(await server.worker.stage.params.download(), server.worker.stage.params.specs), used, 'one microbatch was a whole step here')
      assert.equal(server.status().penalties.total, 0)
    })
  })
})
