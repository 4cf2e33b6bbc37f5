// A hop's round trip net of the downstream's reported compute (core/net/hop-timing.ts): the split,
// the round-trip sample left after the bytes' transfer, and the router's hop timeout that counts the
// network once for a peer that reports its compute (old peers keep the whole round trip as service).
import assert from 'node:assert/strict'
import { COMPUTE_MS_FIELD, hopRttSample, splitHop } from '../core/net/hop-timing.ts'
import { PeerTiming } from '../core/net/peer-timing.ts'
import { Router } from '../core/pipeline/router.ts'

describe('hop timing: round trips net of the downstream\'s compute', function () {
  it('splits a round trip by the reported compute; absent or impossible reports give nothing', function () {
    assert.equal(COMPUTE_MS_FIELD, 'computeMs')
    assert.deepEqual(splitHop(900, 300), { serviceMs: 300, networkMs: 600 })
    assert.deepEqual(splitHop(900, 900), { serviceMs: 900, networkMs: 0 })
    assert.deepEqual(splitHop(900, 0), { serviceMs: 0, networkMs: 900 })
    for (const bad of [undefined, null, '300', -1, 901, Number.NaN, Infinity, { ms: 3 }]) assert.equal(splitHop(900, bad), undefined, String(bad))
    assert.equal(splitHop(Number.NaN, 3), undefined)
  })

  it('a round-trip sample is the network share less the bytes\' transfer', function () {
    // 600 ms of network; 100 kB both ways at 1 MB/s = 100 ms of transfer
    assert.equal(hopRttSample({ serviceMs: 300, networkMs: 600 }, 100_000, 1e6), 500)
    assert.equal(hopRttSample({ serviceMs: 300, networkMs: 50 }, 100_000, 1e6), undefined, 'the transfer estimate ate it all')
    assert.equal(hopRttSample({ serviceMs: 300, networkMs: 600 }, 100_000, 0), undefined, 'no throughput: no sample')
  })

  it('the hop timeout: service EWMA + 4 deviations + the network share both ways, once', function () {
    const opts = { timeoutFloorMs: 100, initialTimeoutMs: 120_000, timeoutK: 4, alpha: 0.25 }
    const router = new Router({ peersForStage: () => ['old', 'new', 'fresh'] }, opts)
    for (let i = 0; i < 50; i++) {
      router.succeeded('old', 1, 900) // reports nothing: 900 ms is its service time
      router.succeeded('new', 1, 900, 300) // 300 ms of it compute, 600 ms network
    }
    const timing = new PeerTiming()
    timing.observeRtt('new', 400)
    timing.observeRtt('old', 400)
    const oneWay = timing.networkMs('old', 10_000)
    const both = timing.networkMs('new', 20_000)
    // deviations decay towards 0 with constant samples: the timeout tends to the EWMA + the extra
    const old = router.timeoutMs('old', 1, oneWay, both)
    const net = router.timeoutMs('new', 1, oneWay, both)
    assert.ok(Math.abs(old - (900 + oneWay)) < 1, `old rule: round trip + network share of the bytes sent (${old})`)
    assert.ok(Math.abs(net - (300 + both)) < 1, `reported compute: compute + network share both ways (${net})`)
    assert.ok(net < old, 'the network is no longer counted twice')
    assert.equal(router.stats().find(s => s.peer === 'new')?.serviceMs, 300)
    assert.equal(router.stats().find(s => s.peer === 'old')?.serviceMs, null)
    // a peer never measured takes the figures of its stage's reporting peers
    assert.ok(Math.abs(router.timeoutMs('fresh', 1, oneWay, both) - (300 + both)) < 1)
    assert.equal(new Router({ peersForStage: () => ['a'] }, opts).timeoutMs('a', 1), 120_000, 'nobody measured: the initial timeout')
  })

  it('the first service sample sets the deviation to half of it, as the round trip\'s does', function () {
    const router = new Router({ peersForStage: () => ['p'] }, { timeoutFloorMs: 0, initialTimeoutMs: 1e9, timeoutK: 4, alpha: 0.25 })
    router.succeeded('p', 1, 1000, 200)
    assert.equal(router.timeoutMs('p', 1, 10, 20), 200 + 4 * 100 + 20)
    router.succeeded('p', 1, 1000, 600)
    // dev = 0.75 * 100 + 0.25 * |600 - 200|, then ewma = 0.75 * 200 + 0.25 * 600
    assert.equal(router.timeoutMs('p', 1, 10, 20), 300 + 4 * 175 + 20)
  })
})
