// Every inbound microbatch is validated: garbage bytes, a wrong shape, NaN values, another run, a
// wrong stage, a forged route or out-of-range targets get a typed error frame, the sender is
// penalized in the router's peer table, and the next valid microbatch is served as usual.
import assert from 'node:assert/strict'
import type { Libp2p } from '@libp2p/interface'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import { PIPELINE_FORWARD_PROTOCOL } from '../core/pipeline/protocol.ts'
import { runId } from '../core/run/manifest.ts'
import { openFramed, RemoteError, type FramedStream } from '../core/wire/index.ts'
import { connectedNodes, exchangeMicrobatch, StaticSource, TINY, tinyManifest } from './pipeline-helpers.ts'
import { stopNodes } from './wire-helpers.ts'
import { waitFor } from './wait-helpers.ts'

const B = 2
const T = 8
const C = TINY.dModel

describe('pipeline: inbound validation', function () {
  let be: ComputeBackend
  let nodes: Libp2p[]
  let server: PipelineNode
  const manifest = tinyManifest({ stages: 2, steps: 4, batch: B, seqLen: 16 })
  const rid = runId(manifest)
  let client: string

  before(async () => {
    be = await createCpuBackend({ threads: 1 })
    nodes = await connectedNodes(2)
    client = nodes[0].peerId.toString()
    const source = new StaticSource()
    source.set(0, [client])
    server = new PipelineNode({ libp2p: nodes[1], backend: be, manifest, stage: 1, source })
    await server.start()
  })
  after(async () => {
    await server?.stop()
    await stopNodes(...(nodes ?? []))
    await be?.dispose()
  })

  const open = async (runIdOverride?: string): Promise<FramedStream> =>
    await openFramed(nodes[0], nodes[1].peerId, PIPELINE_FORWARD_PROTOCOL, { runId: runIdOverride ?? rid, signal: AbortSignal.timeout(20_000) })

  const hidden = (n = B * T * C): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.5)
  const targets = (n = B * T): Int32Array => Int32Array.from({ length: n }, (_, i) => (i * 7) % 256)
  const meta = { origin: '', step: 0, micro: 0, micros: 1, mode: 'train' }

  /** Sends an activation + targets (each part overridable) and returns the reply frame or the error. */
  async function exchange (o: { shape?: number[], data?: Float32Array, stage?: number, route?: string[], runId?: string, tgt?: Int32Array, metadata?: Record<string, unknown> } = {}): Promise<{ frame?: any, error?: Error }> {
    const fs = await open(o.runId)
    const shape = o.shape ?? [B, T, C]
    const data = o.data ?? hidden(shape.reduce((a, b) => a * b, 1))
    const t = o.tgt ?? targets(shape[0] * shape[1])
    return await exchangeMicrobatch(fs,
      [{ kind: 'activation', microbatchId: 7n, stage: o.stage ?? 1, dtype: 'f32', shape, route: o.route ?? [client], metadata: o.metadata ?? { ...meta, origin: client } }, new Uint8Array(data.buffer.slice(0))],
      [{ kind: 'request', microbatchId: 7n, stage: o.stage ?? 1, dtype: 'i32', shape: [shape[0], shape[1]], route: o.route ?? [client], metadata: { op: 'targets' } }, new Uint8Array(t.buffer.slice(0))])
  }

  // the refusal as the client sees it: the remote code, or (another run) the client's own refusal of
// the error frame, which carries the server's run id
const remoteCode = (r: { error?: Error }): string | undefined => r.error instanceof RemoteError ? r.error.remoteCode : (r.error as { code?: string } | undefined)?.code
  const penalties = (): number => server.status().penalties.byPeer[client] ?? 0

  it('serves a valid microbatch: gradient of the input shape, finite, with the loss', async () => {
    const r = await exchange()
    assert.equal(r.error, undefined)
    assert.equal(r.frame.header.kind, 'activation-grad')
    assert.deepEqual(r.frame.header.shape, [B, T, C])
    assert.equal(r.frame.header.microbatchId, 7n)
    assert.deepEqual(r.frame.header.route, [client, nodes[1].peerId.toString()])
    const loss = r.frame.header.metadata.loss
    assert.ok(loss > 5 && loss < 6, `loss ${loss} near ln 256`)
    assert.equal(server.status().microbatchesDone, 1)
  })

  it('refuses bad microbatches with typed errors, penalizes the sender, and serves the next valid one', async () => {
    const before = server.status().microbatchesDone
    const cases: Array<[string, () => Promise<{ error?: Error }>, string, boolean]> = [
      ['wrong width', async () => await exchange({ shape: [B, T, C + 1] }), 'ERR_PIPELINE_INVALID', true],
      ['B over the manifest bound', async () => await exchange({ shape: [B + 1, T, C] }), 'ERR_PIPELINE_INVALID', true],
      ['NaN values', async () => { const d = hidden(); d[5] = NaN; return await exchange({ data: d }) }, 'ERR_NON_FINITE', true],
      ['forged route', async () => await exchange({ route: ['12D3KooWSomeoneElse'] }), 'ERR_PIPELINE_INVALID', true],
      ['targets out of range', async () => { const t = targets(); t[0] = 999; return await exchange({ tgt: t }) }, 'ERR_PIPELINE_INVALID', true],
      ['bad metadata', async () => await exchange({ metadata: { origin: client, step: 99, micro: 0, micros: 1, mode: 'train' } }), 'ERR_PIPELINE_INVALID', true],
      ['wrong stage', async () => await exchange({ stage: 0 }), 'ERR_PIPELINE_STAGE', false],
      ['another run', async () => await exchange({ runId: 'ab'.repeat(16) }), 'ERR_WIRE_RUN', false]
    ]
    for (const [name, fn, code, counts] of cases) {
      const p0 = penalties()
      const r = await fn()
      assert.equal(remoteCode(r), code, name)
      assert.equal(penalties(), p0 + (counts ? 1 : 0), `${name}: penalty counted`)
      const st = server.router.stats().find(s => s.peer === client)
      assert.ok(st != null && st.failures > 0 && st.bannedForMs > 0, `${name}: the sender is banned for a while in the peer table`)
    }
    // garbage bytes on the protocol
    const stream = await nodes[0].dialProtocol(nodes[1].peerId, PIPELINE_FORWARD_PROTOCOL)
    const p0 = penalties()
    stream.send(new TextEncoder().encode('this is not a frame at all, just some garbage bytes!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'))
    await new Promise<void>(resolve => {
      if (stream.status !== 'open') { resolve(); return }
      stream.addEventListener('close', () => { resolve() }, { once: true })
    })
    await waitFor(() => penalties() !== p0, { what: 'the garbage to be counted against the sender', timeoutMs: 5000, intervalMs: 20, state: () => `penalties ${penalties()}, was ${p0}` })
    assert.equal(penalties(), p0 + 1, 'garbage counted against the sender')

    assert.equal(server.status().microbatchesDone, before, 'no bad microbatch reached the stage')
    const ok = await exchange()
    assert.equal(ok.error, undefined, 'the next valid microbatch is served')
    assert.equal(ok.frame.header.kind, 'activation-grad')
    assert.equal(server.status().microbatchesDone, before + 1)
  })
})
