// Stochastic wiring: earliest expected finish from measured round trips, new peers tried early,
// random tie-break, bans with exponential backoff, timeouts that follow measurement.
import assert from 'node:assert/strict'
import { Router } from '../core/pipeline/router.ts'
import { AVERAGING_HOLD_MS, averagingHoldMs } from '../core/pipeline/dispatch.ts'
import { StaticSource } from './pipeline-helpers.ts'

function setup (peers: string[], opts: ConstructorParameters<typeof Router>[1] = {}): { router: Router, source: StaticSource, clock: { t: number } } {
  const source = new StaticSource()
  source.set(1, peers)
  const clock = { t: 1_000_000 }
  const router = new Router(source, { now: () => clock.t, rng: () => 0, ...opts })
  return { router, source, clock }
}

function tally (router: Router, n: number, stage = 1): Record<string, number> {
  const out: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const p = router.choose(stage) as string
    out[p] = (out[p] ?? 0) + 1
  }
  return out
}

describe('pipeline: router', function () {
  it('sends work in proportion to measured speed (earliest expected finish)', function () {
    const { router } = setup(['fast', 'slow'])
    router.succeeded('fast', 1, 100)
    router.succeeded('slow', 1, 300)
    const t = tally(router, 40)
    assert.equal(t.fast, 30)
    assert.equal(t.slow, 10)
  })

  it('tries a new peer next, without flooding it', function () {
    const { router, source } = setup(['a', 'b'])
    router.succeeded('a', 1, 100)
    router.succeeded('b', 1, 100)
    tally(router, 10)
    source.set(1, ['a', 'b', 'c'])
    assert.equal(router.choose(1), 'c', 'the newcomer is tried at once')
    // unmeasured: expected like the stage's median (100 ms), so it takes about a third from then on
    const t = tally(router, 30)
    assert.ok(t.c >= 9 && t.c <= 11, JSON.stringify(t))
  })

  it('breaks ties at random', function () {
    const source = new StaticSource()
    source.set(1, ['a', 'b', 'c'])
    const seen = new Set<string>()
    for (const r of [0, 0.4, 0.9]) seen.add(new Router(source, { rng: () => r }).choose(1) as string)
    assert.deepEqual([...seen].sort(), ['a', 'b', 'c'])
  })

  it('bans a failing peer with exponential backoff, longer for protocol violations; success clears it', function () {
    const { router, clock } = setup(['a', 'b'], { banBaseMs: 1000, banMaxMs: 10_000 })
    router.failed('a', 1, 'ignore')
    assert.ok(router.isBanned('a'))
    assert.deepEqual(tally(router, 5), { b: 5 })
    clock.t += 1001
    assert.ok(!router.isBanned('a'))
    router.failed('a', 1, 'ignore')
    clock.t += 1001
    assert.ok(router.isBanned('a'), 'the second failure in a row bans for 2 s')
    clock.t += 1000
    assert.ok(!router.isBanned('a'))
    router.succeeded('a', 1, 50)
    router.failed('a', 1, 'ignore')
    clock.t += 1001
    assert.ok(!router.isBanned('a'), 'a success reset the backoff')
    router.failed('b', 1, 'reject')
    clock.t += 3999
    assert.ok(router.isBanned('b'), 'a violation bans 4x as long')
    for (let i = 0; i < 10; i++) router.failed('b', 1, 'reject')
    assert.ok(router.stats().find(s => s.peer === 'b')!.bannedForMs <= 10_000, 'capped')
    router.failed('a', 1, 'none')
    assert.ok(!router.isBanned('a'), 'our own abort is not the peer\'s fault')
    assert.equal(router.choose(1, new Set(['a'])), undefined, 'b banned, a excluded: nobody')
  })

  it('a peer back after an outage (gone from the source, then listed again) starts its backoff again; a rejected one does not', function () {
    const { router, source, clock } = setup(['a', 'b', 'c'], { banBaseMs: 1000, banMaxMs: 60_000 })
    router.succeeded('a', 1, 100)
    router.succeeded('b', 1, 100)
    router.succeeded('c', 1, 100)
    for (let i = 0; i < 5; i++) router.failed('a', 1, 'ignore') // missed deadlines while its link was down: banned 16 s
    router.failed('c', 1, 'ignore')
    router.failed('c', 1, 'reject') // banned 8 s
    source.set(1, ['b']) // both stop heartbeating
    router.choose(1)
    clock.t += 5000
    assert.ok(router.isBanned('a') && router.isBanned('c'))
    source.set(1, ['a', 'b', 'c']) // back
    assert.equal(router.choose(1), 'a', 'the returning peer is tried next')
    assert.equal(router.stats().find(s => s.peer === 'a')!.failures, 0)
    router.failed('a', 1, 'ignore')
    clock.t += 1001
    assert.ok(!router.isBanned('a'), 'its next failure bans for the first length again')
    assert.ok(router.isBanned('c'), 'a rejection\'s ban outlives the absence')
    // a peer that never left the source keeps its growing ban
    router.failed('b', 1, 'ignore')
    router.failed('b', 1, 'ignore')
    router.choose(1)
    clock.t += 1001
    assert.ok(router.isBanned('b'))
  })

  it('sets timeouts from measured round trips, with a floor', function () {
    const { router } = setup(['a'], { timeoutFloorMs: 500, initialTimeoutMs: 7000, timeoutK: 4, alpha: 0.5 })
    assert.equal(router.timeoutMs('a'), 7000, 'unmeasured: the initial timeout')
    router.succeeded('a', 1, 40)
    assert.equal(router.timeoutMs('a'), 500, 'fast peer: the floor')
    for (let i = 0; i < 6; i++) router.succeeded('a', 1, 2000)
    const t = router.timeoutMs('a')
    assert.ok(t > 2000 && t < 4000, `slow peer: ${t}`)
  })

  it('a hop of a step that starts an averaging period gets the averaging hold\'s allowance (dispatch.ts)', function () {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map(step => averagingHoldMs(3, step)), [0, 0, 0, AVERAGING_HOLD_MS, 0, 0, AVERAGING_HOLD_MS])
    assert.equal(averagingHoldMs(0, 6), 0, 'a run that never averages')
    // only a peer that has answered gets it (dispatch.ts asks the router): a silent one never has
    const { router } = setup(['a', 'silent'])
    router.succeeded('a', 1, 100)
    router.failed('silent', 1, 'ignore')
    assert.equal(router.measured('a'), true)
    assert.equal(router.measured('silent'), false)
  })
})
