// A training node never stays alone silently (core/pipeline/rendezvous.ts). Real nodes (createNode:
// TCP + noise + yamux + DHT + gossipsub) on 127.0.0.1 running stages of one run:
//   - a node whose bootstrap peer is down: status says who is missing, the log says so, it
//     re-bootstraps past its dialer's long back-off, and it meets the run once the peers are there;
//   - two nodes that only know the bootstrap node (which relays no run gossip) find each other
//     through the run key and see each other's heartbeats.
import assert from 'node:assert/strict'
import { createNode, loadOrCreateIdentity, type LayerswarmNode } from '../core/index.ts'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import type { Corpus } from '../core/data/index.ts'
import { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import { corpusData } from '../core/data/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { freePort, recordingLogger, removeDirs, tempDir } from './node-helpers.ts'
import { tinyCorpus, tinyManifest } from './pipeline-helpers.ts'
import { waitFor } from './wait-helpers.ts'

describe('pipeline: meeting the run (rendezvous)', function () {
  this.timeout(60_000)
  const dirs: string[] = []
  let nodes: LayerswarmNode[] = []
  let pnodes: PipelineNode[] = []
  let be: ComputeBackend
  let corpus: Corpus
  const dataDir = async (): Promise<string> => { const d = await tempDir('lsw-rdv-'); dirs.push(d); return d }
  before(async () => {
    be = await createCpuBackend({ threads: 1 })
    ;({ corpus } = await tinyCorpus(await dataDir()))
  })
  afterEach(async () => {
    await Promise.all(pnodes.map(async p => { await p.stop() }))
    pnodes = []
    await Promise.all(nodes.map(async n => {
      for (const c of n.libp2p.getConnections()) c.abort(new Error('test teardown'))
      await n.stop()
    }))
    nodes = []
  })
  after(async () => {
    await be?.dispose()
    await removeDirs(dirs)
  })

  // a long run: nobody finishes while the test looks
  const manifest = tinyManifest({ stages: 2, steps: 100_000, batch: 1, seqLen: 8, name: 'rendezvous-test' })

  it('alone: says what it misses, re-bootstraps past the back-off, and meets the run when it appears', async () => {
    const bootDir = await dataDir()
    const bootId = (await loadOrCreateIdentity(bootDir)).peerId
    const port = await freePort()
    const bootAddr = `/ip4/127.0.0.1/tcp/${port}/p2p/${bootId}`
    const { logger, lines } = recordingLogger('debug')
    // the dialer alone would wait a minute between tries: only the rendezvous' re-bootstrap can reconnect in time
    const a = await createNode({
      dataDir: await dataDir(), plugins: [], controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [bootAddr], logger,
      bootstrapRetry: { initialDelayMs: 60_000, maxDelayMs: 60_000, dialTimeoutMs: 2000 }
    })
    nodes.push(a)
    await a.start()
    const s1 = new PipelineNode({
      libp2p: a.libp2p, backend: be, manifest, stage: 1, heartbeatMs: 300, log: logger,
      rendezvous: { rebootstrap: () => { a.rebootstrap() }, lonelyAfterMs: 1500, maxBackoffMs: 1500, searchMs: 500 }
    })
    pnodes.push(s1)
    await s1.start()
    const warned = await waitFor(() => lines.find(l => l.msg === 'no peer of the run: re-bootstrapping and announcing again'), { what: 'the lonely warning', timeoutMs: 10_000, state: () => lines.filter(l => String(l.component ?? l.name ?? '').includes('rendezvous') || /run|rendezvous|provid/.test(String(l.msg))).map(l => JSON.stringify(l)).join(' / ') })
    assert.equal(warned.peers, 0)
    assert.equal(warned.missingStages, '0')
    const st = s1.status().swarm
    assert.ok(st != null)
    assert.equal(st.peers, 0)
    assert.deepEqual(st.stagePeers, { 0: 0, 1: 0 })
    assert.deepEqual(st.missingStages, [0])
    assert.ok(st.aloneS >= 1, `alone for ${st.aloneS} s`)
    assert.ok(lines.some(l => l.msg === 're-bootstrapping'), 'the node was asked to redial and look itself up')

    // the bootstrap node and a stage-0 node come up
    const boot = await createNode({ dataDir: bootDir, bootstrapNode: true, controlEndpoint: false, listen: [`/ip4/127.0.0.1/tcp/${port}`] })
    nodes.push(boot)
    await boot.start()
    const b = await createNode({ dataDir: await dataDir(), plugins: [], controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [bootAddr] })
    nodes.push(b)
    await b.start()
    const s0 = new PipelineNode({ libp2p: b.libp2p, backend: be, manifest, stage: 0, data: corpusData(corpus, 1), heartbeatMs: 300, evalBatches: 0 })
    pnodes.push(s0)
    await s0.start()
    const t0 = Date.now()
    await waitFor(() => s1.status().swarm?.peers === 1 && s0.status().peersPerStage['1'] === 1, {
      what: 'the lonely node and the stage-0 node to see each other',
      timeoutMs: 20_000,
      state: () => ({ s1: s1.status().swarm, s0: s0.status().peersPerStage, bootstrap: a.status().bootstrap })
    })
    assert.ok(Date.now() - t0 < 20_000)
    assert.deepEqual(s1.status().swarm?.missingStages, [])
    await waitFor(() => s1.status().swarm?.aloneS === 0 ? true : undefined, { what: 'aloneS to reset', timeoutMs: 5000 })
    assert.ok(lines.some(l => l.msg === 'met the run'))
  })

  it('two nodes that know only the bootstrap node find each other through the run key', async () => {
    const boot = await createNode({ dataDir: await dataDir(), bootstrapNode: true, controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'] })
    nodes.push(boot)
    await boot.start()
    const bootAddr = boot.addresses()[0]
    const x = await createNode({ dataDir: await dataDir(), plugins: [], controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [bootAddr] })
    const y = await createNode({ dataDir: await dataDir(), plugins: [], controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [bootAddr] })
    nodes.push(x, y)
    await x.start()
    await y.start()
    await waitFor(() => x.status().bootstrap[0]?.connected && y.status().bootstrap[0]?.connected, { what: 'both connected to the bootstrap node' })
    // cut any direct connection the DHT's own lookups made: only the bootstrap node links them now
    await x.libp2p.hangUp(y.libp2p.peerId)
    const sx = new PipelineNode({ libp2p: x.libp2p, backend: be, manifest, stage: 1, heartbeatMs: 300, rendezvous: { searchMs: 300 } })
    const sy = new PipelineNode({ libp2p: y.libp2p, backend: be, manifest, stage: 0, data: corpusData(corpus, 1), heartbeatMs: 300, evalBatches: 0, rendezvous: { searchMs: 300 } })
    pnodes.push(sx, sy)
    await sx.start()
    await sy.start()
    await waitFor(() => sx.status().swarm?.stagePeers['0'] === 1 && sy.status().swarm?.stagePeers['1'] === 1, {
      what: 'each to hear the other\'s heartbeats',
      timeoutMs: 20_000,
      state: () => ({ x: sx.status().swarm, y: sy.status().swarm })
    })
  })
})
