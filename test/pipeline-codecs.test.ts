// Compression across the swarm: boundary tensors go through the run manifest's codec per role (the
// codecs of the built-in compression plugin, loaded by a real plugin host), a peer that sends
// another codec id is refused with a typed error and penalized, the byte counters count encoded
// payload bytes, and a learned bottleneck narrows every boundary frame to [B,T,k] while the
// swarm still learns.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Libp2p } from '@libp2p/interface'
import { CodecNotAllowedError, CodecSet, UnknownCodecError } from '../core/codec-set.ts'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import type { Corpus } from '../core/data/index.ts'
import { CodecError } from '../core/errors.ts'
import { PluginHost } from '../core/node/plugin-host.ts'
import { boundaryCodecs, CODEC_PLUGIN, type BoundaryCodecs, type BoundaryRole } from '../core/codecs/tensor-codecs.ts'
import { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import { PIPELINE_FORWARD_PROTOCOL } from '../core/pipeline/protocol.ts'
import { runId } from '../core/run/manifest.ts'
import { parseTrainingOptions, trainingPlugins } from '../core/runtime/training-runtime.ts'
import { corpusData } from '../core/data/index.ts'
import { encodeHeader, FrameDecoder, openFramed, RemoteError, type Frame, type FramedStream } from '../core/wire/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { connectedNodes, exchangeMicrobatch, StaticSource, TINY, tinyCorpus, tinyManifest } from './pipeline-helpers.ts'
import { stopNodes } from './wire-helpers.ts'

const C = TINY.dModel

/** Bytes of an int8-block message (docs/compression.md): header 8 + 4·rank + 4 (block size) + 4 (CRC), f32 absmax per 64-block, 1 byte per element. */
function int8Bytes (shape: readonly number[]): number {
  const n = shape.reduce((a, b) => a * b, 1)
  return 8 + 4 * shape.length + 4 + 4 + 4 * Math.ceil(n / 64) + n
}

/** A frame as a peer would receive it (header + payload through the wire decoder). */
function frameOf (role: BoundaryRole, codecId: number, shape: number[], payload: Uint8Array): Frame {
  const header = encodeHeader({ kind: role, runId: '0'.repeat(32), microbatchId: 1n, stage: 1, codecId, dtype: 'f32', shape }, payload)
  const bytes = new Uint8Array(header.byteLength + payload.byteLength)
  bytes.set(header)
  bytes.set(payload, header.byteLength)
  return new FrameDecoder().push(bytes)[0]
}

describe('pipeline: boundary compression', function () {
  let be: ComputeBackend
  let host: PluginHost
  let codecs: CodecSet
  before(async () => {
    be = await createCpuBackend({ threads: 1 })
    // the built-in codecs, registered the way a node's plugin host registers them
    host = new PluginHost()
    await host.load([CODEC_PLUGIN])
    await host.start()
    codecs = CodecSet.fromContainer(host.container)
  })
  after(async () => {
    await host?.stop()
    await be?.dispose()
  })

  it('decodes only the run\'s codec per role: another registered codec, an unknown id, raw bytes or mismatched dims are typed CodecErrors', () => {
    const bc = boundaryCodecs({ activation: 'int8-block', 'activation-grad': 'fp16' }, host.container)
    const shape = [2, 8, C]
    const data = Float32Array.from({ length: 2 * 8 * C }, (_, i) => Math.sin(i))
    const enc = bc.encode('activation', data, shape)
    assert.equal(enc.codecId, codecs.byName('int8-block').id)
    assert.equal(enc.bytes.byteLength, int8Bytes(shape))
    const back = bc.decode('activation', frameOf('activation', enc.codecId, shape, enc.bytes))
    for (let i = 0; i < data.length; i++) assert.ok(Math.abs(back[i] - data[i]) <= 1 / 127, `element ${i}`)
    assert.equal(bc.encode('activation-grad', data, shape).codecId, codecs.byName('fp16').id)

    const fp16 = codecs.byName('fp16')
    assert.throws(() => bc.decode('activation', frameOf('activation', fp16.id, shape, fp16.encode(data, shape, 'activation'))), CodecNotAllowedError)
    assert.throws(() => bc.decode('activation', frameOf('activation', 999, shape, enc.bytes)), UnknownCodecError)
    assert.throws(() => bc.decode('activation', frameOf('activation', 0, shape, new Uint8Array(data.buffer.slice(0)))), CodecError)
    const otherDims = codecs.byName('int8-block').encode(data, [1, 16, C], 'activation')
    assert.throws(() => bc.decode('activation', frameOf('activation', enc.codecId, shape, otherDims)), /decoded activation has shape \[1,16,32\], the frame header says \[2,8,32\]/)
  })

  describe('a stage-1 node of an int8-block run, and a real libp2p peer sending to it', function () {
    const B = 2
    const T = 8
    const manifest = tinyManifest({ stages: 2, steps: 4, batch: B, seqLen: 16, codec: 'int8-block' })
    const rid = runId(manifest)
    let nodes: Libp2p[]
    let server: PipelineNode
    let client: string
    before(async () => {
      nodes = await connectedNodes(2)
      client = nodes[0].peerId.toString()
      const source = new StaticSource()
      source.set(0, [client])
      server = new PipelineNode({ libp2p: nodes[1], backend: be, manifest, stage: 1, source, container: host.container })
      await server.start()
    })
    after(async () => {
      await server?.stop()
      await stopNodes(...(nodes ?? []))
    })

    const hidden = Float32Array.from({ length: B * T * C }, (_, i) => Math.sin(i) * 0.5)
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % 256)

    /** Sends an activation with the given codec id and payload, then the targets; the reply frame or the error. */
    async function exchange (codecId: number, payload: Uint8Array): Promise<{ frame?: Frame, error?: Error }> {
      const fs: FramedStream = await openFramed(nodes[0], nodes[1].peerId, PIPELINE_FORWARD_PROTOCOL, { runId: rid, signal: AbortSignal.timeout(20_000) })
      const meta = { origin: client, step: 0, micro: 0, micros: 1, mode: 'train' }
      return await exchangeMicrobatch(fs,
        [{ kind: 'activation', microbatchId: 7n, stage: 1, codecId, dtype: 'f32', shape: [B, T, C], route: [client], metadata: meta }, payload],
        [{ kind: 'request', microbatchId: 7n, stage: 1, dtype: 'i32', shape: [B, T], route: [client], metadata: { op: 'targets' } }, new Uint8Array(targets.buffer.slice(0))])
    }
    const penalties = (): number => server.status().penalties.byPeer[client] ?? 0

    it('serves an int8-block activation and answers with an int8-block gradient; counts encoded bytes', async () => {
      const int8 = codecs.byName('int8-block')
      const r = await exchange(int8.id, int8.encode(hidden, [B, T, C], 'activation'))
      assert.equal(r.error, undefined, r.error?.message)
      const h = r.frame?.header
      assert.equal(h?.kind, 'activation-grad')
      assert.equal(h?.codecId, int8.id, 'the gradient goes back through the run\'s codec for activation-grad')
      assert.deepEqual(h?.shape, [B, T, C])
      assert.equal(r.frame?.payload.byteLength, int8Bytes([B, T, C]))
      const grad = int8.decode(r.frame?.payload as Uint8Array)
      assert.ok(grad.data.some(x => x !== 0), 'a real gradient')
      const st = server.status()
      assert.deepEqual(st.codecs, { activation: 'int8-block', 'activation-grad': 'int8-block' })
      assert.equal(st.bytesBackward, int8Bytes([B, T, C]), 'bytesBackward counts the encoded payload')
      assert.equal(st.boundaryBytesBackward, int8Bytes([B, T, C]))
      assert.equal(st.boundaryTokensBackward, B * T)
      assert.equal(st.microbatchesDone, 1)
    })

    it('refuses a codec id the run did not choose for the role, with ERR_CODEC, and penalizes the sender', async () => {
      const done = server.status().microbatchesDone
      const fp16 = codecs.byName('fp16')
      const int8 = codecs.byName('int8-block')
      const cases: Array<[string, number, Uint8Array]> = [
        ['fp16 (registered, not the run\'s)', fp16.id, fp16.encode(hidden, [B, T, C], 'activation')],
        ['raw f32 (codec 0)', 0, new Uint8Array(hidden.buffer.slice(0))],
        ['an unknown codec id', 999, int8.encode(hidden, [B, T, C], 'activation')],
        ['int8-block id over an fp16 payload', int8.id, fp16.encode(hidden, [B, T, C], 'activation')]
      ]
      for (const [name, id, payload] of cases) {
        const p0 = penalties()
        const r = await exchange(id, payload)
        assert.ok(r.error instanceof RemoteError, `${name}: refused with an error frame, got ${String(r.error ?? 'a reply')}`)
        assert.equal(r.error.remoteCode, 'ERR_CODEC', name)
        assert.equal(penalties(), p0 + 1, `${name}: penalty counted`)
        const peer = server.router.stats().find(s => s.peer === client)
        assert.ok(peer != null && peer.bannedForMs > 0, `${name}: the sender is banned from routing for a while`)
      }
      assert.equal(server.status().microbatchesDone, done, 'no refused microbatch reached the stage')
      const ok = await exchange(int8.id, int8.encode(hidden, [B, T, C], 'activation'))
      assert.equal(ok.error, undefined, 'the next valid microbatch is served')
      assert.equal(server.status().microbatchesDone, done + 1)
    })
  })

  describe('a 2-stage swarm with a learned bottleneck and int8-block', function () {
    let dir: string
    let corpus: Corpus
    let libp2ps: Libp2p[] = []
    let pnodes: PipelineNode[] = []
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'lsw-pipe-codec-'))
      ;({ corpus } = await tinyCorpus(dir))
    })
    after(async () => {
      await Promise.all(pnodes.map(async p => { await p.stop() }))
      await stopNodes(...libp2ps)
      await rm(dir, { recursive: true, force: true })
    })

    /** The real boundary codecs, plus a record of every frame header they decode. */
    function recording (inner: BoundaryCodecs, seen: Array<{ role: BoundaryRole, codecId: number, shape: number[] }>): BoundaryCodecs {
      return {
        name: role => inner.name(role),
        encode: (role, data, shape) => inner.encode(role, data, shape),
        decode (role, frame) {
          seen.push({ role, codecId: frame.header.codecId, shape: [...frame.header.shape] })
          return inner.decode(role, frame)
        }
      }
    }

    it('sends [B,T,k] int8-block frames both ways, counts their encoded bytes, and the loss falls', async () => {
      const K = 8
      const B = 2
      const T = 16
      const steps = 10
      const M = 2
      const evalBatches = 1
      const manifest = tinyManifest({ stages: 2, steps, batch: B, seqLen: T, lr: 1e-2, warmup: 1, clip: 1, codec: 'int8-block', bottleneck: K })
      assert.equal(manifest.bottleneck, K)
      libp2ps = await connectedNodes(2)
      const source = new StaticSource()
      libp2ps.forEach((n, s) => { source.set(s, [n.peerId.toString()]) })
      const seen: Array<{ role: BoundaryRole, codecId: number, shape: number[] }> = []
      const mk = (): BoundaryCodecs => recording(boundaryCodecs({ activation: 'int8-block', 'activation-grad': 'int8-block' }, host.container), seen)
      const s1 = new PipelineNode({ libp2p: libp2ps[1], backend: be, manifest, stage: 1, source, codecs: mk() })
      const s0 = new PipelineNode({ libp2p: libp2ps[0], backend: be, manifest, stage: 0, source, codecs: mk(), data: corpusData(corpus, 1), microbatches: M, maxInflight: 2, evalBatches })
      pnodes = [s0, s1]
      assert.equal(s0.worker.stage.boundaryWidth, K)
      assert.equal(s1.worker.stage.boundaryWidth, K)
      await s1.start()
      await s0.start()
      await s0.finished
      const a = s0.status()
      const b = s1.status()
      assert.equal(a.state, 'done')
      assert.equal(a.microbatchesDone, steps * M)
      assert.equal(a.microbatchesDropped, 0)
      assert.equal(a.bottleneck, K)

      // every frame that crossed the boundary: [B,T,k], int8-block
      const int8 = codecs.byName('int8-block').id
      const acts = seen.filter(x => x.role === 'activation')
      const grads = seen.filter(x => x.role === 'activation-grad')
      assert.equal(acts.length, steps * M + evalBatches)
      assert.equal(grads.length, steps * M)
      for (const x of seen) {
        assert.deepEqual(x.shape, [B, T, K], `${x.role} frame shape`)
        assert.equal(x.codecId, int8, `${x.role} codec id`)
      }

      // encoded bytes: int8-block of [B,T,k] per crossing (4x fewer than f32 [B,T,k], 16x fewer than f32 [B,T,C])
      const per = int8Bytes([B, T, K])
      assert.equal(per, 28 + 4 * 4 + B * T * K)
      assert.equal(a.boundaryBytesForward, (steps * M + evalBatches) * per)
      assert.equal(a.boundaryTokensForward, (steps * M + evalBatches) * B * T)
      assert.equal(a.bytesForward, (steps * M + evalBatches) * (per + B * T * 4), 'activations + raw i32 targets')
      assert.equal(b.boundaryBytesBackward, steps * M * per)
      assert.equal(b.bytesBackward, steps * M * per)
      assert.equal(b.boundaryTokensBackward, steps * M * B * T)
      const ratio = (4 * C) / (per / (B * T))
      assert.ok(ratio > 12 && ratio < 16, `compression vs f32 [B,T,C]: ${ratio}`)

      assert.equal(a.loss.length, steps)
      assert.ok(a.loss[steps - 1][1] < a.loss[0][1] - 0.3, `loss ${a.loss[0][1]} -> ${a.loss[steps - 1][1]}`)
      assert.ok(a.evalLoss != null && a.evalLoss < Math.log(256), `eval ${a.evalLoss}`)
    })
  })

  it('start loads the compression plugin for any boundary or averaging codec but raw (flags or a manifest file)', async () => {
    // a run shorter than the averaging period (50) uses only the boundary codecs
    const base = { stage: '0', steps: '10' }
    assert.deepEqual(await trainingPlugins(parseTrainingOptions(base)), [])
    // a longer run averages with the default parameter codec fp32, which the plugin provides
    assert.deepEqual(await trainingPlugins(parseTrainingOptions({ stage: '0', steps: '100' })), [CODEC_PLUGIN])
    assert.deepEqual(await trainingPlugins(parseTrainingOptions({ ...base, codec: 'none' })), [])
    assert.deepEqual(await trainingPlugins(parseTrainingOptions({ ...base, codec: 'int8-block' })), [CODEC_PLUGIN])
    assert.deepEqual(await trainingPlugins(parseTrainingOptions({ ...base, codec: 'fp32' })), [CODEC_PLUGIN])
    assert.deepEqual(await trainingPlugins(parseTrainingOptions({ ...base, gradCodec: 'fp16' })), [CODEC_PLUGIN])
    const dir = await mkdtemp(join(tmpdir(), 'lsw-pipe-manifest-'))
    try {
      const file = join(dir, 'run.json')
      await writeFile(file, JSON.stringify(tinyManifest({ codec: 'none', gradCodec: 'int4-block' })))
      assert.deepEqual(await trainingPlugins(parseTrainingOptions({ ...base, runManifest: file })), [CODEC_PLUGIN])
      await writeFile(file, JSON.stringify(tinyManifest({ codec: 'none' })))
      assert.deepEqual(await trainingPlugins(parseTrainingOptions({ ...base, runManifest: file })), [])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
