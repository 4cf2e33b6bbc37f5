// The training runtime on real nodes (createNode: gossipsub, DHT, control socket): stages find each
// other through gossiped heartbeats, `status` carries `training`, GET /training and POST /checkpoint
// answer on the control socket, and every node reaches 'done' by itself.
import assert from 'node:assert/strict'
import { access, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNode, type LayerswarmNode } from '../core/node/create-node.ts'
import { queryControl } from '../core/node/control-endpoint.ts'
import { mergeStageCheckpoints } from '../core/train/merge-checkpoints.ts'
import { parseTrainingOptions, startTrainingRuntime, type TrainingRuntime } from '../core/runtime/training-runtime.ts'
import { loadCheckpoint } from '../core/train/checkpoint.ts'
import { tinyCorpus, TINY } from './pipeline-helpers.ts'
import { Tokens, type RuntimeAccess } from '../core/contracts/index.ts'
import { writeFile } from 'node:fs/promises'

describe('pipeline: training runtime on real nodes', function () {
  let dir: string
  const nodes: LayerswarmNode[] = []
  const runtimes: TrainingRuntime[] = []
  after(async () => {
    for (const r of runtimes) await r.stop().catch(() => {})
    // last started first: n0 bootstraps from n1 and would redial it if n1 went first
    for (const n of nodes.reverse()) await n.stop().catch(() => {})
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('two stages discover each other by gossip, report status, checkpoint on request and finish', async () => {
    dir = await mkdtemp(join(tmpdir(), 'lsw-pipe-rt-'))
    const { path: corpus } = await tinyCorpus(dir)
    const modelFile = join(dir, 'model.json')
    await writeFile(modelFile, JSON.stringify(TINY))
    const flags = { stages: '2', model: modelFile, data: corpus, steps: '3', batch: '2', seqLen: '16', microbatches: '2', lr: '3e-3', warmup: '1', seed: '2', evalBatches: '2', report: join(dir, 'r.json') }
    const mk = async (name: string, bootstrap: string[] = []): Promise<LayerswarmNode> => {
      // TCP only: a /ws dial to a node that already stopped sometimes surfaced as an uncaught
      // ECONNREFUSED during teardown (reported to the lead; not this test's subject)
      const n = await createNode({ dataDir: join(dir, name), network: 'local', listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, plugins: ['backend-cpu'], pluginOptions: { 'backend-cpu': { threads: 1 } } })
      nodes.push(n)
      await n.start()
      return n
    }
    const n1 = await mk('n1')
    const n0 = await mk('n0', [n1.addresses()[0]])
    const r1 = await startTrainingRuntime(n1, parseTrainingOptions({ ...flags, stage: '1', report: join(dir, 'r1.json') }))
    runtimes.push(r1)
    const st = await queryControl(n1.config.dataDir, '/status') as Record<string, any>
    assert.equal(st.peerId, n1.peerId, 'the node status is still there')
    assert.equal(st.training.runId, r1.runId)
    assert.equal(st.training.stage, 1)
    assert.ok(['training', 'waiting-peers'].includes(st.training.state))
    for (const k of ['step', 'steps', 'microbatchesStarted', 'microbatchesDone', 'microbatchesDropped', 'microbatchesRetried', 'lossLast', 'loss', 'evalLoss', 'tokens', 'bytesForward', 'bytesBackward',
      'boundaryBytesForward', 'boundaryTokensForward', 'boundaryBytesBackward', 'boundaryTokensBackward', 'codecs', 'bottleneck', 'peersPerStage', 'throughput']) {
      assert.ok(k in st.training, `status.training.${k}`)
    }

    // --role data pins stage 0 (the data role originates the microbatches there)
    const r0 = await startTrainingRuntime(n0, parseTrainingOptions({ ...flags, role: 'data', report: join(dir, 'r0.json') }))
    runtimes.push(r0)
    const reach = n0.container.resolve<RuntimeAccess>(Tokens.Runtime)
    assert.deepEqual(reach.roles().map(r => r.name), ['stage', 'data'], 'plugins reach the running roles through Tokens.Runtime')
    assert.equal(reach.role('data')?.name, 'data')
    assert.deepEqual((await queryControl(n0.config.dataDir, '/training') as Record<string, any>).roles, ['stage', 'data'])
    assert.deepEqual(st.training.roles, ['stage'])
    assert.equal(r0.runId, r1.runId, 'the same flags give the same run id')
    await Promise.all([r0.done, r1.done])

    const t0 = await queryControl(n0.config.dataDir, '/training') as Record<string, any>
    const t1 = await queryControl(n1.config.dataDir, '/training') as Record<string, any>
    assert.equal(t0.state, 'done')
    assert.equal(t1.state, 'done', 'stage 1 saw stage 0 finish through gossip')
    assert.deepEqual(t0.peersPerStage, { 0: 1, 1: 1 })
    assert.equal(t0.step, 3)
    assert.equal(t1.step, 3)
    assert.equal(t0.microbatchesDone, 6)
    assert.equal(t1.loss.length, 3)
    assert.ok(t1.evalLoss > 0, 'the last stage computed the eval loss')
    assert.ok(t0.throughput > 0)

    const c0 = await queryControl(n0.config.dataDir, '/checkpoint', { method: 'POST', body: { dir: join(dir, 'ck') } }) as { path: string }
    const c1 = await queryControl(n1.config.dataDir, '/checkpoint', { method: 'POST', body: { dir: join(dir, 'ck') } }) as { path: string }
    assert.match(c0.path, /stage-0-step-000003\.safetensors$/)
    const ck1 = await loadCheckpoint(c1.path)
    assert.deepEqual(ck1.layout, { stages: 2, bottleneck: 0, stage: 1 })
    assert.ok(ck1.params.has('lm_head.weight') && !ck1.params.has('wte.weight'), 'stage-local tensors under their HF names')
    const merged = (await mergeStageCheckpoints([c1.path, c0.path], join(dir, 'ck', 'model.safetensors'))).checkpoint
    assert.ok(merged.params.has('wte.weight') && merged.params.has('lm_head.weight'))
    await assert.rejects(queryControl(n0.config.dataDir, '/checkpoint', { method: 'POST', body: {} }), /answered 400.*needs/)
    await access(join(dir, 'r0.json'))
    await access(join(dir, 'r1.json'))

    // a late joiner pinned to stage 1 starts from the state of the stage's trained peer, not the seeded init
    const n2 = await mk('n2', [n1.addresses()[0]])
    const r2 = await startTrainingRuntime(n2, parseTrainingOptions({ ...flags, stage: '1', report: undefined }))
    runtimes.push(r2)
    const fromPeer = await r1.pipeline!.worker.stage.params.download()
    const joined = await r2.pipeline!.worker.stage.params.download()
    for (const [name, v] of fromPeer) assert.deepEqual(joined.get(name), v, `${name}: the joiner holds stage 1's trained weights`)
  })
})
