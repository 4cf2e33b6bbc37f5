// Budgets no peer can exhaust (core/wire/budget.ts, rate-limit.ts) and what a framed stream does
// with them: bytes reserved when a header arrives and released when the frame is read or the stream
// fails, a peer past its share refused with 'reject', a full node with 'ignore', floods blocked,
// frames cut off by a clean close dropped at once, slow-loris streams failed by the idle limit.
// Unit: fake clocks and a fake stream, no sockets.
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import { verdictOf } from '../core/errors.ts'
import {
  defaultBudgetOptions, encodeFrame, FrameDecoder, FramedStream, NodeBudgetError, PeerBlockedError, PeerBudgetError,
  PeerRateLimiter, RateLimitError, StreamIdleError, TokenBucket, TruncatedFrameError, WireBudget, type FrameInit
} from '../core/wire/index.ts'
import type { Stream } from '@libp2p/interface'

const MiB = 1024 * 1024
const RUN = '00112233445566778899aabbccddeeff'

function fakeClock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000_000
  return { now: () => t, advance: (ms) => { t += ms } }
}

/** Just enough of a libp2p v3 stream for FramedStream: events in, sends recorded. */
class FakeStream extends EventTarget {
  id = 'fake'
  protocol = '/test/1'
  status: string = 'open'
  writeStatus: string = 'writable'
  readonly sent: Uint8Array[] = []
  abortedWith: Error | undefined
  send (b: Uint8Array): boolean { this.sent.push(b); return true }
  async onDrain (): Promise<void> {}
  async close (): Promise<void> { this.writeStatus = 'closed' }
  abort (err: Error): void {
    if (this.status !== 'open') return
    this.abortedWith = err
    this.status = 'aborted'
    this.writeStatus = 'closed'
    this.dispatchEvent(Object.assign(new Event('close'), { error: err }))
  }

  push (data: Uint8Array): void { this.dispatchEvent(Object.assign(new Event('message'), { data })) }
  /** The peer closes its end cleanly. */
  endRemote (): void { this.dispatchEvent(new Event('end')) }
}

function frame (payloadBytes: number, kind: FrameInit['kind'] = 'request'): Uint8Array {
  return encodeFrame({ kind, runId: RUN }, new Uint8Array(payloadBytes))
}

function wrap (budget: WireBudget, peer = 'peerA', extra: { idleMs?: number } = {}): { s: FakeStream, fs: FramedStream } {
  const s = new FakeStream()
  const fs = new FramedStream(s as unknown as Stream, { runId: RUN, budget, peer, flowControl: 'none', window: 8, ...extra })
  return { s, fs }
}

describe('wire: budgets and rate limits', function () {
  it('a token bucket starts full, refills at its rate and never beyond its burst', function () {
    const c = fakeClock()
    const b = new TokenBucket(10, 5, c.now)
    for (let i = 0; i < 5; i++) assert.equal(b.take(1), true)
    assert.equal(b.take(1), false)
    c.advance(250)
    assert.equal(b.take(2), true)
    assert.equal(b.take(1), false)
    c.advance(60_000)
    assert.equal(b.available(), 5)
  })

  it('a flooding peer is refused, then blocked after maxViolations, for doubling periods; others are untouched', function () {
    const c = fakeClock()
    const r = new PeerRateLimiter({ framesPerSec: 10, frameBurst: 10, maxViolations: 3, blockMs: 1000, maxBlockMs: 3000 }, c.now)
    for (let i = 0; i < 10; i++) assert.equal(r.take('flood', 100), null)
    assert.equal(r.take('flood', 100), 'frames')
    assert.equal(r.take('honest', 100), null)
    assert.equal(r.blockedFor('flood'), 0)
    r.take('flood', 1); r.take('flood', 1)
    assert.equal(r.blockedFor('flood'), 1000)
    c.advance(1000)
    assert.equal(r.blockedFor('flood'), 0)
    // the bucket refilled meanwhile: 10 pass, then 3 violations
    for (let i = 0; i < 13; i++) r.take('flood', 1)
    assert.equal(r.blockedFor('flood'), 2000, 'the second block is twice as long')
    c.advance(2000)
    for (let i = 0; i < 13; i++) r.take('flood', 1)
    assert.equal(r.blockedFor('flood'), 3000, 'capped at maxBlockMs')
    assert.equal(r.blockedFor('honest'), 0)
  })

  it('bytes per second are limited too; a frame larger than the whole burst is charged the burst', function () {
    const c = fakeClock()
    const r = new PeerRateLimiter({ bytesPerSec: 1000, byteBurst: 1000 }, c.now)
    assert.equal(r.take('p', 5000), null)
    assert.equal(r.take('p', 1), 'bytes')
    c.advance(1000)
    assert.equal(r.take('p', 1000), null)
  })

  it('defaults are sized from the machine memory: node 1/4 (64 MiB .. 1 GiB), peer 1/4 of that (>= one 64 MiB frame)', function () {
    assert.deepEqual([defaultBudgetOptions(32 * 1024 * MiB).nodeBytes, defaultBudgetOptions(32 * 1024 * MiB).peerBytes], [1024 * MiB, 256 * MiB])
    assert.deepEqual([defaultBudgetOptions(1024 * MiB).nodeBytes, defaultBudgetOptions(1024 * MiB).peerBytes], [256 * MiB, 64 * MiB])
    assert.equal(defaultBudgetOptions(64 * MiB).nodeBytes, 64 * MiB)
    const b = new WireBudget({ nodeBytes: 400 })
    assert.equal(b.options.peerBytes, 100, 'a given node budget scales the peer share')
    assert.throws(() => new WireBudget({ peerStreams: 0 }), /budget.peerStreams/)
  })

  it('bytes: a peer past its share is rejected, a full node ignored, releases are idempotent', function () {
    const b = new WireBudget({ nodeBytes: 1000, peerBytes: 600, rate: { framesPerSec: 1e6, bytesPerSec: 1e9 } })
    const a1 = b.admitFrame('a', 400)
    assert.throws(() => b.admitFrame('a', 201), (e: unknown) => e instanceof PeerBudgetError && verdictOf(e) === 'reject')
    const c1 = b.admitFrame('c', 600)
    assert.throws(() => b.admitFrame('d', 1), (e: unknown) => e instanceof NodeBudgetError && verdictOf(e) === 'ignore')
    a1.release(); a1.release()
    assert.equal(b.status().bytes, 600)
    b.admitFrame('d', 400).release()
    c1.release()
    assert.deepEqual({ ...b.status(), refused: undefined }, { bytes: 0, nodeBytes: 1000, peakBytes: 1000, streams: 0, nodeStreams: 1024, refused: undefined })
    assert.deepEqual(b.status().refused, { ERR_WIRE_PEER_BUDGET: 1, ERR_WIRE_NODE_BUSY: 1 })
  })

  it('streams: per-peer and node-wide counts; a blocked flooder cannot open streams at all', function () {
    const c = fakeClock()
    const b = new WireBudget({ nodeStreams: 3, peerStreams: 2, rate: { framesPerSec: 1, frameBurst: 1, maxViolations: 1, blockMs: 5000 } }, c.now)
    const s1 = b.openStream('a'); b.openStream('a')
    assert.throws(() => b.openStream('a'), (e: unknown) => e instanceof PeerBudgetError && e.resource === 'streams')
    b.openStream('c')
    assert.throws(() => b.openStream('d'), (e: unknown) => e instanceof NodeBudgetError && e.resource === 'streams')
    s1.release()
    const d1 = b.openStream('d')
    b.admitFrame('f', 0)
    assert.throws(() => b.admitFrame('f', 0), RateLimitError)
    d1.release()
    assert.throws(() => b.openStream('f'), (e: unknown) => e instanceof PeerBlockedError && verdictOf(e) === 'ignore')
    c.advance(5000)
    b.openStream('f')
    assert.equal(b.status().streams, 3)
  })

  it('a peer past its share again and again is blocked like a flooder', function () {
    const c = fakeClock()
    const b = new WireBudget({ nodeBytes: 1000, peerBytes: 100, rate: { maxViolations: 3, blockMs: 1000 } }, c.now)
    b.admitFrame('bloat', 100)
    for (let i = 0; i < 3; i++) assert.throws(() => b.admitFrame('bloat', 50), PeerBudgetError)
    assert.throws(() => b.openStream('bloat'), PeerBlockedError)
    assert.equal(b.rates.blockedFor('other'), 0)
  })

  it('the decoder asks before allocating a payload, and drops a partial frame when the input ends', function () {
    const seen: number[] = []
    const refuse = new FrameDecoder(undefined, h => { seen.push(h.payloadLength); throw new PeerBudgetError('bytes', h.payloadLength, 0, 10) })
    const bytes = frame(5000)
    assert.throws(() => refuse.push(bytes.subarray(0, 200)), PeerBudgetError)
    assert.deepEqual(seen, [5000])
    assert.equal(refuse.partialBytes, 0, 'no payload buffer was allocated')
    const d = new FrameDecoder()
    d.push(bytes.subarray(0, bytes.byteLength - 10))
    assert.equal(d.partialBytes, 5000)
    assert.throws(() => d.end(), TruncatedFrameError)
    assert.equal(d.partialBytes, 0)
  })

  it('a framed stream holds a frame\'s bytes from its header until it is read', async function () {
    const budget = new WireBudget({ nodeBytes: 10_000, peerBytes: 10_000 })
    const { s, fs } = wrap(budget)
    const f = frame(3000)
    s.push(f.subarray(0, 100))
    assert.equal(budget.status().bytes, 3000, 'reserved at the header, before the payload arrived')
    s.push(f.subarray(100))
    s.push(frame(2000))
    assert.equal(budget.status().bytes, 5000, 'queued frames stay on the budget')
    assert.equal((await fs.read())?.payload.byteLength, 3000)
    assert.equal(budget.status().bytes, 2000)
    assert.equal((await fs.read())?.payload.byteLength, 2000)
    assert.equal(budget.status().bytes, 0)
  })

  it('a header past the peer\'s share fails the stream (error frame, abort) and returns its bytes', async function () {
    const budget = new WireBudget({ nodeBytes: 10_000, peerBytes: 4000 })
    const { s, fs } = wrap(budget)
    s.push(frame(3000))
    s.push(frame(3000).subarray(0, 120))
    assert.ok(fs.error instanceof PeerBudgetError)
    assert.ok(s.abortedWith instanceof PeerBudgetError)
    assert.ok(s.sent.length > 0, 'the peer was told with an error frame')
    assert.equal(budget.status().bytes, 0, 'the stream is closed: nothing stays reserved')
    assert.equal((await fs.read())?.payload.byteLength, 3000, 'a frame received before the failure is still delivered')
    await assert.rejects(fs.read(), PeerBudgetError)
  })

  it('a frame cut off by a clean close is aborted at once and its memory released', async function () {
    const budget = new WireBudget({ nodeBytes: 100 * MiB, peerBytes: 100 * MiB })
    const { s, fs } = wrap(budget)
    const f = frame(8 * MiB)
    s.push(f.subarray(0, 7 * MiB))
    assert.equal(budget.status().bytes, 8 * MiB)
    const reading = fs.read()
    s.endRemote()
    await assert.rejects(reading, TruncatedFrameError)
    assert.ok(s.abortedWith instanceof TruncatedFrameError, 'the stream is aborted, not left half open')
    assert.equal(budget.status().bytes, 0)
  })

  it('the idle limit fails a stream whose frame stops half way (slow loris), not one at rest', async function () {
    const budget = new WireBudget({ nodeBytes: 10 * MiB })
    const rest = wrap(budget, 'rest', { idleMs: 30 })
    const loris = wrap(budget, 'loris', { idleMs: 30 })
    const f = frame(4096)
    loris.s.push(f.subarray(0, 2000))
    await assert.rejects(loris.fs.read({ signal: AbortSignal.timeout(10_000) }), StreamIdleError)
    assert.ok(loris.s.abortedWith instanceof StreamIdleError)
    assert.equal(budget.status().bytes, 0)
    await new Promise(resolve => setTimeout(resolve, 100))
    assert.equal(rest.fs.error, null)
    rest.s.push(frame(10))
    assert.equal((await rest.fs.read())?.payload.byteLength, 10)
  })

  it('a flood of frames on one stream is refused with a rejecting RateLimitError', function () {
    const budget = new WireBudget({ rate: { framesPerSec: 5, frameBurst: 5 } })
    const { s, fs } = wrap(budget, 'flooder', {})
    for (let i = 0; i < 8; i++) s.push(frame(1))
    assert.ok(fs.error instanceof RateLimitError)
    assert.equal(verdictOf(fs.error), 'reject')
  })
})
