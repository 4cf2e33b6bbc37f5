// Robust averaging between real nodes (createNode: TCP + noise + yamux + the private DHT) on
// 127.0.0.1, in one process: in groups of 3 and 4, a member poisoning its contribution (issue 13:
// all-zero parameters declaring a weight of 1e15; NaN; x10; in pseudo-grad mode also sign-flipped
// deltas) is excluded by every honest shard owner, reported, judged 'reject' by each honest node's
// PeerJudge (one penalty) and banned; the honest members' shards hold exactly the honest-only mean;
// the next round completes without it. Honest noisy groups exclude nobody over many rounds.
import assert from 'node:assert/strict'
import { Averager, shardRanges, type FaultInjection, type RoundResult } from '../core/averaging/index.ts'
import { expectedMean, RUN_ID, startSwarm, testVector, type Swarm } from './averaging-helpers.ts'

const N = 30_001 // not a multiple of the group size: unequal shards
const LR = 0.7
const MU = 0.9

type Mode = 'params' | 'pseudo-grad'

interface Attack {
  readonly name: string
  /** The code honest members report the attacker with. */
  readonly code: string
  /** The attacker's round input from its honest one (its parameters). */
  readonly input?: (honest: Float32Array) => Float32Array
  /** Pseudo-grad mode: the attacker trains to theta_start - delta(its honest delta). */
  readonly delta?: (honest: Float32Array) => Float32Array
  readonly weight?: number
  readonly faults?: FaultInjection
}

const ATTACKS: Record<Mode, Attack[]> = {
  params: [
    { name: 'all-zero parameters declaring weight 1e15', code: 'ERR_AVG_OUTLIER', input: x => new Float32Array(x.length), weight: 1e15 },
    { name: 'NaN parameters', code: 'ERR_NON_FINITE', faults: { contribution: (_s, d) => d.fill(NaN) } },
    { name: 'parameters x10', code: 'ERR_AVG_OUTLIER', input: x => x.map(v => 10 * v) }
  ],
  'pseudo-grad': [
    { name: 'all-zero parameters declaring weight 1e15', code: 'ERR_AVG_OUTLIER', input: x => new Float32Array(x.length), weight: 1e15 },
    { name: 'NaN deltas', code: 'ERR_NON_FINITE', faults: { contribution: (_s, d) => { d[3] = NaN; return d } } },
    { name: 'deltas x10', code: 'ERR_AVG_OUTLIER', delta: d => d.map(v => 10 * v) },
    { name: 'sign-flipped deltas', code: 'ERR_AVG_OUTLIER', delta: d => d.map(v => -v) }
  ]
}

describe('robust averaging: poisoned contributions are excluded, reported, judged and banned', function () {
  this.timeout(300_000)
  let swarm: Swarm
  let live: Averager[] = []
  let seed = 1000

  before(async () => {
    swarm = await startSwarm(4)
  })

  afterEach(async () => {
    await Promise.all(live.map(async a => { await a.stop() }))
    live = []
  })

  after(async () => {
    await swarm?.stop()
  })

  async function averagers (count: number, mode: Mode, faults?: FaultInjection): Promise<Averager[]> {
    for (let i = 0; i < count; i++) {
      // the last one is the attacker where there is one
      const a = new Averager(swarm.nodes[i].libp2p, { runId: RUN_ID, mode, joinMs: 8000, slackMs: 4000, faults: i === count - 1 ? faults : undefined })
      await a.start()
      live.push(a)
    }
    return live
  }

  async function roundAll (list: Averager[], round: number, inputs: Float32Array[], weights: number[]): Promise<RoundResult[]> {
    return await Promise.all(list.map(async (a, i) => await a.round({ round, stage: 1, params: inputs[i], weight: weights[i], stageSize: list.length, signal: AbortSignal.timeout(90_000) })))
  }

  /** Honest vectors near a shared base (params: nearly equal parameters), or a shared descent direction plus noise as large (deltas). */
  function honestSet (count: number, scale: number): Float32Array[] {
    const base = testVector(seed++, N)
    return Array.from({ length: count }, () => { const noise = testVector(seed++, N, scale); return base.map((x, e) => x + noise[e]) })
  }

  /** Shard ranges of the group that honest members own. */
  function honestShards (r: RoundResult, bad: string): Array<[number, number]> {
    const ranges = shardRanges(N, r.groupSize)
    return ranges.filter((_, j) => r.group[j] !== bad)
  }

  function assertAttackerHandled (list: Averager[], results: RoundResult[], bad: string, attack: Attack, what: string): void {
    for (const [i, r] of results.slice(0, -1).entries()) {
      const ex = r.excluded.filter(x => x.peer === bad)
      assert.ok(ex.some(x => x.reason === attack.code && x.banned), `${what}: the attacker is reported with ${attack.code}: ${JSON.stringify(r.excluded)}`)
      assert.deepEqual(r.excluded.filter(x => x.peer !== bad), [], `${what}: no honest member excluded`)
      if (attack.code === 'ERR_AVG_OUTLIER') assert.ok(ex.every(x => x.detail != null && x.detail.length > 0), 'the outlier exclusion says why')
      // a NaN contribution never reaches the mean (refused on decode): in a group of 3 two are left
      if (attack.code === 'ERR_AVG_OUTLIER') assert.ok(r.ownShard?.robust, `${what}: 3+ contributions: judged`)
      assert.ok(list[i].bans.isBanned(bad), `${what}: banned`)
      assert.deepEqual(list[i].judge.penalties(), { total: 1, byPeer: { [bad]: 1 } }, `${what}: one penalty, through the judge`)
      // the attacker's own shard is not taken from it
      const badShard = r.group.indexOf(bad)
      assert.deepEqual(r.lostShards.map(l => [l.shard, l.reason]), [[badShard, 'ERR_AVG_BANNED']], `${what}: ${JSON.stringify(r.lostShards)}`)
    }
  }

  for (const size of [3, 4]) {
    for (const attack of ATTACKS.params) {
      it(`params, group of ${size}: ${attack.name}`, async () => {
        const list = await averagers(size, 'params', attack.faults)
        const bad = swarm.nodes[size - 1].peerId
        const honest = honestSet(size, 0.02)
        const inputs = honest.map((x, i) => i === size - 1 && attack.input != null ? attack.input(x) : x)
        const weights = honest.map((_, i) => i === size - 1 ? attack.weight ?? 1 : 1 + i)
        const results = await roundAll(list, 1, inputs, weights)
        const what = `params/${size}/${attack.name}`
        assertAttackerHandled(list, results, bad, attack, what)
        const want = expectedMean(new Map(swarm.nodes.slice(0, size - 1).map((n, i) => [n.peerId, { data: inputs[i], weight: weights[i] }])))
        for (const r of results.slice(0, -1)) {
          assert.equal(r.groupSize, size)
          for (const [s, e] of honestShards(r, bad)) assert.deepEqual(r.averaged.subarray(s, e), want.subarray(s, e), `${what}: honest-only mean on [${s}, ${e})`)
        }
        // the next round completes without it
        const again = await roundAll(list, 2, inputs, weights)
        for (const r of again.slice(0, -1)) {
          assert.ok(r.excluded.some(x => x.peer === bad && x.reason === 'ERR_AVG_BANNED'), JSON.stringify(r.excluded))
          for (const [s, e] of honestShards(r, bad)) assert.deepEqual(r.averaged.subarray(s, e), want.subarray(s, e))
        }
      })
    }

    for (const attack of ATTACKS['pseudo-grad']) {
      it(`pseudo-grad, group of ${size}: ${attack.name}`, async () => {
        // the attack starts with the second round: the first agrees on theta_start honestly
        const faulty: FaultInjection = { contribution: (s, d) => attack.faults?.contribution != null && armed ? attack.faults.contribution(s, d) : d }
        let armed = false
        const list = await averagers(size, 'pseudo-grad', faulty)
        const bad = swarm.nodes[size - 1].peerId
        const first = await roundAll(list, 1, honestSet(size, 0.02), Array<number>(size).fill(1))
        const theta0 = first[0].averaged
        assert.ok(first.every(r => r.excluded.length === 0 && r.averaged.every((x, e) => x === theta0[e])))
        armed = true
        // local training: deltas share a direction, with noise as large
        const deltas = honestSet(size, 1).map(d => d.map(x => 0.01 * x))
        const local = deltas.map((d, i) => {
          const bad = i === size - 1
          const mine = bad && attack.delta != null ? attack.delta(d) : d
          const honest = theta0.map((x, e) => x - mine[e])
          return bad && attack.input != null ? attack.input(honest) : honest
        })
        const weights = deltas.map((_, i) => i === size - 1 ? attack.weight ?? 1 : 1 + i)
        const results = await roundAll(list, 2, local, weights)
        const what = `pseudo-grad/${size}/${attack.name}`
        assertAttackerHandled(list, results, bad, attack, what)
        const g = expectedMean(new Map(swarm.nodes.slice(0, size - 1).map((n, i) => [n.peerId, { data: theta0.map((x, e) => x - local[i][e]), weight: weights[i] }])))
        for (const r of results.slice(0, -1)) {
          assert.equal(r.mode, 'pseudo-grad')
          for (const [s, e] of honestShards(r, bad)) {
            for (let k = s; k < e; k++) {
              const want = theta0[k] - LR * (g[k] + MU * g[k]) // momentum starts at 0: m = g
              assert.ok(Math.abs(r.averaged[k] - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${what}: element ${k}: ${r.averaged[k]} vs ${want}`)
            }
          }
        }
      })
    }
  }

  for (const mode of ['params', 'pseudo-grad'] as const) {
    it(`${mode}: honest noisy groups of 4 exclude nobody over 8 rounds (unequal weights, a member that did not train)`, async () => {
      const list = await averagers(4, mode)
      let params = honestSet(4, 0.05)
      const excluded: string[] = []
      for (let round = 1; round <= 8; round++) {
        const weights = [1 + (round % 3), 4, 1, 2 + round]
        const results = await roundAll(list, round, params, weights)
        for (const r of results) {
          excluded.push(...r.excluded.map(x => `round ${round}: ${x.peer} ${x.reason} ${x.detail ?? ''}`))
          assert.deepEqual(r.lostShards, [])
        }
        // every member trains from the result (member 2 not at all in odd rounds): a shared step plus noise as large, unequal sizes
        const step = testVector(seed++, N, 0.01)
        params = results.map((r, i) => {
          if (i === 2 && round % 2 === 1) return r.averaged.slice()
          const noise = testVector(seed++, N, 0.01 * (0.5 + i / 2))
          return r.averaged.map((x, e) => x - step[e] - noise[e])
        })
      }
      assert.deepEqual(excluded, [])
      for (const a of list) assert.deepEqual(a.judge.penalties(), { total: 0, byPeer: {} })
    })
  }
})
