// State a joiner can trust (issue 13), on real nodes on 127.0.0.1:
//  - through StageHosts: three nodes serving stage 1 of a 2-stage run average (params mode) and offer
//    the parameters of their last round as their agreed snapshot; a liar that copies their round and
//    claims to be in their group serves NaN parameters and is listed first (best first: it claims the
//    highest throughput). A joining StageHost takes the majority's parameters bit for bit, with AdamW
//    moments at zero, never the liar's, and judges the liar (state-sync, ERR_STATE_CONFLICT); honest
//    only, the joiner's parameters equal the donors' agreed snapshot bit for bit and nobody is judged;
//  - fetchStageState on bare nodes: a donor serving chunks against the agreed hash is judged and the
//    chunks come from the others; a majority vouching for NaN parameters is refused and judged, and
//    the joiner falls back to an honest peer's live state; with no agreed state the first peer's NaN
//    live state is refused and judged, the next peer's taken; a single serving peer gives its live state.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Libp2p } from '@libp2p/interface'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import type { SteerableScheduler, StageMoveHooks } from '../core/contracts/scheduler.ts'
import { Tokens } from '../core/contracts/tokens.ts'
import { parseState, serializeState, StateServer, syncAgreedState, type AgreedSnapshot, type StateSnapshot } from '../core/averaging/index.ts'
import { validateModelConfig } from '../core/model/config.ts'
import { numel, stageParamSpecs, type ParamSpec } from '../core/model/params.ts'
import { stageLayouts } from '../core/model/stage-split.ts'
import type { LayerswarmNode } from '../core/node/create-node.ts'
import { PeerJudge, type Judgement } from '../core/peer-judge.ts'
import { flatten } from '../core/pipeline/stage-averaging.ts'
import { validateManifest, runId as manifestRunId, type RunManifest } from '../core/run/manifest.ts'
import { StageHost } from '../core/runtime/stage-host.ts'
import { agreedSnapshot, fetchStageState, joinState } from '../core/runtime/stage-state.ts'
import { createLogger, silentLogger } from '../core/logger.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { startSwarm, testVector, type Swarm } from './averaging-helpers.ts'
import { connectedNodes, tinyCorpus, tinyManifest } from './pipeline-helpers.ts'
import { waitFor } from './wait-helpers.ts'
import { stopNodes } from './wire-helpers.ts'

const STEPS = 4
const PERIOD = 2

function runManifest (): RunManifest {
  const base = tinyManifest({ stages: 2, steps: STEPS, batch: 2, seqLen: 16, lr: 1e-2, warmup: 1, clip: 1, seed: 7, name: 'state-sync-joiner' })
  return validateManifest({ ...structuredClone(base), averaging: { period: PERIOD, mode: 'params' } } as never, { validateModel: validateModelConfig })
}

function specsOf (m: RunManifest, stage: number): ParamSpec[] {
  return stageParamSpecs(stageLayouts(validateModelConfig(m.model), m.stages.count, m.bottleneck ?? 0)[stage])
}

function byName (flat: Float32Array, specs: readonly ParamSpec[]): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  let o = 0
  for (const s of specs) {
    const n = numel(s.shape)
    out.set(s.name, flat.subarray(o, o + n))
    o += n
  }
  return out
}

const bits = (x: Float32Array): Uint32Array => new Uint32Array(x.buffer, x.byteOffset, x.length)
const total = (specs: readonly ParamSpec[]): number => specs.reduce((a, s) => a + numel(s.shape), 0)

/** Parameters of an agreed state as one vector in specs order. */
function agreedParams (bytes: Uint8Array, specs: readonly ParamSpec[]): Float32Array {
  const t = parseState(bytes).tensors
  return flatten(new Map([...t].map(([k, v]) => [k.slice('param/'.length), v])), specs.map(s => s.name))
}

/** A live state (parameters, AdamW moments, step) as a StageHost serves it. */
function liveState (flat: Float32Array, specs: readonly ParamSpec[], version: number, step: number): StateSnapshot {
  const m = byName(testVector(91, flat.length, 0.01), specs)
  const v = byName(testVector(92, flat.length, 0.01).map(Math.abs), specs)
  return { version, bytes: serializeState({ version, step, tensors: joinState(byName(flat, specs), m, v) }) }
}

function nanVector (n: number): Float32Array {
  const x = testVector(66, n)
  for (let i = 0; i < n; i += 7) x[i] = Number.NaN
  return x
}

/** A scheduler that assigns nothing by itself: the test calls its fetchStageState hook as a join would. */
class JoinScheduler implements SteerableScheduler {
  hooks: StageMoveHooks = {}
  currentStage (): number | undefined { return undefined }
  view (): { stages: number, peers: [] } { return { stages: 2, peers: [] } }
  peersForStage (): string[] { return [] }
  onAssignment (): () => void { return () => {} }
  setMoveHooks (h: StageMoveHooks): void { this.hooks = h }
  setLoadSource (): void {}
}

describe('state sync: state a joiner can trust', function () {
  this.timeout(180_000)

  describe('through StageHosts of a stage that averaged', () => {
    let dir: string
    let be: ComputeBackend
    let swarm: Swarm | undefined
    const hosts: StageHost[] = []
    const servers: StateServer[] = []
    let manifest: RunManifest
    let donors: LayerswarmNode[]
    let reference: { round: number, group: readonly string[], params: Float32Array }

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'lsw-joiner-'))
      const { path: corpus } = await tinyCorpus(dir)
      be = await createCpuBackend({ threads: 1 })
      manifest = runManifest()
      swarm = await startSwarm(4)
      const [n0, ...stage1] = swarm.nodes
      donors = stage1
      const pipeline = { microbatches: 2, maxInflight: 2, evalBatches: 0, evalEvery: 0 }
      for (const n of donors) {
        const h = new StageHost({ node: n, backend: be, manifest, pin: 1, pipeline, log: silentLogger })
        hosts.push(h)
        await h.start()
      }
      await waitFor(() => hosts.every(h => (h.status().peersPerStage['1'] ?? 0) >= 3), {
        what: 'the stage-1 nodes to see each other', timeoutMs: 30_000, intervalMs: 100, state: () => hosts.map(h => h.status().peersPerStage['1']).join(', ')
      })
      const h0 = new StageHost({ node: n0, backend: be, manifest, pin: 0, pipeline, data: corpus, log: silentLogger })
      hosts.push(h0)
      await h0.start()
      await h0.done
      // every stage-1 node took part in the run's last round (queued by the last flush: let it end)
      const last = Math.floor(STEPS / PERIOD)
      await waitFor(() => donors.every((_, i) => hosts[i].status().averaging?.lastRound === last), {
        what: `the stage-1 nodes to finish round ${last}`, timeoutMs: 60_000, intervalMs: 200,
        state: () => hosts.slice(0, 3).map(h => JSON.stringify(h.status().averaging && { r: h.status().averaging?.lastRound, f: h.status().averaging?.failed, e: h.status().averaging?.lastError })).join('; ')
      })
      const lastSeen = donors.map((_, i) => hosts[i].status().averaging)
      assert.ok(lastSeen.every(a => a?.lostShards === 0 && a.failed === 0), JSON.stringify(lastSeen))
      // what each donor offers as its agreed snapshot, asked one by one: identical bits, the last round
      const specs = specsOf(manifest, 1)
      const joiner = swarm.nodes[0].libp2p
      const each = await Promise.all(donors.map(async d => await syncAgreedState(joiner, [d.peerId], { runId: manifestRunId(manifest), stage: 1 })))
      for (const r of each) {
        assert.equal(r.version, last)
        assert.equal(r.mode, 'params')
        assert.deepEqual([...r.group].sort(), donors.map(d => d.peerId).sort())
        assert.equal(r.digest, each[0].digest, 'every member of a clean round offers the same parameters')
        assert.deepEqual(r.bytes, each[0].bytes)
      }
      reference = { round: last, group: each[0].group, params: agreedParams(each[0].bytes, specs) }
    })

    after(async () => {
      for (const h of hosts) await h.stop().catch(() => {})
      await Promise.all(servers.map(async s => { await s.stop() }))
      await swarm?.stop()
      await be?.dispose()
      if (dir != null) await rm(dir, { recursive: true, force: true })
    })

    /** A fresh node joining stage 1 through a StageHost, from `peers` (best first); its parameters, moments and judgements. */
    async function join1 (peers: readonly string[]): Promise<{ params: Float32Array, m: Float32Array, optStep: number, judged: Judgement[], host: StageHost }> {
      const node = await (swarm as Swarm).add()
      for (const p of [...donors, ...(swarm as Swarm).nodes].filter(n => peers.includes(n.peerId))) await node.libp2p.dial(p.libp2p.getMultiaddrs())
      const judged: Judgement[] = []
      node.container.resolve<PeerJudge>(Tokens.PeerJudge).onJudgement(j => { judged.push(j) })
      const scheduler = new JoinScheduler()
      const host = new StageHost({ node, backend: be, manifest, scheduler, pipeline: { microbatches: 2, maxInflight: 2, evalBatches: 0, evalEvery: 0 }, log: silentLogger })
      hosts.push(host)
      await host.start()
      await scheduler.hooks.fetchStageState?.(1, peers, AbortSignal.timeout(60_000))
      const p = host.pipeline
      assert.ok(p != null && p.stage === 1, 'the joiner serves stage 1')
      const names = p.worker.stage.params.specs.map(s => s.name)
      const opt = await p.worker.stage.optimizer.exportState()
      return { params: flatten(await p.worker.stage.params.download(), names), m: flatten(opt.m, names), optStep: opt.step, judged, host }
    }

    it('honest donors only: the joiner holds their agreed snapshot bit for bit, AdamW moments at zero, nobody judged', async () => {
      const j = await join1(donors.map(d => d.peerId))
      assert.deepEqual(bits(j.params), bits(reference.params))
      assert.equal(j.optStep, 0)
      assert.ok(j.m.every(x => x === 0))
      assert.equal(j.host.status().stage, 1)
      assert.deepEqual(j.judged, [])
    })

    it('a liar serving NaN parameters for the same round, listed first: the joiner takes the majority\'s and judges the liar', async () => {
      const specs = specsOf(manifest, 1)
      const liar = await (swarm as Swarm).add()
      const claim = { round: reference.round, step: reference.round * PERIOD, group: [...reference.group, liar.peerId].sort(), mode: 'params' as const, params: nanVector(total(specs)) }
      const agreed: AgreedSnapshot = await agreedSnapshot(1, claim, specs)
      const s = new StateServer(liar.libp2p, { runId: manifestRunId(manifest), snapshot: () => liveState(claim.params, specs, 999, 999), agreed: () => agreed })
      await s.start()
      servers.push(s)
      const j = await join1([liar.peerId, ...donors.map(d => d.peerId)])
      assert.deepEqual(bits(j.params), bits(reference.params), 'the majority\'s parameters')
      assert.ok(j.params.every(Number.isFinite))
      assert.deepEqual(j.judged.map(x => [x.peer, x.verdict, x.area, x.code]), [[liar.peerId, 'reject', 'state-sync', 'ERR_STATE_CONFLICT']])
    })
  })

  describe('fetchStageState on bare nodes', () => {
    let nodes: Libp2p[] = []
    const servers: StateServer[] = []
    const manifest = runManifest()
    const runId = manifestRunId(manifest)
    const specs = specsOf(manifest, 1)
    const honest = testVector(5, total(specs), 0.1)

    before(async () => { nodes = await connectedNodes(5) })
    afterEach(async () => { await Promise.all(servers.splice(0).map(async s => { await s.stop() })) })
    after(async () => { await stopNodes(...nodes) })

    const id = (i: number): string => nodes[i].peerId.toString()

    async function serve (i: number, live?: StateSnapshot, agreed?: AgreedSnapshot, faults?: { chunk?: (index: number, b: Uint8Array) => Uint8Array }): Promise<void> {
      const s = new StateServer(nodes[i], { runId, snapshot: () => live, agreed: () => agreed, chunkBytes: 4096, faults })
      await s.start()
      servers.push(s)
    }

    async function fetch (peers: number[]): Promise<{ f: Awaited<ReturnType<typeof fetchStageState>>, judged: Judgement[] }> {
      const judge = new PeerJudge()
      const judged: Judgement[] = []
      judge.onJudgement(j => { judged.push(j) })
      const f = await fetchStageState({ libp2p: nodes[0], runId, manifest, stage: 1, peers: peers.map(id), judge, signal: AbortSignal.timeout(60_000), log: process.env.DBG ? createLogger({ level: 'debug' }) : silentLogger })
      return { f, judged }
    }

    const snapshotOf = async (params: Float32Array, group: number[]): Promise<AgreedSnapshot> =>
      await agreedSnapshot(1, { round: 3, step: 3 * PERIOD, group: group.map(id).sort(), mode: 'params', params }, specs)

    it('a donor serving chunks against the agreed hash is judged; the chunks come from the others', async () => {
      const snap = await snapshotOf(honest, [1, 2, 3])
      await serve(1, undefined, snap, { chunk: (_i, b) => { b[0] ^= 1; return b } })
      await serve(2, undefined, snap)
      await serve(3, undefined, snap)
      const { f, judged } = await fetch([1, 2, 3])
      assert.ok(f != null)
      assert.deepEqual(bits(flatten(f.params, specs.map(s => s.name))), bits(honest))
      assert.equal(f.step, 3 * PERIOD)
      assert.deepEqual(judged.map(j => [j.peer, j.code]), [[id(1), 'ERR_STATE_CHUNK_HASH']])
    })

    it('a majority vouching for NaN parameters is refused and judged; the joiner takes the honest peer\'s live state', async () => {
      const bad = nanVector(total(specs))
      const snap = await snapshotOf(bad, [1, 2, 3])
      await serve(1, liveState(bad, specs, 9, 9), snap)
      await serve(2, liveState(bad, specs, 9, 9), snap)
      await serve(3, liveState(honest, specs, 4, 5), await snapshotOf(honest, [1, 2, 3]))
      const { f, judged } = await fetch([1, 2, 3])
      assert.ok(f != null)
      assert.equal(f.peer, id(3))
      assert.deepEqual(bits(flatten(f.params, specs.map(s => s.name))), bits(honest))
      assert.equal(f.optimizer.step, 4, 'a live state brings its donor\'s moments and update count')
      assert.deepEqual(judged.map(j => [j.peer, j.code]).sort(), [[id(1), 'ERR_NON_FINITE'], [id(2), 'ERR_NON_FINITE']].sort())
    })

    it('no agreed state (never averaged): the first peer\'s NaN live state is refused and judged, the next one\'s taken', async () => {
      await serve(1, liveState(nanVector(total(specs)), specs, 9, 9))
      await serve(2, liveState(honest, specs, 4, 5))
      await serve(3, liveState(testVector(6, total(specs), 0.1), specs, 4, 5))
      const { f, judged } = await fetch([1, 2, 3])
      assert.ok(f != null)
      assert.equal(f.peer, id(2))
      assert.deepEqual(bits(flatten(f.params, specs.map(s => s.name))), bits(honest))
      assert.equal(f.step, 5)
      assert.deepEqual(judged.map(j => [j.peer, j.code]), [[id(1), 'ERR_NON_FINITE']])
    })

    it('a single serving peer: its live state after the checks (nothing to compare it with)', async () => {
      await serve(4, liveState(honest, specs, 4, 5), await snapshotOf(testVector(8, total(specs)), [4]))
      const { f, judged } = await fetch([4])
      assert.ok(f != null)
      assert.equal(f.peer, id(4))
      assert.deepEqual(bits(flatten(f.params, specs.map(s => s.name))), bits(honest))
      assert.deepEqual(judged, [])
    })
  })
})
