// A node pinned with --stage that joins a stage whose peers already trained takes their state
// (issue 15, found across slow links: the gossip scheduler emits a pinned assignment at once, and the
// stage host served it from the seeded init without fetching). Real nodes on 127.0.0.1 (a bootstrap
// node and the run's nodes found through the DHT): stage 0 and stage 1, pinned, train a 2-stage run;
// they are the first of their stages and start from the init. Then a third node pinned to stage 1
// under a scheduler that assigns the pin at once (as GossipScheduler does with --stage) joins: it
// fetches the trained stage-1 node's state (its parameters bit for bit, not the init's) before it serves.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import type { Scheduler, StageAssignment } from '../core/contracts/scheduler.ts'
import type { LayerswarmNode } from '../core/node/create-node.ts'
import { flatten } from '../core/pipeline/stage-averaging.ts'
import { StageHost } from '../core/runtime/stage-host.ts'
import { silentLogger } from '../core/logger.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { startSwarm, type Swarm } from './averaging-helpers.ts'
import { tinyCorpus, tinyManifest } from './pipeline-helpers.ts'
import { waitFor } from './wait-helpers.ts'

/** Assigns its pin at once, before the host listens (as the gossip scheduler does with --stage). */
class PinScheduler implements Scheduler {
  constructor (private readonly pin: number) {}
  currentStage (): number { return this.pin }
  view (): { stages: number, peers: [] } { return { stages: 2, peers: [] } }
  peersForStage (): string[] { return [] }
  onAssignment (_l: (a: StageAssignment) => void): () => void { return () => {} }
}

async function paramsOf (h: StageHost): Promise<Float32Array> {
  const p = h.pipeline
  assert.ok(p != null, 'the host serves a stage')
  return flatten(await p.worker.stage.params.download(), p.worker.stage.params.specs.map(s => s.name))
}

describe('stage host: a pinned late joiner state-syncs', function () {
  this.timeout(180_000)
  let dir: string
  let be: ComputeBackend
  let swarm: Swarm | undefined
  const hosts: StageHost[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lsw-pinjoin-'))
    be = await createCpuBackend({ threads: 1 })
  })

  after(async () => {
    for (const h of hosts) await h.stop().catch(() => {})
    await swarm?.stop()
    await be?.dispose()
    await rm(dir, { recursive: true, force: true })
  })

  it('the first of a stage starts from the init; a pinned node joining it after training fetches the trained state', async () => {
    const { path: corpus } = await tinyCorpus(dir)
    const manifest = tinyManifest({ stages: 2, steps: 3, batch: 2, seqLen: 16, lr: 1e-2, warmup: 1, seed: 5, name: 'pinned-join' })
    swarm = await startSwarm(3)
    const [n0, n1, late] = swarm.nodes as [LayerswarmNode, LayerswarmNode, LayerswarmNode]
    const pipeline = { microbatches: 2, maxInflight: 2, evalBatches: 0, evalEvery: 0 }
    // the run's first nodes are pinned without a scheduler: their pins are their placements in the view
    const h1 = new StageHost({ node: n1, backend: be, manifest, pin: 1, pipeline, log: silentLogger })
    hosts.push(h1)
    await h1.start()
    const init = await paramsOf(h1)
    const h0 = new StageHost({ node: n0, backend: be, manifest, pin: 0, pipeline, data: corpus, log: silentLogger })
    hosts.push(h0)
    await h0.start()
    await h0.done
    assert.equal(h0.status().state, 'done')
    const trained = await paramsOf(h1)
    assert.ok(trained.some((x, i) => x !== init[i]), 'stage 1 trained')

    const joiner = new StageHost({ node: late, backend: be, manifest, pin: 1, scheduler: new PinScheduler(1), pipeline, joinListenMs: 30_000, log: silentLogger })
    hosts.push(joiner)
    // the joiner hears stage 1's heartbeat (step 3) through the run's gossip, then fetches
    await joiner.start()
    await waitFor(() => joiner.pipeline != null, { what: 'the joiner to serve', timeoutMs: 30_000 })
    const got = await paramsOf(joiner)
    assert.deepEqual(new Uint32Array(got.buffer, got.byteOffset, got.length), new Uint32Array(trained.buffer, trained.byteOffset, trained.length),
      'the joiner holds the trained stage-1 parameters bit for bit')
    assert.equal(joiner.status().stage, 1)
    assert.equal(joiner.status().assignment?.reason, 'pinned')
  })
})
