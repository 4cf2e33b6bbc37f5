// Transfer header and frame codec: random round trips, incremental decoding in random chunkings,
// and every class of malformed input giving its typed error (never a crash, never a wrong header).
import assert from 'node:assert/strict'
import { NonFiniteError, verdictOf } from '../core/errors.ts'
import {
  BadMagicError, ChecksumError, DTYPE_BYTES, FrameDecoder, FrameKinds, FrameTooLargeError, InvalidFrameInitError,
  MIN_HEADER_BYTES, PREAMBLE_BYTES, ShapeMismatchError, TrailingBytesError, TruncatedFrameError, UnsupportedVersionError,
  WireDTypes, WireError, WireFormatError, WireOptionError, assertFinitePayload, crc32, crc32Js, decodeFrame, decodeHeader, encodeFrame,
  encodeHeader, float32Bytes, float32View
} from '../core/wire/index.ts'
import { prng, randomBytes } from './wire-helpers.ts'
import type { Frame, FrameInit, FrameKind, WireDType } from '../core/wire/index.ts'

const RUN = '0123456789abcdef0123456789abcdef'
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function randomFrame (rand: () => number): { init: FrameInit, payload: Uint8Array } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]
  const int = (n: number): number => Math.floor(rand() * n)
  const kind = pick(Object.keys(FrameKinds) as FrameKind[])
  const runId = Array.from(randomBytes(rand, 16), b => b.toString(16).padStart(2, '0')).join('')
  const microbatchId = (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32))
  const route = Array.from({ length: int(5) }, () => '12D3KooW' + Array.from({ length: 44 }, () => pick(B58.split(''))).join(''))
  if (kind === 'credit') return { init: { kind, runId, route, metadata: { frames: 1 + int(1000) } }, payload: new Uint8Array(0) }
  if (kind === 'error') return { init: { kind, runId, metadata: { code: 'ERR_X', message: 'bad ' + int(100) } }, payload: new Uint8Array(0) }
  const dtype = pick(Object.keys(WireDTypes) as WireDType[])
  const rank = int(5)
  const shape = Array.from({ length: rank }, () => int(6))
  const elements = shape.reduce((a, b) => a * b, 1)
  const raw = rand() < 0.6
  const payload = randomBytes(rand, raw ? elements * DTYPE_BYTES[dtype] : int(300))
  const metadata = rand() < 0.5 ? { step: int(1000), note: 'x'.repeat(int(20)), nested: { a: [1, 2, int(9)] } } : undefined
  const partCount = 1 + int(4)
  return {
    init: {
      kind, runId, microbatchId, stage: int(65536), codecId: raw ? 0 : 1 + int(65535), dtype, shape, route,
      partIndex: int(partCount), partCount, ...(metadata != null ? { metadata } : {})
    },
    payload
  }
}

function assertMatches (frame: Frame, init: FrameInit, payload: Uint8Array): void {
  const h = frame.header
  assert.equal(h.kind, init.kind)
  assert.equal(h.runId, init.runId)
  assert.equal(h.microbatchId, BigInt(init.microbatchId ?? 0))
  assert.equal(h.stage, init.stage ?? 0)
  assert.equal(h.codecId, init.codecId ?? 0)
  assert.equal(h.dtype, init.dtype ?? 'u8')
  assert.deepEqual(h.shape, init.shape ?? [payload.byteLength / DTYPE_BYTES[init.dtype ?? 'u8']])
  assert.deepEqual(h.route, init.route ?? [])
  assert.equal(h.partIndex, init.partIndex ?? 0)
  assert.equal(h.partCount, init.partCount ?? 1)
  assert.deepEqual(h.metadata, init.metadata)
  assert.equal(h.payloadLength, payload.byteLength)
  assert.deepEqual(frame.payload, payload)
  assert.equal(frame.payload.byteOffset, 0, 'payload is a fresh aligned buffer')
}

/** Recomputes the header CRC after a deliberate field edit, so the field check itself is reached. */
function reseal (frameBytes: Uint8Array): Uint8Array {
  const dv = new DataView(frameBytes.buffer, frameBytes.byteOffset)
  const headerLength = dv.getUint32(8, true)
  dv.setUint32(headerLength - 4, crc32(frameBytes.subarray(0, headerLength - 4)), true)
  return frameBytes
}

function f32Frame (values: number[]): Uint8Array {
  const data = Float32Array.from(values)
  return encodeFrame({ kind: 'activation', runId: RUN, dtype: 'f32', shape: [data.length] }, float32Bytes(data))
}

describe('wire: checksum', () => {
  it('CRC-32 matches the standard check value and the portable implementation, also chunked', () => {
    assert.equal(crc32(new TextEncoder().encode('123456789')), 0xCBF43926)
    assert.equal(crc32Js(new TextEncoder().encode('123456789')), 0xCBF43926)
    const rand = prng(7)
    for (const n of [0, 1, 7, 8, 9, 1000, 65537]) {
      const b = randomBytes(rand, n)
      assert.equal(crc32(b), crc32Js(b))
      const cut = Math.floor(n / 3)
      assert.equal(crc32(b.subarray(cut), crc32(b.subarray(0, cut))), crc32(b))
      assert.equal(crc32Js(b.subarray(cut), crc32Js(b.subarray(0, cut))), crc32(b))
    }
  })
})

describe('wire: header and frames', () => {
  it('round-trips 500 random valid frames', () => {
    const rand = prng(1)
    for (let i = 0; i < 500; i++) {
      const { init, payload } = randomFrame(rand)
      const bytes = encodeFrame(init, payload)
      assertMatches(decodeFrame(bytes), init, payload)
    }
  })

  it('FrameDecoder yields the same frames for any chunking of a concatenated stream', () => {
    const rand = prng(2)
    const frames = Array.from({ length: 60 }, () => randomFrame(rand))
    const all = frames.map(f => encodeFrame(f.init, f.payload))
    const stream = new Uint8Array(all.reduce((n, b) => n + b.byteLength, 0))
    let o = 0
    for (const b of all) { stream.set(b, o); o += b.byteLength }
    for (const maxChunk of [1, 3, 17, 100, 5000, stream.byteLength]) {
      const dec = new FrameDecoder()
      const out: Frame[] = []
      for (let i = 0; i < stream.byteLength;) {
        const n = Math.min(1 + Math.floor(rand() * maxChunk), stream.byteLength - i)
        // Copy into an offset buffer: the decoder must not depend on chunk alignment or retain chunks.
        const chunk = new Uint8Array(n + 1).subarray(1)
        chunk.set(stream.subarray(i, i + n))
        out.push(...dec.push(chunk))
        chunk.fill(0xee)
        i += n
      }
      dec.end()
      assert.equal(out.length, frames.length)
      out.forEach((f, k) => { assertMatches(f, frames[k].init, frames[k].payload) })
    }
  })

  it('every single-byte mutation and short burst of a header gives a typed WireError', () => {
    const rand = prng(3)
    let checked = 0
    for (let i = 0; i < 16; i++) {
      const { init, payload } = randomFrame(rand)
      const good = encodeFrame(init, payload)
      const headerLength = new DataView(good.buffer).getUint32(8, true)
      // Every position, every one of 8 single-bit flips plus a random byte: CRC-32 catches them all.
      for (let pos = 0; pos < headerLength; pos++) {
        for (const x of [1, 2, 4, 8, 16, 32, 64, 128, 1 + Math.floor(rand() * 255)]) {
          const bad = good.slice()
          bad[pos] ^= x
          assert.throws(() => decodeFrame(bad), WireError, `mutation at ${pos} ^ ${x} decoded silently`)
          checked++
        }
      }
      for (let k = 0; k < 50; k++) {
        const bad = good.slice()
        const pos = Math.floor(rand() * (headerLength - 3))
        for (let j = 0; j < 4; j++) bad[pos + j] ^= 1 + Math.floor(rand() * 255)
        assert.throws(() => decodeFrame(bad), WireError)
      }
    }
    assert.ok(checked > 10_000)
  })

  it('a mutated payload byte gives ChecksumError(payload)', () => {
    const rand = prng(4)
    const payload = randomBytes(rand, 4096)
    const good = encodeFrame({ kind: 'activation', runId: RUN, dtype: 'f32', shape: [1024] }, payload)
    for (let k = 0; k < 100; k++) {
      const bad = good.slice()
      bad[good.byteLength - 1 - Math.floor(rand() * 4096)] ^= 1 + Math.floor(rand() * 255)
      assert.throws(() => decodeFrame(bad), (e: unknown) => e instanceof ChecksumError && e.what === 'payload')
      const dec = new FrameDecoder()
      assert.throws(() => dec.push(bad), ChecksumError)
      // A failed decoder stays failed: frame boundaries are lost.
      assert.throws(() => dec.push(good), ChecksumError)
    }
  })

  it('truncated input at every length gives TruncatedFrameError; trailing bytes TrailingBytesError', () => {
    const good = encodeFrame({ kind: 'parameter-shard', runId: RUN, dtype: 'f32', shape: [2, 3], route: ['QmPeer'], metadata: { a: 1 } }, new Uint8Array(24).fill(3))
    for (let n = 0; n < good.byteLength; n++) {
      assert.throws(() => decodeFrame(good.subarray(0, n)), TruncatedFrameError, `prefix ${n}`)
      const dec = new FrameDecoder()
      assert.deepEqual(dec.push(good.subarray(0, n)), [])
      if (n === 0) dec.end()
      else assert.throws(() => { dec.end() }, TruncatedFrameError)
    }
    const extra = new Uint8Array(good.byteLength + 1)
    extra.set(good)
    assert.throws(() => decodeFrame(extra), TrailingBytesError)
    const headerLength = new DataView(good.buffer).getUint32(8, true)
    const headerPlus = good.slice(0, headerLength + 1)
    assert.throws(() => decodeHeader(headerPlus), TrailingBytesError)
  })

  it('magic, version and length bounds are checked from the 16-byte preamble alone', () => {
    const good = encodeFrame({ kind: 'activation', runId: RUN, dtype: 'f32', shape: [4] }, new Uint8Array(16))
    const magic = good.slice(); magic[0] = 0x00
    assert.throws(() => decodeFrame(magic), BadMagicError)
    const version = good.slice(); version[4] = 9
    assert.throws(() => decodeFrame(version), UnsupportedVersionError)
    // A preamble that declares a 3 GiB payload is refused on its 16th byte, before any allocation.
    const huge = good.slice(0, PREAMBLE_BYTES)
    new DataView(huge.buffer).setUint32(12, 3 * 2 ** 30, true)
    const dec = new FrameDecoder({ maxPayloadBytes: 1024 * 1024 })
    assert.throws(() => dec.push(huge), (e: unknown) => e instanceof FrameTooLargeError && e.what === 'payload' && e.length === 3 * 2 ** 30)
    const bigHeader = good.slice(0, PREAMBLE_BYTES)
    new DataView(bigHeader.buffer).setUint32(8, 1_000_000, true)
    assert.throws(() => new FrameDecoder().push(bigHeader), (e: unknown) => e instanceof FrameTooLargeError && e.what === 'header')
    const tinyHeader = good.slice(0, PREAMBLE_BYTES)
    new DataView(tinyHeader.buffer).setUint32(8, MIN_HEADER_BYTES - 1, true)
    assert.throws(() => new FrameDecoder().push(tinyHeader), WireFormatError)
  })

  it('field values outside their domain give WireFormatError or ShapeMismatchError (header CRC resealed)', () => {
    const base = (): Uint8Array => encodeFrame({ kind: 'activation', runId: RUN, dtype: 'f32', shape: [2, 2], route: ['QmA'] }, new Uint8Array(16))
    const edit = (f: (dv: DataView, b: Uint8Array) => void): Uint8Array => {
      const b = base()
      f(new DataView(b.buffer), b)
      return reseal(b)
    }
    const field = (name: string) => (e: unknown) => e instanceof WireFormatError && e.field === name
    assert.throws(() => decodeFrame(edit(dv => { dv.setUint8(5, 99) })), field('kind'))
    assert.throws(() => decodeFrame(edit(dv => { dv.setUint16(6, 0x8000, true) })), field('flags'))
    assert.throws(() => decodeFrame(edit(dv => { dv.setUint8(44, 77) })), field('dtype'))
    assert.throws(() => decodeFrame(edit(dv => { dv.setUint8(45, 200) })), field('rank'))
    assert.throws(() => decodeFrame(edit(dv => { dv.setUint8(47, 1) })), field('reserved'))
    assert.throws(() => decodeFrame(edit(dv => { dv.setUint32(48, 5, true) })), field('partIndex'))
    assert.throws(() => decodeFrame(edit(dv => { dv.setUint32(60, 3, true) })), ShapeMismatchError)
    assert.throws(() => decodeFrame(edit((dv, b) => { b[68] = 3; b[69] = '-'.charCodeAt(0) })), field('route[0]'))
    assert.throws(() => decodeFrame(edit((dv, b) => { b[68] = 0 })), field('route[0]'))
    // Rank 3 with only 2 dims' bytes: the fields run into the CRC.
    assert.throws(() => decodeFrame(edit(dv => { dv.setUint8(45, 3) })), WireError)
    // Control frames: their metadata is part of the format.
    const credit = encodeFrame({ kind: 'credit', runId: RUN, metadata: { frames: 5 } }, new Uint8Array(0))
    const badCredit = credit.slice()
    const text = new TextDecoder().decode(badCredit)
    const at = text.indexOf('"frames":5')
    badCredit[at + 9] = '0'.charCodeAt(0)
    assert.throws(() => decodeFrame(reseal(badCredit)), field('metadata.frames'))
    const badJson = credit.slice()
    badJson[at] = '{'.charCodeAt(0)
    assert.throws(() => decodeFrame(reseal(badJson)), field('metadata'))
    assert.throws(() => decodeFrame(edit(dv => { dv.setUint8(45, 9) })), WireError)
  })

  it('limits are parameters: a header over maxRank/maxRouteHops/maxMetadataBytes is refused', () => {
    const init: FrameInit = { kind: 'request', runId: RUN, shape: [1, 1, 1, 1], route: ['Qa', 'Qb', 'Qc'], metadata: { s: 'x'.repeat(100) } }
    const bytes = encodeFrame(init, new Uint8Array(1))
    assert.throws(() => decodeFrame(bytes, { maxRank: 3 }), (e: unknown) => e instanceof WireFormatError && e.field === 'rank')
    assert.throws(() => decodeFrame(bytes, { maxRouteHops: 2 }), (e: unknown) => e instanceof WireFormatError && e.field === 'route')
    assert.throws(() => decodeFrame(bytes, { maxMetadataBytes: 50 }), (e: unknown) => e instanceof WireFormatError && e.field === 'metadata')
    assert.throws(() => decodeFrame(bytes, { maxHeaderBytes: 100 }), FrameTooLargeError)
    assert.throws(() => decodeFrame(encodeFrame({ kind: 'request', runId: RUN, shape: [1000, 1000] , dtype: 'u8', codecId: 3 }, new Uint8Array(1)), { maxElements: 999_999 }), ShapeMismatchError)
    assert.doesNotThrow(() => decodeFrame(bytes))
    for (const bad of [{ maxPayloadBytes: 0 }, { maxRank: 1.5 }, { maxHeaderBytes: 10 }, { maxRouteHops: 256 }]) {
      assert.throws(() => new FrameDecoder(bad), WireOptionError, JSON.stringify(bad))
    }
  })

  it('the encoder refuses frames the decoder would refuse (InvalidFrameInitError)', () => {
    const p = new Uint8Array(8)
    const bad: Array<Partial<FrameInit>> = [
      { runId: 'XYZ' }, { stage: 70000 }, { codecId: -1 }, { dtype: 'f64' as WireDType }, { shape: [3] , dtype: 'f32' },
      { microbatchId: -1 }, { microbatchId: 1n << 64n }, { route: ['has space'] }, { partIndex: 2, partCount: 2 },
      { kind: 'nope' as FrameKind }, { kind: 'credit', metadata: { frames: 0 } }, { kind: 'error', metadata: {} }
    ]
    for (const b of bad) {
      assert.throws(() => encodeHeader({ kind: 'activation', runId: RUN, ...b }, p), InvalidFrameInitError, JSON.stringify(b, (_k, v) => typeof v === 'bigint' ? String(v) : v))
    }
    assert.throws(() => encodeHeader({ kind: 'activation', runId: RUN }, new Uint8Array(2048), { maxPayloadBytes: 1024 }), InvalidFrameInitError)
  })
})

describe('wire: finite checks and views', () => {
  it('accepts finite f32 and rejects NaN, +Inf and -Inf with NonFiniteError', () => {
    const ok = decodeFrame(f32Frame([0, -1.5, 3e38, -3e38, 1e-45]))
    assert.doesNotThrow(() => { assertFinitePayload(ok) })
    assert.deepEqual(Array.from(float32View(ok)), Array.from(Float32Array.from([0, -1.5, 3e38, -3e38, 1e-45])))
    for (const v of [NaN, Infinity, -Infinity]) {
      const frame = decodeFrame(f32Frame([1, 2, v, 4]))
      assert.throws(() => { assertFinitePayload(frame) }, (e: unknown) => e instanceof NonFiniteError && /element 2/.test(e.message))
    }
  })

  it('checks f16 and bf16 bit patterns', () => {
    const mk = (dtype: 'f16' | 'bf16', bits: number[]): Frame => decodeFrame(encodeFrame({ kind: 'activation-grad', runId: RUN, dtype, shape: [bits.length] }, new Uint8Array(Uint16Array.from(bits).buffer)))
    assert.doesNotThrow(() => { assertFinitePayload(mk('f16', [0x3c00, 0x7bff, 0xfbff])) })
    assert.throws(() => { assertFinitePayload(mk('f16', [0x3c00, 0x7c00])) }, NonFiniteError)
    assert.throws(() => { assertFinitePayload(mk('f16', [0xfe01])) }, NonFiniteError)
    assert.doesNotThrow(() => { assertFinitePayload(mk('bf16', [0x3f80, 0x7f7f])) })
    assert.throws(() => { assertFinitePayload(mk('bf16', [0x7fc0])) }, NonFiniteError)
  })

  it('maps errors to peer verdicts', () => {
    assert.equal(verdictOf(new ChecksumError('payload', 1, 2)), 'reject')
    assert.equal(verdictOf(new NonFiniteError('x')), 'reject')
    assert.equal(verdictOf(new TruncatedFrameError('x')), 'ignore')
    assert.equal(verdictOf(new InvalidFrameInitError('x', 'y')), 'none')
    assert.equal(verdictOf(new Error('plain')), 'none')
  })
})
