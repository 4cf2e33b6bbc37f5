// Every deadline of the project, and libp2p's own dial deadline, fires on time while garbage is
// collected every 20 ms (on Node 20, AbortSignal.any drops a timeout source at the first collection:
// core/timers.ts). Each case talks to a peer that accepts and then stays silent, which is exactly
// what a deadline is for. Real libp2p nodes on 127.0.0.1, a silent TCP listener, a silent unix socket.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from '@libp2p/interface'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import type { Corpus } from '../core/data/index.ts'
import { createNode, loadOrCreateIdentity, type LayerswarmNode } from '../core/index.ts'
import { Averager } from '../core/averaging/index.ts'
import { AVERAGING_PROTOCOL } from '../core/averaging/butterfly.ts'
import { controlRequest } from '../core/demo/control-client.ts'
import { controlSocketPath, queryControl } from '../core/node/control-endpoint.ts'
import { DATA_DIR_FILES } from '../core/node/data-dir.ts'
import { ControlEndpointError } from '../core/node/node-errors.ts'
import { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import { PIPELINE_FORWARD_PROTOCOL } from '../core/pipeline/protocol.ts'
import { corpusData } from '../core/data/index.ts'
import { handleFramed, openFramed, requestFrame, WireTimeoutError } from '../core/wire/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { rejectsUnderGc, underGc } from './gc-helpers.ts'
import { connectedNodes, StaticSource, tinyCorpus, tinyManifest } from './pipeline-helpers.ts'
import { waitFor } from './wait-helpers.ts'
import { stopNodes } from './wire-helpers.ts'

const RUN = '0123456789abcdef0123456789abcdef'

/** A TCP listener that accepts connections and never writes: a peer stuck before its handshake. */
async function silentTcp (): Promise<{ server: Server, port: number, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server = createServer(s => { sockets.add(s); s.on('error', () => {}); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  return {
    server,
    port,
    close: async () => { for (const s of sockets) s.destroy(); await new Promise<void>(resolve => server.close(() => { resolve() })) }
  }
}

/** Resolves when the stream's next read fails or ends (the other side gave up on it). */
async function untilGivenUp (fs: { read: () => Promise<unknown> }): Promise<void> {
  await fs.read().then(() => {}, () => {})
}

describe('deadlines under garbage collection', function () {
  this.timeout(60_000)
  let dir: string
  let libp2ps: Libp2p[] = []
  const extra: Array<() => Promise<void>> = []
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'lsw-gc-')) })
  afterEach(async () => {
    await stopNodes(...libp2ps.filter(n => n.status === 'started'))
    libp2ps = []
    for (const f of extra.splice(0).reverse()) await f().catch(() => {})
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('requestFrame to a silent peer: WireTimeoutError after its timeout (state sync, averaging greetings)', async () => {
    libp2ps = await connectedNodes(2)
    const [a, b] = libp2ps
    await handleFramed(b, '/layerswarm/test-silent/1.0.0', async (fs, _c, signal) => { await fs.expect({ signal }); await fs.read({ signal }) }, { runId: RUN })
    const { error, ms } = await rejectsUnderGc(async () => await requestFrame(a, b.peerId, '/layerswarm/test-silent/1.0.0', { kind: 'request' }, undefined, { runId: RUN, timeoutMs: 300 }))
    assert.ok(error instanceof WireTimeoutError, `${error.name}: ${error.message}`)
    assert.ok(ms >= 290 && ms < 3000, `gave up after ${ms.toFixed(0)} ms`)
  })

  it('a framed handler with timeoutMs ends a stream whose peer stays silent', async () => {
    libp2ps = await connectedNodes(2)
    const [a, b] = libp2ps
    const errors: Error[] = []
    await handleFramed(b, '/layerswarm/test-silent/1.0.0', async (fs, _c, signal) => { await fs.read({ signal }) }, { runId: RUN, timeoutMs: 300, onError: err => errors.push(err) })
    const fs = await openFramed(a, b.peerId, '/layerswarm/test-silent/1.0.0', { runId: RUN })
    const { ms } = await underGc(async () => { await untilGivenUp(fs) })
    assert.ok(ms >= 250 && ms < 3000, `the handler gave up after ${ms.toFixed(0)} ms`)
    await waitFor(() => errors.length > 0 ? errors : undefined, { what: 'the handler to report its timeout', timeoutMs: 5000 })
    assert.ok(errors[0] instanceof WireTimeoutError, errors[0].message)
  })

  describe('pipeline', function () {
    let corpus: Corpus
    let be: ComputeBackend
    let pnodes: PipelineNode[] = []
    before(async () => {
      ;({ corpus } = await tinyCorpus(dir))
      be = await createCpuBackend({ threads: 1 })
    })
    afterEach(async () => {
      await Promise.all(pnodes.map(async p => { await p.stop() }))
      pnodes = []
    })
    after(async () => { await be?.dispose() })

    it('outbound: a stage-1 peer that accepts and stays silent is given up after its (fractional) timeout and the microbatch retried', async () => {
      const manifest = tinyManifest({ stages: 2, steps: 2, batch: 2, seqLen: 16 })
      libp2ps = await connectedNodes(3)
      const [n0, good, silent] = libp2ps
      const source = new StaticSource()
      source.set(0, [n0.peerId.toString()])
      source.set(1, [silent.peerId.toString(), good.peerId.toString()])
      await silent.handle(PIPELINE_FORWARD_PROTOCOL, () => {}) // accepts, never reads or answers
      const s1 = new PipelineNode({ libp2p: good, backend: be, manifest, stage: 1, source })
      // a fractional timeout: AbortSignal.timeout(1000.5) threw ERR_OUT_OF_RANGE before any retry could run.
      // 3000.5, not 1000.5: the honest peer is unmeasured at first too, and its first hops under forced
      // collections on a loaded machine took over a second (both microbatches of a step dropped)
      const s0 = new PipelineNode({
        libp2p: n0, backend: be, manifest, stage: 0, source, data: corpusData(corpus, 1), microbatches: 2, maxInflight: 1, evalBatches: 0,
        router: { rng: () => 0, initialTimeoutMs: 3000.5, timeoutFloorMs: 3000.5 }
      })
      pnodes = [s0, s1]
      await s1.start()
      const { ms } = await underGc(async () => { await s0.start(); await s0.finished })
      const st = s0.status()
      assert.equal(st.state, 'done')
      assert.equal(st.microbatchesDropped, 0)
      assert.ok(st.microbatchesRetried >= 1, 'the microbatch at the silent peer was retried')
      assert.ok(ms < 30_000, `run took ${ms.toFixed(0)} ms`)
    })

    it('inbound: a sender that opens a forward stream and stays silent is cut after requestTimeoutMs', async () => {
      const manifest = tinyManifest({ stages: 2, steps: 2 })
      libp2ps = await connectedNodes(2)
      const [sender, n1] = libp2ps
      const source = new StaticSource()
      const s1 = new PipelineNode({ libp2p: n1, backend: be, manifest, stage: 1, source, requestTimeoutMs: 400 })
      pnodes = [s1]
      await s1.start()
      const fs = await openFramed(sender, n1.peerId, PIPELINE_FORWARD_PROTOCOL, { runId: s1.runId })
      const { ms } = await underGc(async () => { await untilGivenUp(fs) })
      assert.ok(ms >= 350 && ms < 4000, `the stage-1 node let go after ${ms.toFixed(0)} ms`)
      await waitFor(() => s1.status().queue === 0, { what: 'the inbound slot to be freed', timeoutMs: 5000, state: () => s1.status().queue })
    })
  })

  it('averaging: a member that opens a stream and sends nothing is cut after slack + join', async () => {
    libp2ps = await connectedNodes(2)
    const [a, b] = libp2ps
    const averager = new Averager(b as never, { runId: RUN, slackMs: 200, joinMs: 200 })
    await averager.start()
    extra.push(async () => { await averager.stop() })
    const fs = await openFramed(a, b.peerId, AVERAGING_PROTOCOL, { runId: RUN })
    const { ms } = await underGc(async () => { await untilGivenUp(fs) })
    assert.ok(ms >= 350 && ms < 4000, `the owner let go after ${ms.toFixed(0)} ms`)
  })

  it("libp2p's own dial deadline and the bootstrap dialer's: a listener that never completes the handshake", async () => {
    const silent = await silentTcp()
    extra.push(silent.close)
    const target = (await loadOrCreateIdentity(join(dir, 'ghost'))).peerId
    const addr = `/ip4/127.0.0.1/tcp/${silent.port}/p2p/${target}`
    // libp2p alone, no signal of ours: its connection manager's dialTimeout must cut the dial
    const lone = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionManager: { dialTimeout: 800 }
    })
    libp2ps = [lone]
    const { error, ms } = await rejectsUnderGc(async () => await lone.dial(multiaddr(addr)))
    assert.ok(ms >= 700 && ms < 5000, `libp2p gave up after ${ms.toFixed(0)} ms (${error.name}: ${error.message})`)

    // the node's bootstrap dialer: a failure with an error recorded after its own dial deadline
    const node: LayerswarmNode = await createNode({
      dataDir: join(dir, 'dialer'), plugins: [], bootstrap: [addr], controlEndpoint: false,
      bootstrapRetry: { initialDelayMs: 60_000, maxDelayMs: 60_000, dialTimeoutMs: 700 }
    })
    extra.push(async () => { await node.stop() })
    await node.start()
    const t0 = performance.now()
    await underGc(async () => {
      await waitFor(() => (node.status().bootstrap as Array<{ failures: number }>)[0]?.failures > 0, { what: 'a failed bootstrap dial', timeoutMs: 10_000, state: () => node.status().bootstrap })
    })
    const took = performance.now() - t0
    assert.ok(took < 6000, `the bootstrap dial was cut after ${took.toFixed(0)} ms`)
  })

  it('the control endpoint clients: a socket that accepts and never answers gives ControlEndpointError after the timeout', async () => {
    const dataDir = join(dir, 'control')
    const { mkdir } = await import('node:fs/promises')
    await mkdir(dataDir, { recursive: true })
    await writeFile(join(dataDir, DATA_DIR_FILES.lock), String(process.pid))
    const sockets = new Set<Socket>()
    const server = createServer(s => { sockets.add(s); s.on('error', () => {}) })
    const path = controlSocketPath(dataDir)
    await new Promise<void>(resolve => server.listen(path, resolve))
    extra.push(async () => { for (const s of sockets) s.destroy(); await new Promise<void>(resolve => server.close(() => { resolve() })) })
    const q = await rejectsUnderGc(async () => await queryControl(dataDir, '/status', { timeoutMs: 300 }))
    assert.ok(q.error instanceof ControlEndpointError, `${q.error.name}: ${q.error.message}`)
    assert.ok(q.ms >= 290 && q.ms < 3000, `status query gave up after ${q.ms.toFixed(0)} ms`)
    const c = await rejectsUnderGc(async () => await controlRequest(dataDir, 'POST', '/checkpoint', { timeoutMs: 300 }))
    assert.ok(c.error instanceof ControlEndpointError, `${c.error.name}: ${c.error.message}`)
    assert.ok(c.ms >= 290 && c.ms < 3000, `control request gave up after ${c.ms.toFixed(0)} ms`)
  })
})
