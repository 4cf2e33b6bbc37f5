// The join window's rule (core/averaging/join-window.ts): the floor where round trips add nothing
// (loopback, or no peer measured yet), floor + 8 RTOs of the slowest measured stage peer across slow
// links, never over the ceiling; and the typed answer a late member gets (ERR_AVG_CLOSED).
import assert from 'node:assert/strict'
import { PeerTiming } from '../core/net/peer-timing.ts'
import { JOIN_WINDOW_CEILING_MS, JOIN_WINDOW_RTOS, joinWindowMs } from '../core/averaging/join-window.ts'
import { GroupClosedError } from '../core/averaging/errors.ts'
import { LayerswarmError, verdictOf } from '../core/errors.ts'

/** A timing with `rtts` samples (ms) of each peer, in order. */
function timingOf (rtts: Record<string, number[]>): PeerTiming {
  const t = new PeerTiming()
  for (const [peer, samples] of Object.entries(rtts)) for (const ms of samples) t.observeRtt(peer, ms)
  return t
}

describe('averaging: the join window follows measured round trips', () => {
  it('is the floor on loopback and with no peer measured', () => {
    // 1 ms round trips: 8 RTOs add some 10 ms to the floor
    assert.ok(joinWindowMs(timingOf({ a: [1, 1, 1] }), ['a'], 3000, 15_000) <= 3020)
    assert.equal(joinWindowMs(timingOf({}), ['a', 'b'], 3000, 15_000), 3000)
    assert.equal(joinWindowMs(undefined, ['a'], 3000, 15_000), 3000)
    assert.equal(joinWindowMs(timingOf({ a: [400] }), [], 3000, 15_000), 3000, 'no partner listed: the floor')
  })

  it('adds 8 RTOs of the slowest measured partner (400 ms round trips: about 3 s more)', () => {
    // one sample R: srtt R, rttvar R/2, RTO = 3R; steady samples shrink rttvar towards 0
    const steady = timingOf({ far: Array(40).fill(400), near: Array(40).fill(2) })
    const { srtt, rttvar } = steady.rttOf('far')
    const want = Math.ceil(3000 + JOIN_WINDOW_RTOS * (srtt + 4 * rttvar))
    assert.equal(joinWindowMs(steady, ['near', 'far', 'unmeasured'], 3000, 15_000), want)
    assert.ok(want >= 3000 + 8 * 400 && want < 3000 + 8 * 420, `window ${want} ms`)
    assert.equal(joinWindowMs(steady, ['near'], 3000, 15_000), Math.ceil(3000 + JOIN_WINDOW_RTOS * (steady.rttOf('near').srtt + 4 * steady.rttOf('near').rttvar)))
  })

  it('never exceeds the ceiling, and a floor above the ceiling wins', () => {
    const slow = timingOf({ a: [5000] })
    assert.equal(joinWindowMs(slow, ['a'], 3000, JOIN_WINDOW_CEILING_MS), JOIN_WINDOW_CEILING_MS)
    assert.equal(joinWindowMs(slow, ['a'], 20_000, 15_000), 20_000)
    assert.equal(joinWindowMs(timingOf({ a: [400] }), ['a'], 200, 1000), 1000)
  })

  it('a late member is told with a typed answer that costs it nothing', () => {
    const err = new GroupClosedError('round 4 of stage 1 formed its group without x')
    assert.ok(err instanceof LayerswarmError)
    assert.equal(err.code, 'ERR_AVG_CLOSED')
    assert.equal(verdictOf(err), 'ignore')
  })
})
