// waitFor, the tests' one way to wait: returns the condition's first truthy value, and on timeout
// fails naming what it waited for and the last state it saw. The short deadlines here are the subject.
import assert from 'node:assert/strict'
import { waitFor, WaitTimeoutError } from './wait-helpers.ts'

describe('test helpers: waitFor', () => {
  it('returns the first value other than undefined, null or false (0 and "" count as values)', async () => {
    let n = 0
    assert.equal(await waitFor(() => ++n >= 3 ? `done after ${n}` : undefined, { what: 'three checks', intervalMs: 1 }), 'done after 3')
    assert.equal(await waitFor(() => 0, { what: 'zero' }), 0)
    assert.equal(await waitFor(async () => '', { what: 'empty string' }), '')
  })

  it('times out naming what it waited for and the condition\'s last result', async () => {
    let n = 0
    await assert.rejects(waitFor(() => { n++; return false }, { what: 'a thing that never happens', timeoutMs: 60, intervalMs: 5 }), (err: Error) => {
      assert.ok(err instanceof WaitTimeoutError)
      assert.match(err.message, /^timed out after 60 ms \(\d+ checks\) waiting for a thing that never happens; last observed: false$/)
      return true
    })
    assert.ok(n >= 2, `polled ${n} times`)
  })

  it('reports the state function\'s view, or the last error, on timeout', async () => {
    let peers = 0
    await assert.rejects(waitFor(() => ++peers >= 1000, { what: '1000 peers', timeoutMs: 40, intervalMs: 5, state: () => ({ peers }) }),
      /waiting for 1000 peers; last observed: \{ peers: \d+ \}$/)
    await assert.rejects(waitFor(() => { throw new Error('ECONNREFUSED') }, { what: 'the endpoint', timeoutMs: 30, intervalMs: 5 }),
      /waiting for the endpoint; last observed: threw Error: ECONNREFUSED$/)
  })

  it('retries a throwing condition by default; with failOnError its error fails the wait at once', async () => {
    let n = 0
    assert.equal(await waitFor(() => { if (++n < 3) throw new Error('not yet'); return n }, { what: 'a flaky check', intervalMs: 1 }), 3)
    const t0 = Date.now()
    await assert.rejects(waitFor(() => { throw new Error('node n1 failed') }, { what: 'training', timeoutMs: 10_000, failOnError: true }), /^Error: node n1 failed$/)
    assert.ok(Date.now() - t0 < 1000)
  })

  it('keeps its deadline when one check hangs', async () => {
    const t0 = Date.now()
    await assert.rejects(waitFor(async () => await new Promise<boolean>(() => {}), { what: 'a hung check', timeoutMs: 50 }),
      /waiting for a hung check; last observed: threw Error: the last check was still running at the deadline/)
    assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`)
  })
})
