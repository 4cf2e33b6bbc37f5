// Shards in many parts between real nodes (createNode: TCP + noise + yamux + the private DHT, one
// process): with 1000-element parts each shard moves in 25 frames, so the owners run the robust
// mean's first pass while parts arrive. A clean round reaches the exact weighted mean with identical
// bits everywhere; a member whose contribution goes bad only in its last part (one element short,
// or a NaN) after every earlier part was taken into the first pass is left out, reported and banned,
// and the honest owners' shards are still the exact mean of the honest members (the first pass
// started again without it).
import assert from 'node:assert/strict'
import { Averager, type FaultInjection, type RoundResult } from '../core/averaging/index.ts'
import { shardRanges } from '../core/averaging/butterfly.ts'
import { expectedMean, RUN_ID, startSwarm, testVector, type Swarm } from './averaging-helpers.ts'

const N = 100_003
const PART = 1000

describe('averaging: shards in many parts', function () {
  this.timeout(180_000)
  let swarm: Swarm
  const averagers: Averager[] = []

  before(async () => {
    swarm = await startSwarm(6) // as averaging-allreduce: the DHT fills its tables sooner with more nodes; 4 average
  })

  after(async () => {
    await Promise.all(averagers.map(async a => { await a.stop() }))
    await swarm?.stop()
  })

  async function averagersFor (faults?: Map<number, FaultInjection>): Promise<Averager[]> {
    const out: Averager[] = []
    for (let i = 0; i < 4; i++) {
      const a = new Averager(swarm.nodes[i].libp2p, { runId: RUN_ID, joinMs: 8000, slackMs: 4000, chunkElements: PART, faults: faults?.get(i) })
      await a.start()
      out.push(a)
      averagers.push(a)
    }
    return out
  }

  async function roundAll (list: Averager[], round: number, inputs: Float32Array[], weights: number[]): Promise<RoundResult[]> {
    return await Promise.all(list.map(async (a, i) => await a.round({ round, stage: 2, params: inputs[i], weight: weights[i], stageSize: list.length, signal: AbortSignal.timeout(60_000) })))
  }

  it('a clean round in 25 parts per shard: the exact weighted mean, identical bits on every member', async () => {
    const list = await averagersFor()
    try {
      const inputs = list.map((_, i) => testVector(700 + i, N))
      const weights = [1, 2, 3, 4]
      const results = await roundAll(list, 1, inputs, weights)
      const want = expectedMean(new Map(swarm.nodes.slice(0, 4).map((n, i) => [n.peerId, { data: inputs[i], weight: weights[i] }])))
      for (const r of results) {
        assert.equal(r.groupSize, 4)
        assert.deepEqual(r.lostShards, [])
        assert.deepEqual(r.excluded, [])
        assert.deepEqual(r.averaged, want)
      }
    } finally {
      await Promise.all(list.map(async a => { await a.stop() }))
    }
  })

  for (const [name, fault, code, round] of [
    ['one element short in its last part', { contribution: (_s: number, d: Float32Array) => d.subarray(0, d.length - 1) }, 'ERR_AVG_SHARD_SIZE', 2],
    ['a NaN in its last part', { contribution: (_s: number, d: Float32Array) => { d[d.length - 1] = NaN; return d } }, 'ERR_NON_FINITE', 3]
  ] as const) {
    it(`a member whose contribution goes bad only in its last part (${name}) is left out and banned; honest shards stay exact`, async () => {
      const list = await averagersFor(new Map([[3, fault as FaultInjection]]))
      try {
        const bad = swarm.nodes[3].peerId
        const inputs = list.map((_, i) => testVector(800 + i, N))
        // a round number of its own: the DHT still holds the group records of earlier tests' rounds
        const results = await roundAll(list, round, inputs, [1, 1, 1, 1])
        const want = expectedMean(new Map(swarm.nodes.slice(0, 3).map((n, i) => [n.peerId, { data: inputs[i], weight: 1 }])))
        for (const r of results.slice(0, 3)) {
          assert.equal(r.groupSize, 4)
          const ex = r.excluded.find(x => x.peer === bad)
          assert.ok(ex != null, `the faulty member is reported: ${JSON.stringify(r.excluded)}`)
          assert.equal(ex.reason, code)
          assert.equal(ex.banned, true)
          const badShard = r.group.indexOf(bad)
          shardRanges(N, 4).forEach(([s, e], j) => {
            if (j !== badShard) assert.deepEqual(r.averaged.subarray(s, e), want.subarray(s, e), `shard ${j}`)
          })
        }
        for (const a of list.slice(0, 3)) assert.ok(a.bans.isBanned(bad))
      } finally {
        await Promise.all(list.map(async a => { await a.stop() }))
      }
    })
  }
})
