// Shared by the averaging tests: a small swarm of real layerswarm nodes (createNode: TCP + noise +
// yamux + the network's private Kademlia DHT) on 127.0.0.1, joined through a bootstrap node,
// deterministic test vectors, and the fixture of the pipeline averaging tests.
import '../core/polyfills.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import type { Corpus } from '../core/data/index.ts'
import { createNode, type LayerswarmNode } from '../core/index.ts'
import type { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { tinyCorpus } from './pipeline-helpers.ts'
import { waitFor } from './wait-helpers.ts'
import { prng } from './wire-helpers.ts'

export const RUN_ID = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'

export interface Swarm {
  boot: LayerswarmNode
  nodes: LayerswarmNode[]
  dirs: string[]
  add(): Promise<LayerswarmNode>
  stop(): Promise<void>
}

/** A bootstrap node and `n` nodes that found each other through the DHT (routing tables filled). */
export async function startSwarm (n: number): Promise<Swarm> {
  const dirs: string[] = []
  const nodes: LayerswarmNode[] = []
  dirs.push(await tempDir('lsw-avg-'))
  const boot = await createNode({ dataDir: dirs[0], bootstrapNode: true, controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'] })
  await boot.start()
  const bootAddr = boot.addresses()[0]
  const add = async (): Promise<LayerswarmNode> => {
    const dir = await tempDir('lsw-avg-')
    dirs.push(dir)
    const node = await createNode({ dataDir: dir, plugins: [], controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [bootAddr] })
    await node.start()
    nodes.push(node)
    return node
  }
  const swarm: Swarm = {
    boot,
    nodes,
    dirs,
    add,
    async stop () {
      await Promise.all([...nodes, boot].map(async m => {
        for (const c of m.libp2p.getConnections()) c.abort(new Error('test teardown'))
        await m.stop()
      }))
      await removeDirs(dirs)
    }
  }
  try {
    for (let i = 0; i < n; i++) await add()
    await waitFor(() =>
      nodes.every(m => m.status().dht.routingTableSize >= Math.min(n, 3)), {
      what: 'every DHT routing table to hold the other nodes',
      timeoutMs: 30_000,
      state: () => `routing table sizes ${nodes.map(m => m.status().dht.routingTableSize).join(', ')}`
    })
  } catch (err) {
    await swarm.stop()
    throw err
  }
  return swarm
}

/** Deterministic values in about [-scale, scale]. */
export function testVector (seed: number, n: number, scale = 1): Float32Array {
  const rand = prng(seed)
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale
  return out
}

/** The mean the owners compute: float64 accumulation in member (sorted peer id) order, one division. */
export function expectedMean (byPeer: Map<string, { data: Float32Array, weight: number }>): Float32Array {
  const peers = [...byPeer.keys()].sort()
  const n = byPeer.get(peers[0])!.data.length
  const acc = new Float64Array(n)
  let w = 0
  for (const p of peers) {
    const { data, weight } = byPeer.get(p)!
    w += weight
    for (let i = 0; i < n; i++) acc[i] += weight * data[i]
  }
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = acc[i] / w
  return out
}

export interface PipelineFixture {
  /** The tiny corpus and a 1-thread CPU backend, made before the tests. */
  readonly corpus: Corpus
  readonly be: ComputeBackend
  /** What a test starts: stopped after it. */
  swarm: Swarm | undefined
  pnodes: PipelineNode[]
}

/** Registers the mocha hooks of a pipeline averaging test (call inside describe). */
export function pipelineFixture (prefix: string): PipelineFixture {
  let dir = ''
  const fx = { swarm: undefined, pnodes: [] } as unknown as { -readonly [K in keyof PipelineFixture]: PipelineFixture[K] }
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix))
    ;({ corpus: fx.corpus } = await tinyCorpus(dir))
    fx.be = await createCpuBackend({ threads: 1 })
  })
  afterEach(async () => {
    await Promise.all(fx.pnodes.map(async p => { await p.stop() }))
    fx.pnodes = []
    await fx.swarm?.stop()
    fx.swarm = undefined
  })
  after(async () => {
    await fx.be?.dispose()
    await rm(dir, { recursive: true, force: true })
  })
  return fx
}
