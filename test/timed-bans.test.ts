// Timed bans (core/timed-bans.ts), the one class behind the membership topic's flood cut-offs and
// averaging's refused partners: expiry, reasons, bans for good, and the bound on how many are kept.
import assert from 'node:assert/strict'
import { TimedBans } from '../core/timed-bans.ts'

describe('timed bans', () => {
  it('a ban holds for banMs, is reported new once, and comes back new after it expired', () => {
    let t = 0
    const b = new TimedBans({ banMs: 1000, now: () => t })
    assert.equal(b.ban('a'), true)
    assert.equal(b.ban('a'), false, 'already banned')
    assert.equal(b.isBanned('a'), true)
    assert.equal(b.isBanned('b'), false)
    t += 999
    assert.equal(b.isBanned('a'), true)
    t += 1
    assert.equal(b.isBanned('a'), false, 'expired')
    assert.equal(b.size, 0, 'an expired ban is dropped when asked about')
    assert.equal(b.ban('a'), true, 'new again after it expired')
  })

  it('keeps each ban\'s reason; a ban for good never expires, and banning again never shortens a ban', () => {
    let t = 0
    const b = new TimedBans({ banMs: 1000, now: () => t })
    b.ban('cheat', 'ERR_CONVICTED', true)
    b.ban('noisy', 'ERR_AVG_BAD_SHARD')
    b.ban('cheat', 'ERR_AVG_BAD_SHARD')
    assert.deepEqual([...b.list()], [['noisy', 'ERR_AVG_BAD_SHARD'], ['cheat', 'ERR_AVG_BAD_SHARD']])
    t += 10 ** 9
    assert.equal(b.isBanned('cheat'), true, 'for good, even after a later timed ban')
    assert.deepEqual([...b.list().keys()], ['cheat'])
  })

  it('is bounded: a full list drops expired bans first, then the one that ends soonest, never one for good before a timed one', () => {
    let t = 0
    const b = new TimedBans({ banMs: 1000, maxBans: 3, now: () => t })
    b.ban('forever', 'x', true)
    b.ban('a')
    t += 10
    b.ban('b')
    b.ban('c') // full: a ends soonest
    assert.equal(b.size, 3)
    assert.equal(b.isBanned('a'), false)
    assert.ok(b.isBanned('forever') && b.isBanned('b') && b.isBanned('c'))
    for (let i = 0; i < 100; i++) b.ban(`sybil-${i}`)
    assert.equal(b.size, 3)
    assert.equal(b.isBanned('forever'), true, 'a flood of fresh identities does not push out a ban for good')
    t += 2000
    b.ban('late')
    assert.deepEqual([...b.list().keys()].sort(), ['forever', 'late'], 'the expired ones went')
  })

  it('refuses a ban length or bound that is not positive', () => {
    assert.throws(() => new TimedBans({ banMs: 0 }), RangeError)
    assert.throws(() => new TimedBans({ banMs: Number.NaN }), RangeError)
    assert.throws(() => new TimedBans({ maxBans: 0 }), RangeError)
    assert.throws(() => new TimedBans({ maxBans: 1.5 }), RangeError)
  })
})
