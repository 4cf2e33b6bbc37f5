// All-reduce across separate processes (bench/allreduce-peer.ts) plus in-process nodes, joined
// through one bootstrap node and the DHT: the exact mean across processes, and a member process
// killed (SIGKILL) mid-round: the others finish, report its shard as lost and it as left out.
import assert from 'node:assert/strict'
import { Averager, type RoundResult } from '../core/averaging/index.ts'
import { shardRanges } from '../core/averaging/butterfly.ts'
import { createNode, type LayerswarmNode } from '../core/index.ts'
import { BENCH_RUN_ID, peerVector } from '../bench/allreduce-peer.ts'
import { spawnPeer, startBootstrap, stopPeer, type PeerProcess } from '../bench/allreduce.ts'
import { expectedMean } from './averaging-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'

const N = 200_000

describe('averaging: members in separate processes', function () {
  this.timeout(180_000)
  let boot: Awaited<ReturnType<typeof startBootstrap>>
  const local: LayerswarmNode[] = []
  const averagers: Averager[] = []
  const procs: PeerProcess[] = []
  const dirs: string[] = []

  before(async () => {
    boot = await startBootstrap()
    for (let i = 0; i < 2; i++) {
      const dir = await tempDir('lsw-avg-proc-')
      dirs.push(dir)
      const node = await createNode({ dataDir: dir, plugins: [], controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [boot.addr] })
      await node.start()
      local.push(node)
      const a = new Averager(node.libp2p, { runId: BENCH_RUN_ID, joinMs: 15_000, slackMs: 5000 })
      await a.start()
      averagers.push(a)
    }
  })

  after(async () => {
    await Promise.all(procs.map(stopPeer))
    await Promise.all(averagers.map(async a => { await a.stop() }))
    await Promise.all(local.map(async n => { await n.stop() }))
    await boot?.stop()
    await removeDirs(dirs)
  })

  const localRound = async (i: number, round: number, stageSize: number): Promise<RoundResult> =>
    await averagers[i].round({ round, stage: 0, params: peerVector(i + 1, N), weight: 1, stageSize, signal: AbortSignal.timeout(120_000) })

  it('two processes and two in-process nodes reach the exact mean', async () => {
    for (const seed of [11, 12]) procs.push(await spawnPeer({ bootstrap: boot.addr, elements: N, seed, joinMs: 15_000, slackMs: 5000 }))
    const [r0, r1, p0, p1] = await Promise.all([
      localRound(0, 1, 4), localRound(1, 1, 4),
      procs[0].send({ cmd: 'round', round: 1, stageSize: 4 }), procs[1].send({ cmd: 'round', round: 1, stageSize: 4 })
    ])
    const want = expectedMean(new Map([
      [local[0].peerId, { data: peerVector(1, N), weight: 1 }], [local[1].peerId, { data: peerVector(2, N), weight: 1 }],
      [procs[0].peerId, { data: peerVector(11, N), weight: 1 }], [procs[1].peerId, { data: peerVector(12, N), weight: 1 }]
    ]))
    for (const r of [r0, r1]) {
      assert.equal(r.groupSize, 4)
      assert.deepEqual(r.lostShards, [])
      assert.deepEqual(r.averaged, want)
    }
    let sum = 0
    for (let i = 0; i < N; i++) sum += want[i]
    for (const p of [p0, p1]) {
      assert.equal(p.result.groupSize, 4)
      assert.deepEqual(p.result.lostShards, [])
      assert.equal(p.sum, sum, 'the process holds the same vector (float64 sum of its elements)')
      assert.deepEqual(p.head, Array.from(want.subarray(0, 8)))
    }
    await Promise.all(procs.splice(0).map(stopPeer))
  })

  it('a member killed mid-round: the others complete, keep its shard local and report it', async () => {
    const doomed = await spawnPeer({ bootstrap: boot.addr, elements: N, seed: 13, joinMs: 15_000, slackMs: 5000, dieOnContribution: true })
    procs.push(doomed)
    const pending = doomed.send({ cmd: 'round', round: 2, stageSize: 3 }).catch((err: Error) => err)
    const [r0, r1] = await Promise.all([localRound(0, 2, 3), localRound(1, 2, 3)])
    const exit = await doomed.exited
    assert.equal(exit.signal, 'SIGKILL', 'the peer process died during the round')
    assert.ok((await pending) instanceof Error)
    const want = expectedMean(new Map([[local[0].peerId, { data: peerVector(1, N), weight: 1 }], [local[1].peerId, { data: peerVector(2, N), weight: 1 }]]))
    // The doomed member dies as it starts its first contribution, so none of its values reach the
    // others' shards. Its own shard is a race it may win: it can finish serving that shard before it
    // reaches its first contribution. Then the shard is averaged (the same bits on both survivors),
    // else it is lost and keeps local values. Both are correct outcomes of a member dying mid-round.
    const dead = r0.group.indexOf(doomed.peerId)
    const [ds, de] = shardRanges(N, 3)[dead]
    for (const [i, r] of [r0, r1].entries()) {
      assert.equal(r.groupSize, 3, 'the group was formed with the doomed member')
      assert.equal(r.group.indexOf(doomed.peerId), dead, 'one group order on every member')
      const lost = r.lostShards.map(l => [l.shard, l.owner, l.start, l.end])
      if (lost.length > 0) {
        assert.deepEqual(lost, [[dead, doomed.peerId, ds, de]], JSON.stringify(r.lostShards))
        assert.deepEqual(r.averaged.subarray(ds, de), peerVector(i + 1, N).subarray(ds, de), 'the lost shard keeps local values')
      } else {
        assert.ok(r.averaged.subarray(ds, de).every(Number.isFinite), 'the delivered shard is finite')
      }
      assert.ok(r.excluded.some(x => x.peer === doomed.peerId && !x.banned), `dead, not banned: ${JSON.stringify(r.excluded)}`)
      for (let e = 0; e < N; e++) {
        if (e >= ds && e < de) continue
        if (r.averaged[e] !== want[e]) assert.fail(`element ${e}: ${r.averaged[e]} vs ${want[e]} (mean of the two survivors)`)
      }
    }
    if (r0.lostShards.length === 0 && r1.lostShards.length === 0) {
      assert.deepEqual(r0.averaged.subarray(ds, de), r1.averaged.subarray(ds, de), 'both survivors hold the shard the dead member delivered')
    }
    await waitFor(() => !local[0].libp2p.getPeers().some(p => p.toString() === doomed.peerId), { what: 'the dead peer to drop from the connections', timeoutMs: 20_000 })
  })
})
