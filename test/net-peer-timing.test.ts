// The deadline rule (core/net/peer-timing.ts) and where it applies: RFC 6298's round-trip
// arithmetic, the throughput EWMA, medians for unmeasured peers, floors and ceilings; the router's
// hop timeout for a peer never measured (its stage's figures, so a silent newcomer is caught within
// a few of its stage's round trips); an averaging phase that follows the slowest member's link.
import assert from 'node:assert/strict'
import { PeerTiming, timingFor } from '../core/net/peer-timing.ts'
import { PeerDeadlineError } from '../core/net/errors.ts'
import { Router } from '../core/pipeline/router.ts'
import { phaseDeadlineMs, PEER_PHASE_CEILING_MS } from '../core/averaging/all-reduce-round.ts'

const near = (a: number, b: number, what: string): void => { assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} != ${b}`) }

describe('peer timing', function () {
  it('follows RFC 6298 for round trips', function () {
    const t = new PeerTiming()
    t.observeRtt('a', 100)
    near(t.rttOf('a').srtt, 100, 'first srtt')
    near(t.rttOf('a').rttvar, 50, 'first rttvar')
    t.observeRtt('a', 200)
    // rttvar first (with the old srtt), then srtt
    near(t.rttOf('a').rttvar, 0.75 * 50 + 0.25 * 100, 'rttvar')
    near(t.rttOf('a').srtt, 0.875 * 100 + 0.125 * 200, 'srtt')
    t.observeRtt('a', Number.NaN)
    t.observeRtt('a', -5)
    assert.equal(t.stats()[0].rttSamples, 2, 'bad samples ignored')
  })

  it('estimates throughput from transfers, less one round trip', function () {
    const t = new PeerTiming()
    t.observeTransfer('a', 1_000_000, 1000)
    near(t.throughputOf('a'), 1e6, 'first sample')
    t.observeRtt('b', 100)
    t.observeTransfer('b', 1_000_000, 600)
    near(t.throughputOf('b'), 2e6, '500 ms on the wire')
    t.observeTransfer('b', 1_000_000, 100)
    // never less than half the time: 50 ms -> 20e6; EWMA 1/4
    near(t.throughputOf('b'), 0.75 * 2e6 + 0.25 * 20e6, 'ewma')
  })

  it('deadline = clamp(srtt + 4 rttvar + bytes / throughput + extra, floor, ceiling)', function () {
    const t = new PeerTiming()
    t.observeRtt('a', 100)
    t.observeTransfer('a', 2e6, 2100)
    const tp = t.throughputOf('a')
    near(tp, 1e6, 'throughput')
    near(t.networkMs('a', 500_000), 100 + 4 * 50 + 500, 'network share')
    near(t.deadline('a', 500_000, { floorMs: 0, ceilingMs: 1e9, extraMs: 40 }), 840, 'with extra')
    assert.equal(t.deadline('a', 500_000, { floorMs: 5000, ceilingMs: 1e9 }), 5000, 'floor')
    assert.equal(t.deadline('a', 1e12, { floorMs: 0, ceilingMs: 30_000 }), 30_000, 'ceiling')
  })

  it('gives an unmeasured peer the measured peers\' medians, else the defaults', function () {
    const t = new PeerTiming({ defaultRttMs: 300, defaultThroughput: 2e6 })
    near(t.networkMs('x', 2e6), 300 + 4 * 150 + 1000, 'defaults')
    for (const [p, r] of [['a', 10], ['b', 20], ['c', 1000]] as const) t.observeRtt(p, r)
    near(t.rttOf('x').srtt, 20, 'median srtt')
    t.observeTransfer('a', 1e6, 100)
    near(t.throughputOf('x'), 1e6 / (0.1 - 0.01), 'median throughput of the one measured')
  })

  it('forgets the least recently updated peer beyond its cap', function () {
    let now = 0
    const t = new PeerTiming({ maxPeers: 2, now: () => now })
    t.observeRtt('a', 1); now++
    t.observeRtt('b', 1); now++
    t.observeRtt('a', 1); now++
    t.observeRtt('c', 1)
    assert.deepEqual(t.stats().map(s => s.peer).sort(), ['a', 'c'])
  })

  it('is one estimator per libp2p node', function () {
    const node = {}
    assert.equal(timingFor(node), timingFor(node))
    assert.notEqual(timingFor(node), timingFor({}))
  })

  it('a missed deadline is the peer\'s fault, mildly', function () {
    const e = new PeerDeadlineError('p', 1234.4, 'stage-1 hop')
    assert.equal(e.verdict, 'ignore')
    assert.equal(e.code, 'ERR_PEER_DEADLINE')
    assert.match(e.message, /1234 ms/)
  })
})

describe('hop and averaging deadlines', function () {
  it('a peer never measured gets its stage\'s figures, not the initial timeout', function () {
    const router = new Router({ peersForStage: () => ['a', 'b', 'silent'] }, { timeoutFloorMs: 100, initialTimeoutMs: 120_000, timeoutK: 4, alpha: 0.25 })
    assert.equal(router.timeoutMs('silent', 1), 120_000, 'nobody measured: the initial timeout')
    for (let i = 0; i < 20; i++) {
      router.succeeded('a', 1, 200)
      router.succeeded('b', 1, 300)
    }
    const t = router.timeoutMs('silent', 1, 50)
    assert.ok(t > 300 && t < 1000, `unmeasured peer: a few of its stage's round trips, got ${t}`)
    assert.equal(router.timeoutMs('x', 2), 120_000, 'another stage is not this one')
    assert.equal(router.timeoutMs('a', 1, 1e9), 120_000, 'the initial timeout is the ceiling')
  })

  it('an averaging phase follows the slowest member\'s link, capped', function () {
    const timing = new PeerTiming()
    const ctx = { slackMs: 1000, bandwidth: 100e6, timing }
    const elements = 1_000_000 // 4 MB, 2 MB shards between 2 members
    const own = Math.ceil(1000 + 3000 * 2e6 / 100e6)
    assert.equal(phaseDeadlineMs({ ...ctx, timing: undefined }, ['me', 'b'], 0, elements), own, 'no estimator: the bandwidth rule')
    timing.observeRtt('b', 10)
    timing.observeTransfer('b', 1e6, 10) // a fast partner: the node's own rule dominates
    assert.equal(phaseDeadlineMs(ctx, ['me', 'b'], 0, elements), own)
    timing.observeRtt('slow', 200)
    timing.observeTransfer('slow', 1e5, 1200) // 100 kB/s
    const slow = phaseDeadlineMs(ctx, ['me', 'b', 'slow'], 0, elements)
    assert.ok(slow > 1000 + 200 + 13_000, `slow member: ${slow}`)
    const crawl = new PeerTiming({ defaultThroughput: 1 })
    assert.equal(phaseDeadlineMs({ ...ctx, timing: crawl }, ['me', 'unknown'], 0, elements), PEER_PHASE_CEILING_MS, 'capped')
  })
})
