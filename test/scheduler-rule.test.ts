// The assignment rule (plugins/scheduler/rule.ts): pure functions of a view, so every case is a
// literal view and an exact expected answer.
import assert from 'node:assert/strict'
import {
  assignJoiners, balanceOf, bottleneck, electedMove, hash32, joinStage, planMoves, stageThroughputs, tieKey,
  type RuleConfig, type RuleEntry
} from '../plugins/scheduler/rule.ts'
import { mulberry32 } from '../core/model/prng.ts'

const NOW = 10_000_000
const EPOCH = 7
const cfg = (stages: number, over: Partial<RuleConfig> = {}): RuleConfig => ({ stages, hysteresis: 0.15, cooldownMs: 60_000, ...over })

function serving (peer: string, stage: number, tput: number, over: Partial<RuleEntry> = {}): RuleEntry {
  return { peer, stage, tput, state: 'serving', pinned: false, since: 0, ...over }
}
function joiner (peer: string, tput = 0): RuleEntry {
  return { peer, stage: -1, tput, state: 'joining', pinned: false, since: NOW }
}

/** Applies a plan's moves to a view (the movers now serve their target, cool-down restarted). */
function apply (view: RuleEntry[], moves: ReadonlyArray<{ peer: string, to: number }>, now: number): RuleEntry[] {
  return view.map(e => {
    const m = moves.find(x => x.peer === e.peer)
    return m === undefined ? e : { ...e, stage: m.to, since: now }
  })
}

describe('scheduler rule', () => {
  it('hashes deterministically and differently per epoch', () => {
    assert.equal(hash32('abc'), hash32('abc'))
    assert.notEqual(tieKey('peerA', 1), tieKey('peerA', 2))
    const buckets = new Array(8).fill(0)
    for (let i = 0; i < 8000; i++) buckets[hash32(`p${i}`) % 8]++
    for (const b of buckets) assert.ok(b > 800 && b < 1200, `bucket ${b} of 8000/8`)
  })

  it('counts serving and joining nodes at their stage, movers at their target, departing nodes nowhere', () => {
    const view: RuleEntry[] = [
      serving('a', 0, 4),
      { ...joiner('b', 0), stage: 1, tput: 2 },
      { ...serving('c', 0, 3), state: 'leaving', to: 2 },
      { ...serving('d', 1, 5), state: 'leaving' }
    ]
    assert.deepEqual(stageThroughputs(view, cfg(3)), [4, 2, 3])
  })

  it('converts throughput between stages through the stage costs', () => {
    // c measured 3 mb/s at stage 0 (cost 1): capacity 3 work/s, so 1.5 mb/s at stage 2 (cost 2)
    const view: RuleEntry[] = [serving('a', 0, 4), serving('b', 1, 2), { ...serving('c', 0, 3), state: 'leaving', to: 2 }]
    assert.deepEqual(stageThroughputs(view, cfg(3, { stageCosts: [1, 1, 2] })), [4, 2, 1.5])
  })

  it('fills a stage with no server first, even when another stage is slower', () => {
    const view: RuleEntry[] = [serving('a', 0, 10), serving('b', 1, 0.5), serving('c', 3, 10), joiner('me', 1)]
    assert.equal(joinStage(view, 'me', cfg(4), EPOCH), 2)
  })

  it('sends a joiner to the stage with the lowest throughput relative to demand', () => {
    const view: RuleEntry[] = [serving('a', 0, 10), serving('b', 1, 3), serving('c', 2, 6), joiner('me')]
    assert.equal(joinStage(view, 'me', cfg(3), EPOCH), 1)
    // with stage 2 three times as costly, 6 work/s there is 2 mb/s: now stage 2 is the least served
    const costly: RuleEntry[] = [serving('a', 0, 10), serving('b', 1, 3), serving('c', 2, 2), joiner('me')]
    assert.equal(joinStage(costly, 'me', cfg(3, { stageCosts: [1, 1, 3] }), EPOCH), 2)
  })

  it('spreads simultaneous joiners over the empty stages, the same way whatever the view order', () => {
    const view: RuleEntry[] = [joiner('p1', 2), joiner('p2', 2), joiner('p3', 2), joiner('p4', 2)]
    const a = assignJoiners(view, cfg(4), EPOCH)
    assert.deepEqual([...new Set(a.values())].sort(), [0, 1, 2, 3])
    const b = assignJoiners([...view].reverse(), cfg(4), EPOCH)
    assert.deepEqual([...b.entries()].sort(), [...a.entries()].sort())
    // each joiner reads its own entry of the same map
    for (const p of ['p1', 'p2', 'p3', 'p4']) assert.equal(joinStage(view, p, cfg(4), EPOCH), a.get(p))
  })

  it('never moves a node from a stage it serves alone', () => {
    // stage 1 is the bottleneck, but stage 0's only server would leave stage 0 empty
    const view: RuleEntry[] = [serving('big', 0, 100), serving('small', 1, 1)]
    assert.deepEqual(planMoves(view, cfg(2), NOW, EPOCH).moves, [])
    // a second server at stage 0 makes the move possible
    const two = [...view, serving('big2', 0, 100)]
    const plan = planMoves(two, cfg(2), NOW, EPOCH)
    assert.equal(plan.moves.length, 1)
    assert.equal(plan.moves[0].to, 1)
  })

  it('fills an emptied stage from the most over-served one', () => {
    const view: RuleEntry[] = [serving('a', 0, 5), serving('b', 0, 5), serving('c', 1, 5), serving('d', 1, 5), serving('e', 1, 5)]
    const plan = planMoves(view, cfg(3), NOW, EPOCH)
    assert.equal(plan.moves.length, 1)
    assert.equal(plan.moves[0].from, 1)
    assert.equal(plan.moves[0].to, 2)
    assert.ok(bottleneck(plan.after).value > 0)
  })

  it('moves no one for a gain below the hysteresis margin, and someone above it', () => {
    // T = [12, 10]: the best move (a 1 from stage 0) gives min(11, 11) = 11 = +10% < 15%
    const small: RuleEntry[] = [serving('a', 0, 6), serving('b', 0, 5), serving('c', 0, 1), serving('d', 1, 10)]
    assert.deepEqual(planMoves(small, cfg(2), NOW, EPOCH).moves, [])
    assert.equal(planMoves(small, cfg(2, { hysteresis: 0.05 }), NOW, EPOCH).moves.length, 1)
    // T = [16, 10]: moving the 3 gives min(13, 13) = +30%
    const big: RuleEntry[] = [serving('a', 0, 6), serving('b', 0, 7), serving('c', 0, 3), serving('d', 1, 10)]
    const plan = planMoves(big, cfg(2), NOW, EPOCH)
    assert.deepEqual(plan.moves.map(m => [m.peer, m.from, m.to]), [['c', 0, 1]])
    // after the move, and once its cool-down is over, nothing moves back
    const after = apply(big, plan.moves, NOW)
    assert.deepEqual(planMoves(after, cfg(2), NOW + 10 * 60_000, EPOCH + 10).moves, [])
  })

  it('elects exactly one of several equivalent nodes, the lowest hash of (peer, epoch), and every node agrees', () => {
    const view: RuleEntry[] = [
      serving('n1', 0, 5), serving('n2', 0, 5), serving('n3', 0, 5), serving('n4', 0, 5), serving('n5', 1, 5)
    ]
    const plan = planMoves(view, cfg(2, { maxMovesPerEpoch: 1 }), NOW, EPOCH)
    assert.equal(plan.moves.length, 1)
    const expected = ['n1', 'n2', 'n3', 'n4'].sort((a, b) => tieKey(a, EPOCH) - tieKey(b, EPOCH))[0]
    assert.equal(plan.moves[0].peer, expected)
    const elected = ['n1', 'n2', 'n3', 'n4', 'n5'].filter(p => electedMove([...view].reverse(), p, cfg(2, { maxMovesPerEpoch: 1 }), NOW, EPOCH) !== undefined)
    assert.deepEqual(elected, [expected])
  })

  it('never elects a pinned node or one in its cool-down', () => {
    const view: RuleEntry[] = [
      serving('pinned', 0, 5, { pinned: true }), serving('fresh', 0, 5, { since: NOW - 1000 }), serving('old', 0, 5), serving('x', 1, 2)
    ]
    const plan = planMoves(view, cfg(2), NOW, EPOCH)
    assert.deepEqual(plan.moves.map(m => m.peer), ['old'])
    const noOld = view.filter(e => e.peer !== 'old')
    assert.deepEqual(planMoves(noOld, cfg(2), NOW, EPOCH).moves, [])
  })

  it('plans several moves when one would not lift tied bottlenecks', () => {
    const view: RuleEntry[] = [...Array.from({ length: 6 }, (_, i) => serving(`a${i}`, 0, 4)), serving('b', 1, 4), serving('c', 2, 4)]
    const plan = planMoves(view, cfg(3, { maxMovesPerEpoch: 4 }), NOW, EPOCH)
    assert.ok(plan.moves.length >= 2)
    assert.ok(bottleneck(plan.after).value > bottleneck(plan.before).value * 1.15)
  })

  it('fills two empty stages one move at a time when only one move per epoch is allowed', () => {
    let view: RuleEntry[] = [serving('a', 0, 3), serving('b', 0, 3), serving('c', 0, 3)]
    const c = cfg(3, { maxMovesPerEpoch: 1, cooldownMs: 0 })
    const first = planMoves(view, c, NOW, EPOCH)
    assert.deepEqual(first.moves.map(m => m.to), [1])
    view = apply(view, first.moves, NOW)
    const second = planMoves(view, c, NOW + 1, EPOCH + 1)
    assert.deepEqual(second.moves.map(m => m.to), [2])
    assert.deepEqual(stageThroughputs(apply(view, second.moves, NOW), c), [3, 3, 3])
  })

  it('moves many small nodes when together they lift the bottleneck past the margin', () => {
    // 40 nodes of 1 on stages 0 and 1, 10 on stage 2: no single move gains 15%, the plan does
    const view: RuleEntry[] = [
      ...Array.from({ length: 40 }, (_, i) => serving(`x${i}`, 0, 1)),
      ...Array.from({ length: 40 }, (_, i) => serving(`y${i}`, 1, 1)),
      ...Array.from({ length: 10 }, (_, i) => serving(`z${i}`, 2, 1))
    ]
    const plan = planMoves(view, cfg(3, { maxMovesPerEpoch: 8 }), NOW, EPOCH)
    assert.equal(plan.moves.length, 8)
    assert.ok(plan.moves.every(m => m.to === 2))
    assert.equal(bottleneck(plan.after).value, 18)
    assert.deepEqual(planMoves(view, cfg(3, { maxMovesPerEpoch: 1 }), NOW, EPOCH).moves, [], 'one move alone (+10%) is not worth it')
  })

  it('terminates on any static view: the bottleneck never falls and repeated plans run out of moves', () => {
    const rng = mulberry32(42)
    for (let trial = 0; trial < 40; trial++) {
      const stages = 2 + Math.floor(rng() * 6)
      let view: RuleEntry[] = Array.from({ length: 5 + Math.floor(rng() * 60) }, (_, i) =>
        serving(`p${trial}-${i}`, Math.floor(rng() * stages), Math.exp(rng() * 2 - 1), { pinned: rng() < 0.05 }))
      let now = NOW
      let rounds = 0
      for (; rounds < 200; rounds++) {
        const c = cfg(stages, { hysteresis: 0.1, cooldownMs: 0 })
        const plan = planMoves(view, c, now, rounds)
        if (plan.moves.length === 0) break
        assert.ok(bottleneck(plan.after).value >= bottleneck(plan.before).value, 'the bottleneck fell')
        view = apply(view, plan.moves, now)
        now += 1000
      }
      assert.ok(rounds < 200, `trial ${trial} still moving after 200 rounds`)
    }
  })

  it('damps measurement noise: hysteresis keeps a near-balanced swarm still, none lets it flap', () => {
    const rng = mulberry32(7)
    // T = [12, 11]; moving a small node either way gives [11, 12]: a move gains nothing real
    const base: RuleEntry[] = [
      serving('a', 0, 5), serving('b', 0, 5), serving('c', 0, 1), serving('d', 0, 1), serving('e', 1, 5), serving('f', 1, 5), serving('g', 1, 1)
    ]
    const run = (hysteresis: number): number => {
      let view = base
      let moves = 0
      for (let epoch = 0; epoch < 200; epoch++) {
        // +-10% measurement noise on every heartbeat
        const noisy = view.map(e => ({ ...e, tput: e.tput * (0.9 + 0.2 * rng()) }))
        const plan = planMoves(noisy, cfg(2, { hysteresis, cooldownMs: 0 }), NOW + epoch * 60_000, epoch)
        moves += plan.moves.length
        view = apply(view, plan.moves, NOW + epoch * 60_000)
      }
      return moves
    }
    const damped = run(0.15)
    const undamped = run(0)
    assert.equal(damped, 0)
    assert.ok(undamped > 10, `without hysteresis only ${undamped} moves`)
  })

  it('reports balance as min/max', () => {
    assert.equal(balanceOf([2, 4, 4]), 0.5)
    assert.equal(balanceOf([0, 4]), 0)
  })
})
