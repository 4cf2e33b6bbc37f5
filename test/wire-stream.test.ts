// Framed streams over real libp2p nodes (TCP + noise + yamux on 127.0.0.1): credit flow control,
// large payloads, and every kind of bad input from a peer giving a typed error on the receiver, a
// report to the sender, and a handler and connection that keep working.
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import { NonFiniteError, verdictOf } from '../core/errors.ts'
import {
  BadMagicError, ChecksumError, CreditViolationError, FrameTooLargeError, FramedStream, PeerResetError, RemoteError,
  RunMismatchError, StreamEndedError, TruncatedFrameError, WireError, WireTimeoutError, assertFinitePayload, crc32,
  encodeFrame, float32Bytes, float32View, handleFramed, openFramed, requestFrame
} from '../core/wire/index.ts'
import { createTestNode, prng, randomBytes, stopNodes } from './wire-helpers.ts'
import type { FramedHandler, FramedHandlerOptions } from '../core/wire/index.ts'
import type { Libp2p } from '@libp2p/interface'

const RUN = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'
const OTHER_RUN = 'ffffffffffffffffffffffffffffffff'
/** Bounds every wait so a broken transport fails the test instead of hanging it. */
const deadline = (): AbortSignal => AbortSignal.timeout(20_000)

/** Collects the errors handler runs end with (the penalty hook). */
function errorSink (): { onError: (err: Error, peer: string) => void, next: () => Promise<{ err: Error, peer: string }> } {
  const seen: Array<{ err: Error, peer: string }> = []
  let wake: (() => void) | null = null
  return {
    onError: (err, peer) => { seen.push({ err, peer }); wake?.() },
    next: async () => {
      const signal = deadline()
      while (seen.length === 0) {
        await new Promise<void>((resolve, reject) => {
          wake = resolve
          signal.addEventListener('abort', () => { reject(new Error('no handler error within the deadline')) }, { once: true })
        })
      }
      return seen.shift() as { err: Error, peer: string }
    }
  }
}

describe('wire: framed streams over libp2p', function () {
  let a: Libp2p, b: Libp2p, c: Libp2p
  let n = 0
  const proto = (): string => `/layerswarm/test-wire-${++n}/1.0.0`
  const handle = async (node: Libp2p, protocol: string, h: FramedHandler, opts: Partial<FramedHandlerOptions> = {}): Promise<void> => {
    await handleFramed(node, protocol, h, { runId: RUN, ...opts })
  }
  const open = async (protocol: string, opts: Partial<FramedHandlerOptions> = {}, to: Libp2p = b): Promise<FramedStream> =>
    openFramed(a, to.getMultiaddrs()[0], protocol, { runId: RUN, signal: deadline(), ...opts })

  before(async () => {
    [a, b, c] = await Promise.all([createTestNode(), createTestNode(), createTestNode()])
    await a.dial(b.getMultiaddrs()[0])
  })
  after(async () => {
    await stopNodes(a, b, c)
  })

  it('moves 300 frames in order; the sender is never more than `window` frames ahead of the reader', async () => {
    const protocol = proto()
    const window = 4
    let sender: FramedStream | undefined
    let maxAhead = 0
    await handle(b, protocol, async (fs) => {
      let count = 0
      let sum = 0
      for (;;) {
        // A slow reader: without credit the sender would run far ahead of it.
        for (let k = 0; k < 3; k++) await new Promise(resolve => setImmediate(resolve))
        const f = await fs.read({ signal: deadline() })
        if (f == null) break
        maxAhead = Math.max(maxAhead, (sender as FramedStream).stats.framesSent - fs.stats.framesRead)
        assert.equal(f.header.microbatchId, BigInt(count))
        const v = float32View(f)
        assert.equal(v[0], count)
        sum += v[v.length - 1]
        count++
      }
      assert.ok(fs.stats.maxQueued <= window)
      assert.ok(fs.stats.framesReceived <= fs.stats.creditGranted)
      await fs.send({ kind: 'ack', metadata: { count, sum } })
    }, { window })
    sender = await open(protocol, { window })
    const data = new Float32Array(4096)
    let expectedSum = 0
    for (let i = 0; i < 300; i++) {
      data.fill(i)
      data[data.length - 1] = i * 0.5
      expectedSum += i * 0.5
      await sender.send({ kind: 'activation', microbatchId: i, stage: 1, dtype: 'f32', shape: [64, 64] }, float32Bytes(data.slice()), { signal: deadline() })
      assert.ok(sender.stats.framesSent <= sender.stats.creditReceived, 'sent past the credit received')
    }
    await sender.closeWrite()
    const ack = await sender.expect({ signal: deadline() })
    assert.deepEqual(ack.header.metadata, { count: 300, sum: expectedSum })
    assert.ok(maxAhead <= window, `sender ran ${maxAhead} frames ahead with a window of ${window}`)
    assert.ok(maxAhead >= 1)
  })

  it('both ends send and read at once with a window of 1 without deadlock', async () => {
    const protocol = proto()
    const N = 100
    const pump = async (fs: FramedStream): Promise<number[]> => {
      const got: number[] = []
      const sending = (async () => {
        for (let i = 0; i < N; i++) await fs.send({ kind: 'activation-grad', microbatchId: i, dtype: 'u8' }, new Uint8Array(1000).fill(i), { signal: deadline() })
      })()
      for (let i = 0; i < N; i++) got.push(Number((await fs.expect({ signal: deadline() })).header.microbatchId))
      await sending
      return got
    }
    let handlerDone!: (got: number[]) => void
    const handlerGot = new Promise<number[]>(resolve => { handlerDone = resolve })
    await handle(b, protocol, async (fs) => { handlerDone(await pump(fs)) }, { window: 1 })
    const fs = await open(protocol, { window: 1 })
    const got = await pump(fs)
    await fs.close()
    const expected = Array.from({ length: N }, (_, i) => i)
    assert.deepEqual(got, expected)
    assert.deepEqual(await handlerGot, expected)
  })

  it('moves a 32 MiB float32 tensor in one frame, intact and aligned', async () => {
    const protocol = proto()
    await handle(b, protocol, async (fs) => {
      const f = await fs.expect({ signal: deadline() })
      assertFinitePayload(f)
      const v = float32View(f)
      assert.equal(f.payload.byteOffset, 0)
      await fs.send({ kind: 'ack', metadata: { crc: crc32(f.payload), n: v.length, last: v[v.length - 1] } })
    })
    const data = new Float32Array(8 * 1024 * 1024)
    for (let i = 0; i < data.length; i++) data[i] = (i % 1000) * 0.25
    const bytes = float32Bytes(data)
    const res = await requestFrame(a, b.getMultiaddrs()[0], protocol, { kind: 'parameter-shard', dtype: 'f32', shape: [2048, 4096] }, bytes, { runId: RUN, timeoutMs: 60_000 })
    assert.deepEqual(res.header.metadata, { crc: crc32(bytes), n: data.length, last: data[data.length - 1] })
  })

  it('refuses an oversized frame with FrameTooLargeError, tells the sender, and the connection serves the next stream', async () => {
    const protocol = proto()
    const sink = errorSink()
    await handle(b, protocol, async (fs) => {
      const f = await fs.expect({ signal: deadline() })
      await fs.send({ kind: 'ack', metadata: { bytes: f.payload.byteLength } })
    }, { limits: { maxPayloadBytes: 1024 * 1024 }, onError: sink.onError })
    const connBefore = a.getConnections(b.peerId).map(x => x.id)
    assert.equal(connBefore.length, 1)

    const fs = await open(protocol)
    const sent = fs.send({ kind: 'activation', dtype: 'u8' }, new Uint8Array(8 * 1024 * 1024), { signal: deadline() })
      .then(async () => await fs.read({ signal: deadline() }))
    await assert.rejects(sent, (e: unknown) => e instanceof RemoteError && e.remoteCode === 'ERR_WIRE_TOO_LARGE')
    const { err, peer } = await sink.next()
    assert.ok(err instanceof FrameTooLargeError && err.what === 'payload' && err.limit === 1024 * 1024)
    assert.equal(peer, a.peerId.toString())
    assert.equal(verdictOf(err), 'reject')

    const fs2 = await open(protocol)
    await fs2.send({ kind: 'activation', dtype: 'u8' }, new Uint8Array(1000), { signal: deadline() })
    const ack = await fs2.expect({ signal: deadline() })
    assert.deepEqual(ack.header.metadata, { bytes: 1000 })
    await fs2.close()
    assert.deepEqual(a.getConnections(b.peerId).map(x => x.id), connBefore, 'the same connection carried the next stream')
  })

  it('detects a corrupted payload checksum', async () => {
    const protocol = proto()
    const sink = errorSink()
    await handle(b, protocol, async (fs) => { await fs.expect({ signal: deadline() }) }, { onError: sink.onError })
    const fs = await open(protocol)
    const frame = encodeFrame({ kind: 'activation', runId: RUN, dtype: 'f32', shape: [256] }, float32Bytes(new Float32Array(256).fill(1)))
    frame[frame.byteLength - 3] ^= 0x40
    fs.stream.send(frame)
    await assert.rejects(fs.read({ signal: deadline() }), (e: unknown) => e instanceof RemoteError && e.remoteCode === 'ERR_WIRE_CHECKSUM')
    const { err } = await sink.next()
    assert.ok(err instanceof ChecksumError && err.what === 'payload')
  })

  it('a peer that closes or resets mid-frame gives TruncatedFrameError, without hanging', async () => {
    const protocol = proto()
    const sink = errorSink()
    await handle(b, protocol, async (fs) => {
      await fs.send({ kind: 'ack' })
      await fs.expect({ signal: deadline() })
    }, { onError: sink.onError })
    const frame = encodeFrame({ kind: 'activation', runId: RUN, dtype: 'f32', shape: [1024] }, new Uint8Array(4096))
    for (const how of ['close', 'reset'] as const) {
      const fs = await open(protocol)
      await fs.expect({ signal: deadline() }) // the handler is running
      fs.stream.send(frame.subarray(0, 1000))
      if (how === 'close') await fs.stream.close()
      else fs.stream.abort(new Error('sender crashed'))
      const { err } = await sink.next()
      assert.ok(err instanceof TruncatedFrameError, `${how}: got ${String(err)}`)
      assert.equal(verdictOf(err), 'ignore')
    }
    // A clean close at a frame boundary is an end, not an error; expect() makes it StreamEndedError.
    const fs = await open(protocol)
    await fs.expect({ signal: deadline() })
    await fs.close()
    const { err } = await sink.next()
    assert.ok(err instanceof StreamEndedError)
  })

  it('random garbage gives a typed error, and the handler serves the next valid stream', async () => {
    const protocol = proto()
    const sink = errorSink()
    await handle(b, protocol, async (fs) => {
      const f = await fs.expect({ signal: deadline() })
      await fs.send({ kind: 'response', metadata: { len: f.payload.byteLength } })
    }, { onError: sink.onError })
    const rand = prng(11)
    const garbage = randomBytes(rand, 4096)
    garbage[0] = 0x00
    const fs = await open(protocol)
    fs.stream.send(garbage)
    await assert.rejects(fs.read({ signal: deadline() }), (e: unknown) => e instanceof RemoteError && e.remoteCode === 'ERR_WIRE_MAGIC')
    assert.ok((await sink.next()).err instanceof BadMagicError)

    // Garbage behind a valid magic and version: still a typed error (bounds or header checksum).
    const fs2 = await open(protocol)
    const tricky = randomBytes(rand, 4096)
    tricky.set([0x4c, 0x53, 0x57, 0x46, 1], 0)
    fs2.stream.send(tricky)
    await assert.rejects(fs2.read({ signal: deadline() }), RemoteError)
    assert.ok((await sink.next()).err instanceof WireError)

    const res = await requestFrame(a, b.getMultiaddrs()[0], protocol, { kind: 'request' }, new Uint8Array(77), { runId: RUN, timeoutMs: 20_000 })
    assert.deepEqual(res.header.metadata, { len: 77 })
  })

  it('a NaN payload is rejected by the finite check and reported to the sender', async () => {
    const protocol = proto()
    const sink = errorSink()
    await handle(b, protocol, async (fs) => {
      const f = await fs.expect({ signal: deadline() })
      assertFinitePayload(f)
      await fs.send({ kind: 'ack' })
    }, { onError: sink.onError })
    const data = new Float32Array(1000).fill(0.5)
    data[123] = NaN
    await assert.rejects(
      requestFrame(a, b.getMultiaddrs()[0], protocol, { kind: 'activation', dtype: 'f32', shape: [10, 100] }, float32Bytes(data), { runId: RUN, timeoutMs: 20_000 }),
      (e: unknown) => e instanceof RemoteError && e.remoteCode === 'ERR_NON_FINITE')
    const { err } = await sink.next()
    assert.ok(err instanceof NonFiniteError && /element 123/.test(err.message))
    assert.equal(verdictOf(err), 'reject')
  })

  it('a peer that sends past its credit gets CreditViolationError', async () => {
    const protocol = proto()
    const sink = errorSink()
    // The handler reads nothing; it grants window=2 frames and then waits for the stream to end.
    await handle(b, protocol, async (fs) => {
      await new Promise(resolve => { fs.stream.addEventListener('close', resolve, { once: true }) })
    }, { window: 2, onError: sink.onError })
    // A sender that ignores credit: 5 valid frames written straight to the stream.
    const fs = await open(protocol)
    for (let i = 0; i < 5; i++) fs.stream.send(encodeFrame({ kind: 'activation', runId: RUN, microbatchId: i }, new Uint8Array(100)))
    const { err } = await sink.next()
    assert.ok(err instanceof CreditViolationError, String(err))
    assert.match(err.message, /data frame 3 with only 2 frames of credit/)
    assert.equal(verdictOf(err), 'reject')
    await assert.rejects(fs.read({ signal: deadline() }), (e: unknown) => e instanceof RemoteError && e.remoteCode === 'ERR_WIRE_CREDIT')
  })

  it('a sender without credit waits, and gives up with WireTimeoutError or AbortError through its signal', async () => {
    const protocol = proto()
    let release!: () => void
    const released = new Promise<void>(resolve => { release = resolve })
    await handle(b, protocol, async (fs) => {
      await released // read nothing until told
      for (let i = 0; i < 2; i++) await fs.expect({ signal: deadline() })
    }, { window: 1 })
    const fs = await open(protocol, { window: 1 })
    await fs.send({ kind: 'activation' }, new Uint8Array(10)) // the implicit initial credit
    await assert.rejects(fs.send({ kind: 'activation' }, new Uint8Array(10), { signal: AbortSignal.timeout(100) }), WireTimeoutError)
    const ac = new AbortController()
    const waiting = fs.send({ kind: 'activation' }, new Uint8Array(10), { signal: ac.signal })
    ac.abort()
    await assert.rejects(waiting, (e: unknown) => e instanceof Error && (e as { code?: string }).code === 'ERR_ABORTED')
    assert.equal(fs.stats.framesSent, 1)
    // Given up waits take no credit: once the reader reads, the next send goes through.
    release()
    await fs.send({ kind: 'activation' }, new Uint8Array(10), { signal: deadline() })
    assert.equal(fs.stats.framesSent, 2)
    await fs.close()
  })

  it('request/response: an error frame is RemoteError, no answer StreamEndedError, a silent peer WireTimeoutError', async () => {
    const protocol = proto()
    await handle(b, protocol, async (fs, _conn, signal) => {
      const req = await fs.expect({ signal })
      const op = (req.header.metadata as { op: string }).op
      if (op === 'fail') throw new RunMismatchError(RUN, OTHER_RUN)
      if (op === 'bug') throw new TypeError('secret internal detail')
      if (op === 'silent') await fs.read({ signal }) // until the requester gives up and resets
      // op 'none': return without answering
    })
    const ask = async (op: string, timeoutMs = 20_000): Promise<unknown> =>
      requestFrame(a, b.getMultiaddrs()[0], protocol, { kind: 'request', metadata: { op } }, undefined, { runId: RUN, timeoutMs })
    await assert.rejects(ask('fail'), (e: unknown) => e instanceof RemoteError && e.remoteCode === 'ERR_WIRE_RUN')
    await assert.rejects(ask('bug'), (e: unknown) => e instanceof RemoteError && e.remoteCode === 'ERR_INTERNAL' && !e.message.includes('secret'))
    await assert.rejects(ask('none'), StreamEndedError)
    await assert.rejects(ask('silent', 300), WireTimeoutError)
  })

  it('frames of another run are refused with RunMismatchError', async () => {
    const protocol = proto()
    const sink = errorSink()
    await handle(b, protocol, async (fs) => { await fs.expect({ signal: deadline() }) }, { onError: sink.onError })
    const fs = await open(protocol)
    fs.stream.send(encodeFrame({ kind: 'activation', runId: OTHER_RUN }, new Uint8Array(4)))
    await assert.rejects(fs.read({ signal: deadline() }), (e: unknown) => e instanceof RemoteError && e.remoteCode === 'ERR_WIRE_RUN')
    const { err } = await sink.next()
    assert.ok(err instanceof RunMismatchError && err.got === OTHER_RUN)
  })

  it('three nodes: an activation forwarded A -> B -> C carries its route', async () => {
    const protocol = proto()
    await handle(c, protocol, async (fs, conn) => {
      const f = await fs.expect({ signal: deadline() })
      assert.equal(f.header.route.at(-1), conn.remotePeer.toString())
      await fs.send({ kind: 'ack', metadata: { route: f.header.route, stage: f.header.stage, first: float32View(f)[0] } })
    })
    await handle(b, protocol, async (fs, conn) => {
      const f = await fs.expect({ signal: deadline() })
      const v = float32View(f).map(x => x * 2)
      const route = [...f.header.route, b.peerId.toString()]
      assert.equal(f.header.route.at(-1), conn.remotePeer.toString())
      const res = await requestFrame(b, c.getMultiaddrs()[0], protocol,
        { kind: 'activation', microbatchId: f.header.microbatchId, stage: f.header.stage + 1, dtype: 'f32', shape: f.header.shape, route },
        float32Bytes(v), { runId: RUN, timeoutMs: 20_000 })
      await fs.send({ kind: 'ack', metadata: res.header.metadata })
    })
    const res = await requestFrame(a, b.getMultiaddrs()[0], protocol,
      { kind: 'activation', microbatchId: 7n, stage: 0, dtype: 'f32', shape: [2, 2], route: [a.peerId.toString()] },
      float32Bytes(Float32Array.of(1.5, 2, 3, 4)), { runId: RUN, timeoutMs: 20_000 })
    assert.deepEqual(res.header.metadata, { route: [a.peerId.toString(), b.peerId.toString()], stage: 1, first: 3 })
  })

  it('PeerResetError when the peer resets at a frame boundary', async () => {
    const protocol = proto()
    await handle(b, protocol, async (fs) => {
      await fs.expect({ signal: deadline() })
      await fs.send({ kind: 'ack' })
      fs.stream.abort(new Error('gone'))
    })
    const fs = await open(protocol)
    await fs.send({ kind: 'request' })
    await fs.expect({ signal: deadline() })
    await assert.rejects(fs.read({ signal: deadline() }), PeerResetError)
  })
})
