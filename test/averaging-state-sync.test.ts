// State sync between real nodes on 127.0.0.1: a late joiner downloads a stage's state in chunks from
// several peers at once and verifies it against the hash they agree on; a peer serving corrupted
// chunks is caught and routed around; a peer with other state is outvoted; and a joiner that synced
// after a round averages with the others in the next one.
import assert from 'node:assert/strict'
import type { Libp2p } from '@libp2p/interface'
import {
  Averager, parseState, serializeState, sha256Hex, StateAgreementError, StateServer, syncState, type StateSnapshot
} from '../core/averaging/index.ts'
import { STATE_SYNC_PROTOCOL, type AgreedSnapshot } from '../core/averaging/state-server.ts'
import { RemoteError, requestFrame, type Frame } from '../core/wire/index.ts'
import { connectedNodes } from './pipeline-helpers.ts'
import { stopNodes } from './wire-helpers.ts'
import { RUN_ID, startSwarm, testVector } from './averaging-helpers.ts'

const CHUNK = 64 * 1024

function stateOf (seed: number, version: number): StateSnapshot {
  const bytes = serializeState({
    version,
    step: version * 50,
    tensors: new Map([['params', testVector(seed, 150_000)], ['outer.momentum', testVector(seed + 1, 150_000, 0.01)]])
  })
  return { version, bytes }
}

describe('averaging: state sync for joiners', function () {
  this.timeout(120_000)
  let nodes: Libp2p[] = []
  const servers: StateServer[] = []

  before(async () => {
    nodes = await connectedNodes(5)
  })

  after(async () => {
    await Promise.all(servers.map(async s => { await s.stop() }))
    await stopNodes(...nodes)
  })

  async function serve (i: number, snap: () => StateSnapshot | undefined, faults?: { chunk?: (index: number, b: Uint8Array) => Uint8Array }): Promise<StateServer> {
    const s = new StateServer(nodes[i], { runId: RUN_ID, snapshot: () => snap(), chunkBytes: CHUNK, faults })
    await s.start()
    servers.push(s)
    return s
  }

  async function unserve (): Promise<void> {
    await Promise.all(servers.splice(0).map(async s => { await s.stop() }))
  }

  const ids = (): string[] => nodes.map(n => n.peerId.toString())

  it('downloads chunks from several peers at once and verifies the agreed hash', async () => {
    const good = stateOf(1, 7)
    for (const i of [1, 2, 3]) await serve(i, () => good)
    try {
      const r = await syncState(nodes[0], ids().slice(1, 4), { runId: RUN_ID, stage: 2, signal: AbortSignal.timeout(60_000) })
      assert.equal(r.version, 7)
      assert.deepEqual(r.bytes, good.bytes)
      assert.equal(r.sha256, await sha256Hex(good.bytes))
      assert.equal(r.agreeing.length, 3)
      const chunks = Math.ceil(good.bytes.byteLength / CHUNK)
      assert.equal([...r.chunksByPeer.values()].reduce((a, b) => a + b, 0), chunks)
      assert.ok(r.chunksByPeer.size >= 2, `chunks came from ${r.chunksByPeer.size} peer(s)`)
      assert.deepEqual(r.badPeers, [])
      const state = parseState(r.bytes)
      assert.equal(state.step, 350)
      assert.deepEqual(state.tensors.get('params'), testVector(1, 150_000))
    } finally {
      await unserve()
    }
  })

  it('an agreed version replaced by the next round stays servable for chunks; a live one and a never-served one do not', async () => {
    let agreed: AgreedSnapshot = { ...stateOf(5, 3), digest: 'd3', group: ids().slice(1, 3), mode: 'params' }
    let live = stateOf(6, 10)
    const s = new StateServer(nodes[1], { runId: RUN_ID, snapshot: () => live, agreed: () => agreed, chunkBytes: CHUNK })
    await s.start()
    servers.push(s)
    const ask = async (metadata: Record<string, unknown>): Promise<Frame> =>
      await requestFrame(nodes[0], nodes[1].peerId, STATE_SYNC_PROTOCOL, { kind: 'request', stage: 2, metadata }, undefined, { runId: RUN_ID, timeoutMs: 10_000 })
    const refused = async (metadata: Record<string, unknown>): Promise<void> => {
      await assert.rejects(ask(metadata), (err: unknown) => err instanceof RemoteError && err.remoteCode === 'ERR_STATE_VERSION')
    }
    try {
      // the joiner reads round 3's manifest (and the live one); the donor then finishes round 4 and steps on
      assert.equal((await ask({ op: 'manifest', of: 'agreed' })).header.metadata?.version, 3)
      assert.equal((await ask({ op: 'manifest' })).header.metadata?.version, 10)
      const old = agreed.bytes
      agreed = { ...stateOf(7, 4), digest: 'd4', group: ids().slice(1, 3), mode: 'params' }
      live = stateOf(8, 11)
      assert.equal((await ask({ op: 'manifest', of: 'agreed' })).header.metadata?.version, 4)
      // round 3's chunks still come, with round 3's bytes
      const chunk = await ask({ op: 'chunk', version: 3, index: 1, of: 'agreed' })
      assert.deepEqual(chunk.payload, old.subarray(CHUNK, 2 * CHUNK))
      assert.deepEqual((await ask({ op: 'chunk', version: 4, index: 0, of: 'agreed' })).payload, agreed.bytes.subarray(0, CHUNK))
      await refused({ op: 'chunk', version: 2, index: 0, of: 'agreed' })
      await ask({ op: 'manifest' })
      await refused({ op: 'chunk', version: 10, index: 0 })
    } finally {
      await unserve()
    }
  })

  it('catches a peer that serves corrupted chunks under the agreed hash, and fetches them elsewhere', async () => {
    const good = stateOf(2, 8)
    for (const i of [1, 2]) await serve(i, () => good)
    const flip = (_index: number, b: Uint8Array): Uint8Array => { b[b.length >> 1] ^= 0x40; return b }
    await serve(3, () => good, { chunk: flip })
    try {
      const r = await syncState(nodes[0], ids().slice(1, 4), { runId: RUN_ID, stage: 2, parallel: 3, signal: AbortSignal.timeout(60_000) })
      assert.deepEqual(r.bytes, good.bytes)
      assert.deepEqual(r.badPeers, [{ peer: ids()[3], reason: 'ERR_STATE_CHUNK_HASH' }])
      assert.equal(r.chunksByPeer.get(ids()[3]), undefined, 'no chunk from the corrupt peer was kept')
    } finally {
      await unserve()
    }
  })

  it('outvotes a peer holding other state, and refuses a tie', async () => {
    const good = stateOf(3, 9)
    const other = stateOf(4, 9)
    for (const i of [1, 2]) await serve(i, () => good)
    await serve(3, () => other)
    try {
      const r = await syncState(nodes[0], ids().slice(1, 4), { runId: RUN_ID, stage: 2, signal: AbortSignal.timeout(60_000) })
      assert.deepEqual(r.bytes, good.bytes)
      assert.deepEqual(r.disagreeing.map(d => d.peer), [ids()[3]])
      await assert.rejects(syncState(nodes[0], [ids()[1], ids()[3]], { runId: RUN_ID, stage: 2, signal: AbortSignal.timeout(60_000) }),
        (err: unknown) => err instanceof StateAgreementError)
    } finally {
      await unserve()
    }
  })

  it('a late joiner syncs the averaged state, then averages with the others', async () => {
    const swarm = await startSwarm(4)
    const avgs: Averager[] = []
    const srv: StateServer[] = []
    try {
      for (const n of swarm.nodes) {
        const a = new Averager(n.libp2p, { runId: RUN_ID, joinMs: 8000, slackMs: 4000 })
        await a.start()
        avgs.push(a)
      }
      const n = 50_000
      const first = await Promise.all([0, 1, 2].map(async i => await avgs[i].round({ round: 1, stage: 0, params: testVector(10 + i, n), weight: 1, stageSize: 3 })))
      assert.ok(first.every(r => r.groupSize === 3 && r.lostShards.length === 0))
      // the three serve what they hold after round 1
      for (const i of [0, 1, 2]) {
        const bytes = serializeState({ version: 1, step: 50, tensors: new Map([['params', first[i].averaged]]) })
        const s = new StateServer(swarm.nodes[i].libp2p, { runId: RUN_ID, snapshot: () => ({ version: 1, bytes }), chunkBytes: 32 * 1024 })
        await s.start()
        srv.push(s)
      }
      const synced = await syncState(swarm.nodes[3].libp2p, [0, 1, 2].map(i => swarm.nodes[i].peerId), { runId: RUN_ID, stage: 0, signal: AbortSignal.timeout(60_000) })
      assert.equal(synced.agreeing.length, 3, 'members of one round hold identical bytes')
      const joined = parseState(synced.bytes).tensors.get('params')!
      assert.deepEqual(joined, first[0].averaged)
      // round 2: the joiner takes part with the synced weights; all four end identical
      const local = [first[0].averaged, first[1].averaged, first[2].averaged, joined].map((p, i) => { const d = testVector(20 + i, n, 0.001); return p.map((x, e) => x + d[e]) })
      const second = await Promise.all(avgs.map(async (a, i) => await a.round({ round: 2, stage: 0, params: local[i], weight: 1, stageSize: 4 })))
      for (const r of second) {
        assert.equal(r.groupSize, 4)
        assert.deepEqual(r.lostShards, [])
        assert.deepEqual(r.averaged, second[0].averaged)
      }
    } finally {
      await Promise.all([...srv, ...avgs].map(async x => { await x.stop() }))
      await swarm.stop()
    }
  })
})
