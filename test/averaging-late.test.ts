// A member that reaches a round after its group formed (issue 15: a late joiner triggered by a
// heartbeat, 2 s after its peers, across 400 ms round trips). Real nodes on 127.0.0.1, the view as
// a static member list (all three listed at the stage): two members form their group and finish
// while the third has not started; their greetings wait at the third until it starts. It must not
// count them from those stale greetings (they closed without it: a group of 3 against their 2
// loses every shard), but ask them, get ERR_AVG_CLOSED from each and stop looking at once.
import assert from 'node:assert/strict'
import { Averager, type FaultInjection, type GroupFinder, type GroupQuery } from '../core/averaging/index.ts'
import { silentLogger } from '../core/logger.ts'
import { sleep } from '../core/timers.ts'
import { RUN_ID, startSwarm, testVector, type Swarm } from './averaging-helpers.ts'

const N = 10_001

/** The view as a finder: every listed member offered at once, then looking on until the window ends or the group is complete (as the pipeline's). */
class ViewFinder implements GroupFinder {
  constructor (private readonly members: readonly string[]) {}
  async find (q: GroupQuery): Promise<void> {
    for (const m of this.members) {
      if (q.found.has(m)) continue
      q.found.add(m)
      if (m !== q.self) q.onFound?.(m)
    }
    // returns the moment the group is complete (a stale confirmation then counts before any answer can undo it)
    const wake = AbortSignal.any([q.stop, q.signal].filter((x): x is AbortSignal => x != null))
    while (Date.now() < q.deadline && q.stop?.aborted !== true) {
      await sleep(Math.max(0, q.deadline - Date.now()), wake).catch(() => { q.signal?.throwIfAborted() })
    }
  }
}

describe('averaging: a member that arrives after its group formed', function () {
  this.timeout(120_000)
  let swarm: Swarm
  let averagers: Averager[] = []
  let ids: string[] = []
  let inputs: Float32Array[] = []

  before(async () => {
    swarm = await startSwarm(3)
  })

  afterEach(async () => {
    await Promise.all(averagers.map(async a => { await a.stop() }))
    averagers = []
  })

  after(async () => {
    await swarm?.stop()
  })

  /** One averager per node, with these join-window floors; `formed(i)` resolves once node i's group of `round` formed. */
  async function averagersWith (floors: number[], faults: Array<FaultInjection | undefined> = []): Promise<{ formed: (i: number, round: number) => Promise<void> }> {
    ids = swarm.nodes.map(n => n.peerId)
    inputs = ids.map((_, i) => testVector(300 + i, N))
    const formed = ids.map(() => new Map<number, () => void>())
    const seen = ids.map(() => new Set<number>())
    for (let i = 0; i < floors.length; i++) {
      const log = { ...silentLogger, forComponent: () => log, debug: (msg: string, f?: Record<string, unknown>) => {
        if (msg !== 'group formed') return
        seen[i].add(f?.round as number)
        formed[i].get(f?.round as number)?.()
      } }
      const a = new Averager(swarm.nodes[i].libp2p, { runId: RUN_ID, joinMs: floors[i], slackMs: 4000, finder: new ViewFinder(ids), faults: faults[i], log })
      await a.start()
      averagers.push(a)
    }
    return {
      formed: async (i, round) => {
        if (seen[i].has(round)) return
        await new Promise<void>(resolve => { formed[i].set(round, resolve) })
      }
    }
  }

  async function round (i: number, r: number, stageSize = 3): ReturnType<Averager['round']> {
    return await averagers[i].round({ round: r, stage: 1, params: inputs[i], weight: 1, stageSize, peers: ids.filter((_, j) => j !== i), signal: AbortSignal.timeout(90_000) })
  }

  it('after they finished: is told the group closed, stops before its window ends; the next round has all three', async () => {
    // the two on time wait 1 s for the third; the late one's window is long: returning early shows the answer worked
    await averagersWith([1000, 1000, 60_000])
    const onTime = await Promise.all([round(0, 7), round(1, 7)])
    for (const r of onTime) {
      assert.deepEqual(r.group, ids.slice(0, 2).sort(), 'the two on time averaged together')
      assert.deepEqual(r.lostShards, [])
    }
    const late = await round(2, 7)
    assert.equal(late.groupSize, 1, 'the late member is in no group')
    assert.equal(late.closedBy, 2, 'both answered ERR_AVG_CLOSED')
    assert.deepEqual(late.lostShards, [])
    assert.deepEqual([...late.averaged], [...inputs[2]], 'its parameters are its own')
    assert.ok(late.formMs < late.joinMs, `it stopped looking before its ${late.joinMs} ms window ended (${late.formMs} ms)`)

    // the next round, started together, has all three
    const next = await Promise.all([0, 1, 2].map(async i => await round(i, 8)))
    for (const r of next) {
      assert.equal(r.groupSize, 3)
      assert.deepEqual(r.lostShards, [])
      assert.equal(r.closedBy, 0)
    }
  })

  it('while they exchange: their stale greetings waiting for it do not make it count them (no group of 3 against their 2)', async () => {
    // the two on time expect each other only (stageSize 2) and close at once, but greet the third too,
    // with their whole 20 s window as the greeting's timeout: those greetings wait at the third. The
    // second member withholds its contribution, so the pair is still exchanging when the third starts
    const { formed } = await averagersWith([20_000, 20_000, 60_000], [undefined, { withhold: () => true }])
    const pair = Promise.all([round(0, 9, 2), round(1, 9, 2)])
    await Promise.all([formed(0, 9), formed(1, 9)])
    const late = await round(2, 9)
    assert.equal(late.groupSize, 1, `the late member is in no group (it formed ${late.group.length})`)
    assert.equal(late.closedBy, 2)
    assert.deepEqual(late.lostShards, [])
    for (const r of await pair) assert.deepEqual(r.group, ids.slice(0, 2).sort())
  })
})

