// Butterfly all-reduce between real nodes (createNode: TCP + noise + yamux + the private DHT) on
// 127.0.0.1, in one process: groups found through the DHT, the exact weighted mean with raw f32,
// the mean within the codec's error with int8-block, DiLoCo's outer step, and members that send
// garbage (wrong size, NaN, a dishonest average) left out and banned.
import assert from 'node:assert/strict'
import { Averager, type FaultInjection, type GroupFinder, type RoundResult } from '../core/averaging/index.ts'
import { sleep } from '../core/timers.ts'
import { shardCodecs } from '../core/codecs/tensor-codecs.ts'
import { int8BlockCodec } from '../plugins/compression/index.ts'
import { shardRanges } from '../core/averaging/butterfly.ts'
import { expectedMean, RUN_ID, startSwarm, testVector, type Swarm } from './averaging-helpers.ts'

const N = 100_003 // not a multiple of the group size: unequal shards

describe('averaging: butterfly all-reduce over DHT groups', function () {
  this.timeout(180_000)
  let swarm: Swarm
  const averagers: Averager[] = []

  before(async () => {
    swarm = await startSwarm(6)
  })

  after(async () => {
    await Promise.all(averagers.map(async a => { await a.stop() }))
    await swarm?.stop()
  })

  async function averagersFor (count: number, opts: { codec?: 'int8', mode?: 'params' | 'pseudo-grad', faults?: Map<number, FaultInjection> } = {}): Promise<Averager[]> {
    const codecs = opts.codec === 'int8'
      ? shardCodecs({ parameter: 'int8-block', 'parameter-grad': 'int8-block' }, [int8BlockCodec()])
      : undefined
    const out: Averager[] = []
    for (let i = 0; i < count; i++) {
      const a = new Averager(swarm.nodes[i].libp2p, { runId: RUN_ID, codecs, mode: opts.mode, joinMs: 8000, slackMs: 4000, faults: opts.faults?.get(i) })
      await a.start()
      out.push(a)
      averagers.push(a)
    }
    return out
  }

  async function stopAll (list: Averager[]): Promise<void> {
    await Promise.all(list.map(async a => { await a.stop() }))
  }

  async function roundAll (list: Averager[], round: number, inputs: Float32Array[], weights: number[]): Promise<RoundResult[]> {
    return await Promise.all(list.map(async (a, i) => await a.round({ round, stage: 1, params: inputs[i], weight: weights[i], stageSize: list.length, signal: AbortSignal.timeout(60_000) })))
  }

  it('5 members reach the exact weighted mean with raw f32, and hold identical bits', async () => {
    const list = await averagersFor(5)
    try {
      const inputs = list.map((_, i) => testVector(100 + i, N))
      const weights = [1, 2, 3, 4, 5]
      const results = await roundAll(list, 1, inputs, weights)
      const byPeer = new Map(swarm.nodes.slice(0, 5).map((n, i) => [n.peerId, { data: inputs[i], weight: weights[i] }]))
      const want = expectedMean(byPeer)
      for (const r of results) {
        assert.equal(r.groupSize, 5)
        assert.deepEqual(r.lostShards, [])
        assert.deepEqual(r.excluded, [])
        assert.equal(r.contributors, 5)
        assert.deepEqual(r.averaged, want)
      }
      assert.deepEqual(results[0].group, [...byPeer.keys()].sort())
      console.log(`      [measure] 5 members, ${N} floats: group formed in ${results.map(r => r.formMs).join('/')} ms, all-reduce ${results.map(r => r.reduceMs).join('/')} ms`)
    } finally {
      await stopAll(list)
    }
  })

  it('with int8-block shards, every member holds the same values, within the codec error of the mean', async () => {
    const list = await averagersFor(4, { codec: 'int8' })
    try {
      const inputs = list.map((_, i) => testVector(200 + i, N, 0.05))
      const weights = [10, 10, 10, 10]
      const results = await roundAll(list, 2, inputs, weights)
      const want = expectedMean(new Map(swarm.nodes.slice(0, 4).map((n, i) => [n.peerId, { data: inputs[i], weight: weights[i] }])))
      let maxErr = 0
      for (let e = 0; e < N; e++) maxErr = Math.max(maxErr, Math.abs(results[0].averaged[e] - want[e]))
      // contributions and result each cross the codec once: error <= 2 x (1/254) x block max (<= 0.05)
      assert.ok(maxErr <= 2 * int8BlockCodec().errorBound.relMaxAbs * 0.05 * 1.01, `max error ${maxErr}`)
      assert.ok(maxErr > 0, 'int8 is lossy: an exact result means the codec was not used')
      for (const r of results) {
        assert.deepEqual(r.lostShards, [])
        assert.deepEqual(r.averaged, results[0].averaged, 'members agree bit for bit')
        assert.ok(r.bytesSent < N * 4 * 2 * 3 / 4 / 3, `sent ${r.bytesSent} bytes: int8 should send ~1/4 of raw`)
      }
    } finally {
      await stopAll(list)
    }
  })

  it('pseudo-grad mode: the first round agrees on theta_start, the next applies outer Nesterov SGD to the mean delta', async () => {
    const list = await averagersFor(3, { mode: 'pseudo-grad' })
    try {
      const n = 1000
      const start = list.map((_, i) => testVector(300 + i, n))
      const first = await roundAll(list, 3, start, [1, 1, 1])
      assert.ok(first.every(r => r.mode === 'params'))
      const theta0 = first[0].averaged
      // local training moves each member differently
      const local = list.map((_, i) => { const d = testVector(400 + i, n, 0.01); return theta0.map((x, e) => x - d[e]) })
      const second = await roundAll(list, 4, local, [1, 2, 1])
      const deltas = local.map(l => theta0.map((x, e) => x - l[e]))
      const g = expectedMean(new Map(swarm.nodes.slice(0, 3).map((nd, i) => [nd.peerId, { data: deltas[i], weight: [1, 2, 1][i] }])))
      for (const r of second) {
        assert.equal(r.mode, 'pseudo-grad')
        for (let e = 0; e < n; e++) {
          const m = g[e] // momentum starts at 0: m = g
          const want = theta0[e] - 0.7 * (g[e] + 0.9 * m)
          assert.ok(Math.abs(r.averaged[e] - want) <= 1e-6 * Math.max(1, Math.abs(want)), `element ${e}: ${r.averaged[e]} vs ${want}`)
        }
        assert.deepEqual(r.averaged, second[0].averaged)
      }
    } finally {
      await stopAll(list)
    }
  })

  it('a member that stays connected but never contributes is left out when the shard closes, reported, not banned', async () => {
    const faults = new Map<number, FaultInjection>([[2, { withhold: () => true }]])
    const list = await averagersFor(3, { faults })
    try {
      const silent = swarm.nodes[2].peerId
      const inputs = list.map((_, i) => testVector(700 + i, N))
      const results = await roundAll(list, 20, inputs, [1, 1, 1])
      const want = expectedMean(new Map(swarm.nodes.slice(0, 2).map((n, i) => [n.peerId, { data: inputs[i], weight: 1 }])))
      const silentShard = results[0].group.indexOf(silent)
      const ranges = shardRanges(N, 3)
      for (const r of results.slice(0, 2)) {
        assert.equal(r.groupSize, 3)
        assert.deepEqual(r.excluded.filter(x => x.peer === silent), [{ peer: silent, reason: 'ERR_AVG_LATE', banned: false }], JSON.stringify(r.excluded))
        assert.equal(r.contributors, 2, 'the owner averaged without the silent member')
        ranges.forEach(([s, e], j) => {
          // the silent member still owns and serves its shard: the two honest values reach it
          if (j === silentShard) return
          assert.deepEqual(r.averaged.subarray(s, e), want.subarray(s, e), `shard ${j}`)
        })
        assert.deepEqual(r.lostShards, [])
      }
      for (const a of list.slice(0, 2)) assert.ok(!a.bans.isBanned(silent), 'silence is not a ban')
    } finally {
      await stopAll(list)
    }
  })

  it('a member that has not started a round hears of it from a partner\'s greeting (onAsked) and joins the group; a latecomer is told the round is over; a partner not averaging yet is reported', async () => {
    // B never starts round 40 on its own: only A's greeting tells it (StageAveraging starts the round
    // then, so a member that got no microbatch of the boundary step still meets its partners' window)
    const [na, nb] = swarm.nodes
    const asked: Array<[number, number, string]> = []
    let roundB: Promise<RoundResult> | undefined
    const inputs = [testVector(900, N), testVector(901, N)]
    const lists = (...peers: string[]): GroupFinder => ({
      async find (q) {
        for (const peer of peers) if (!q.found.has(peer)) { q.found.add(peer); q.onFound?.(peer) }
        while (Date.now() < q.deadline && q.stop?.aborted !== true) await sleep(Math.min(50, q.deadline - Date.now()), q.signal)
      }
    })
    const a = new Averager(na.libp2p, { runId: RUN_ID, finder: lists(nb.peerId), joinMs: 8000, slackMs: 4000 })
    const b: Averager = new Averager(nb.libp2p, {
      runId: RUN_ID,
      finder: lists(na.peerId),
      joinMs: 8000,
      slackMs: 4000,
      onAsked: (stage, round, peer) => {
        asked.push([stage, round, peer])
        roundB ??= b.round({ round, stage, params: inputs[1], weight: 1, stageSize: 2, signal: AbortSignal.timeout(60_000) })
      }
    })
    const list = [a, b]
    averagers.push(a, b)
    try {
      await a.start()
      await b.start()
      const ra = await a.round({ round: 40, stage: 1, params: inputs[0], weight: 1, stageSize: 2, signal: AbortSignal.timeout(60_000) })
      assert.ok(roundB != null, 'B was asked for the round')
      const rb = await roundB
      assert.deepEqual(asked[0], [1, 40, na.peerId])
      const want = expectedMean(new Map([[na.peerId, { data: inputs[0], weight: 1 }], [nb.peerId, { data: inputs[1], weight: 1 }]]))
      for (const r of [ra, rb]) {
        assert.equal(r.groupSize, 2)
        assert.deepEqual(r.lostShards, [])
        assert.deepEqual(r.averaged, want)
        assert.deepEqual(r.over, [])
      }
      // a latecomer greets both for the finished round: each answers ERR_AVG_ROUND_OVER, so it knows
      // why it is alone, and stops looking once every expected partner answered (not at its 8 s deadline)
      const nc = swarm.nodes[2]
      const c = new Averager(nc.libp2p, { runId: RUN_ID, finder: lists(na.peerId, nb.peerId), joinMs: 8000, slackMs: 4000 })
      list.push(c)
      averagers.push(c)
      await c.start()
      const rc = await c.round({ round: 40, stage: 1, params: testVector(902, N), weight: 1, stageSize: 3, signal: AbortSignal.timeout(60_000) })
      assert.equal(rc.groupSize, 1)
      assert.deepEqual([...(rc.over ?? [])].sort(), [na.peerId, nb.peerId].sort())
      assert.ok(rc.formMs < 8000, `the latecomer stopped looking once both answered (formed after ${rc.formMs} ms)`)
      // a partner that does not run averaging yet (a joiner still fetching its state) is reported as not ready
      const idle = swarm.nodes[4].peerId
      const d = new Averager(swarm.nodes[3].libp2p, { runId: RUN_ID, finder: lists(idle), joinMs: 1500, slackMs: 1000 })
      list.push(d)
      averagers.push(d)
      await d.start()
      const rd = await d.round({ round: 41, stage: 1, params: testVector(903, N), weight: 1, stageSize: 2, signal: AbortSignal.timeout(60_000) })
      assert.equal(rd.groupSize, 1)
      assert.deepEqual(rd.notReady, [idle])
      assert.deepEqual(rd.over, [])
    } finally {
      await stopAll(list)
    }
  })

  for (const [name, fault, code] of [
    ['a wrong-size contribution', { contribution: (_s: number, d: Float32Array) => d.subarray(0, d.length - 1) }, 'ERR_AVG_SHARD_SIZE'],
    ['a NaN contribution', { contribution: (_s: number, d: Float32Array) => { d[7] = NaN; return d } }, 'ERR_NON_FINITE'],
    ['an out-of-bounds average', { result: (_s: number, d: Float32Array) => d.map(x => x * 50 + 1) }, 'ERR_AVG_BOUNDS']
  ] as const) {
    it(`a member sending ${name} is left out, reported and banned`, async () => {
      const faults = new Map<number, FaultInjection>([[3, fault as FaultInjection]])
      const list = await averagersFor(4, { faults })
      try {
        const bad = swarm.nodes[3].peerId
        const inputs = list.map((_, i) => testVector(500 + i, N))
        const results = await roundAll(list, 10, inputs, [1, 1, 1, 1])
        const honest = results.slice(0, 3)
        for (const r of honest) {
          assert.equal(r.groupSize, 4)
          const ex = r.excluded.find(x => x.peer === bad)
          assert.ok(ex != null, `the faulty member is reported: ${JSON.stringify(r.excluded)}`)
          assert.equal(ex.reason, code)
          assert.equal(ex.banned, true)
        }
        for (const a of list.slice(0, 3)) assert.ok(a.bans.isBanned(bad))
        // shards owned by honest members average the honest contributions exactly (a dishonest owner's
        // own contributions were fine)
        const contributors = code === 'ERR_AVG_BOUNDS' ? 4 : 3
        const want = expectedMean(new Map(swarm.nodes.slice(0, contributors).map((n, i) => [n.peerId, { data: inputs[i], weight: 1 }])))
        const group = results[0].group
        const badShard = group.indexOf(bad)
        for (const r of honest) {
          const lost = new Set(r.lostShards.map(l => l.shard))
          if (code === 'ERR_AVG_BOUNDS') assert.deepEqual([...lost], [badShard], 'the dishonest owner\'s shard is refused')
          r.group.forEach((_, j) => {
            if (j === badShard) return
            const len = Math.floor(N / 4) + (j < N % 4 ? 1 : 0)
            const start = Array.from({ length: j }, (_, q) => Math.floor(N / 4) + (q < N % 4 ? 1 : 0)).reduce((a, b) => a + b, 0)
            assert.deepEqual(r.averaged.subarray(start, start + len), want.subarray(start, start + len), `shard ${j}`)
          })
        }
        // next round: the banned member's data is refused at once and its shard is lost; the rest still averages
        const again = await roundAll(list, 11, inputs, [1, 1, 1, 1])
        for (const r of again.slice(0, 3)) {
          assert.ok(r.excluded.some(x => x.peer === bad && x.reason === 'ERR_AVG_BANNED'), JSON.stringify(r.excluded))
          assert.deepEqual(r.lostShards.map(l => l.shard), [badShard])
        }
      } finally {
        await stopAll(list)
      }
    })
  }
})
