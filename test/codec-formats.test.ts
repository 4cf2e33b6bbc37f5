// Built-in codec formats beyond the compliance suite: header layout, exact rounding (ties to even)
// against an independent float64 reference, overflow at float32's top, and payload checks on
// crafted messages whose header checksum is valid (so only the decoder's own checks can catch them).
import assert from 'node:assert/strict'
import { crc32 } from '../core/wire/checksum.ts'
import { rng } from '../core/testing/gradcheck.ts'
import { gaussian } from '../core/testing/codec-data.ts'
import type { Codec } from '../core/contracts/codec.ts'
import {
  bf16Codec, builtinCodecs, builtinHeaderLength, CodecIds, fp16Codec, fp32Codec, int4BlockCodec, int8BlockCodec, topkCodec
} from '../plugins/compression/index.ts'

const isCodecError = (err: unknown): boolean => (err as { code?: unknown })?.code === 'ERR_CODEC'

/** Applies `edit` to a copy of the message, then rewrites the header CRC so the header check passes. */
function forge (bytes: Uint8Array, edit: (b: Uint8Array, dv: DataView, h: number) => void): Uint8Array {
  const b = bytes.slice()
  const dv = new DataView(b.buffer)
  const h = builtinHeaderLength(b)
  edit(b, dv, h)
  dv.setUint32(h - 4, crc32(b.subarray(0, h - 4)), true)
  return b
}

function rejects (codec: Codec, bytes: Uint8Array, what: string): void {
  assert.throws(() => codec.decode(bytes), isCodecError, what)
}

/** Independent reference: round x * 2^k to a binary format with `mant` mantissa bits and min normal exponent emin, ties to even, then scale back. */
function refRound (x: number, k: number, mant: number, emin: number): number {
  const v = x * 2 ** k
  const a = Math.abs(v)
  if (a === 0) return x
  const e = Math.max(Math.floor(Math.log2(a)) + (2 ** (Math.floor(Math.log2(a)) + 1) <= a ? 1 : 0) - (2 ** Math.floor(Math.log2(a)) > a ? 1 : 0), emin)
  const ulp = 2 ** (e - mant)
  const t = a / ulp
  const f = Math.floor(t)
  const r = t - f > 0.5 || (t - f === 0.5 && f % 2 === 1) ? f + 1 : f
  return Math.sign(v) * r * ulp / 2 ** k
}

describe('codec formats', function () {
  it('builtins: the documented ids and names, all distinct', function () {
    const got = builtinCodecs().map(c => [c.name, c.id])
    assert.deepEqual(got, Object.entries(CodecIds))
  })

  it('header layout: id, version, rank, count, dims, params, CRC-32, then the payload', function () {
    const x = Float32Array.of(1, 2, 3, 4, 5, 6)
    const b = fp32Codec().encode(x, [2, 3], 'parameter')
    const dv = new DataView(b.buffer)
    assert.equal(b.length, 12 + 8 + 24)
    assert.equal(dv.getUint16(0, true), 1)
    assert.equal(b[2], 1)
    assert.equal(b[3], 2)
    assert.equal(dv.getUint32(4, true), 6)
    assert.equal(dv.getUint32(8, true), 2)
    assert.equal(dv.getUint32(12, true), 3)
    assert.equal(dv.getUint32(16, true), crc32(b.subarray(0, 16)))
    assert.deepEqual(new Float32Array(b.buffer, 20, 6), x)
    const i8 = int8BlockCodec({ blockSize: 4 }).encode(x, [6], 'activation')
    assert.equal(new DataView(i8.buffer).getUint32(12, true), 4, 'block size param')
    assert.equal(i8.length, 12 + 4 + 4 + 2 * 4 + 6)
  })

  it('fp16 and bf16 round ties to even', function () {
    const f = fp16Codec()
    // max in binade 0 -> scale 2^14: fp16 steps of 2^-10 near 1.
    assert.deepEqual([...f.decode(f.encode(Float32Array.of(1, 1 + 2 ** -11, 1 + 3 * 2 ** -11), [3], 'activation')).data],
      [1, 1, 1 + 2 ** -9])
    const b = bf16Codec()
    assert.deepEqual([...b.decode(b.encode(Float32Array.of(1, 1 + 2 ** -8, 1 + 3 * 2 ** -8), [3], 'activation')).data],
      [1, 1, 1 + 2 ** -6])
  })

  for (const [name, make, mant, emin, top] of [['fp16', fp16Codec, 10, -14, 14], ['bf16', bf16Codec, 7, -126, 0]] as const) {
    it(`${name} matches a float64 reference rounding bit for bit (normal, subnormal and denormal inputs)`, function () {
      const codec = make()
      const r = rng(9)
      for (const spread of [1, 8, 40, 300]) {
        const x = new Float32Array(20_000)
        for (let i = 0; i < x.length; i++) x[i] = (r() < 0.5 ? -1 : 1) * 2 ** (-spread * r()) * (1 + r())
        x[7] = 2 ** -149 * 3 // a denormal
        let max = 0
        for (const v of x) max = Math.max(max, Math.abs(v))
        const k = top - Math.floor(Math.log2(max))
        const y = codec.decode(codec.encode(x, [x.length], 'activation')).data
        for (let i = 0; i < x.length; i++) {
          const want = Math.fround(refRound(x[i], k, mant, emin))
          if (!Object.is(y[i], want)) assert.fail(`spread ${spread}, element ${i}: ${x[i]} decoded to ${y[i]}, reference ${want}`)
        }
      }
    })
  }

  it('fp16/bf16 keep float32 max finite (rounding up would overflow to Inf)', function () {
    const x = Float32Array.of(3.4028234663852886e38, -3.4028234663852886e38, 1)
    for (const c of [fp16Codec(), bf16Codec()]) {
      const y = c.decode(c.encode(x, [3], 'activation')).data
      assert.ok(Number.isFinite(y[0]) && Number.isFinite(y[1]), `${c.name}: ${y[0]}`)
      assert.ok(Math.abs(y[0] - x[0]) <= c.errorBound.relMaxAbs * x[0])
    }
  })

  it('int8/int4: symmetric levels, exact absmax, zero blocks, odd tails', function () {
    const i8 = int8BlockCodec({ blockSize: 4 })
    const x = Float32Array.of(-2, 1, 0.5, 2, 0, 0, 0, 0, 1e-40, -3e-41)
    const y = i8.decode(i8.encode(x, [10], 'activation')).data
    assert.equal(y[0], -2)
    assert.equal(y[3], 2)
    assert.deepEqual([...y.subarray(4, 8)], [0, 0, 0, 0])
    assert.equal(y[8], Math.fround(1e-40), 'a block absmax decodes exactly, denormal or not')
    const i4 = int4BlockCodec({ blockSize: 4 })
    const z = i4.decode(i4.encode(x.subarray(0, 9), [9], 'activation')).data
    assert.deepEqual([...z.subarray(0, 8)], [-2, Math.fround(2 / 7 * 4), Math.fround(2 / 7 * 2), 2, 0, 0, 0, 0])
    assert.equal(z[8], Math.fround(1e-40))
  })

  describe('crafted payloads with a valid header checksum are rejected', function () {
    const n = 100
    const x = new Float32Array(n).map((_, i) => Math.sin(i) * 3)

    it('fp32: non-finite payload value', function () {
      const c = fp32Codec()
      rejects(c, forge(c.encode(x, [n], 'parameter'), (b, dv, h) => { dv.setFloat32(h + 8, NaN, true) }), 'NaN')
      rejects(c, forge(c.encode(x, [n], 'parameter'), (b, dv, h) => { dv.setFloat32(h, -Infinity, true) }), '-Inf')
    })

    it('fp16/bf16: scale exponent out of range, bit patterns beyond the scaled max', function () {
      for (const c of [fp16Codec(), bf16Codec()]) {
        const e = c.encode(x, [n], 'activation')
        rejects(c, forge(e, (b, dv) => { dv.setInt32(12, 1000, true) }), `${c.name}: k`)
        rejects(c, forge(e, (b, dv) => { dv.setInt32(12, -1000, true) }), `${c.name}: k`)
        rejects(c, forge(e, (b, dv, h) => { dv.setUint16(h + 2, 0x7c00, true) }), `${c.name}: Inf pattern`)
        rejects(c, forge(e, (b, dv, h) => { dv.setUint16(h + 2, 0xffff, true) }), `${c.name}: NaN pattern`)
      }
      // k at its minimum (max|x| in f32's top binade): the top pattern would decode to Inf.
      const f = fp16Codec()
      const big = f.encode(Float32Array.of(3e38, 1), [2], 'activation')
      rejects(f, forge(big, (b, dv, h) => { dv.setUint16(h, 0x7800, true) }), 'overflowing pattern')
    })

    it('int8/int4: bad block size, non-finite or negative absmax, never-written codes', function () {
      const i8 = int8BlockCodec({ blockSize: 16 })
      const e8 = i8.encode(x, [n], 'activation')
      rejects(i8, forge(e8, (b, dv) => { dv.setUint32(12, 0, true) }), 'block 0')
      rejects(i8, forge(e8, (b, dv) => { dv.setUint32(12, 17, true) }), 'block 17 (length mismatch)')
      rejects(i8, forge(e8, (b, dv, h) => { dv.setFloat32(h + 4, NaN, true) }), 'NaN absmax')
      rejects(i8, forge(e8, (b, dv, h) => { dv.setFloat32(h + 4, Infinity, true) }), 'Inf absmax')
      rejects(i8, forge(e8, (b, dv, h) => { dv.setFloat32(h + 4, -1, true) }), 'negative absmax')
      rejects(i8, forge(e8, (b, dv, h) => { b[h + 4 * 7 + 50] = 0x80 }), 'code -128')
      const i4 = int4BlockCodec({ blockSize: 16 })
      const e4 = i4.encode(x.subarray(0, 99), [99], 'activation')
      rejects(i4, forge(e4, (b, dv) => { dv.setUint32(12, 15, true) }), 'odd block size')
      rejects(i4, forge(e4, (b, dv, h) => { b[h + 4 * 7 + 3] &= 0xf0 }), 'low nibble 0')
      rejects(i4, forge(e4, (b, dv, h) => { b[h + 4 * 7 + 3] &= 0x0f }), 'high nibble 0')
      rejects(i4, forge(e4, (b, dv, h) => { b[b.length - 1] |= 0x80 }), 'odd tail pad nibble')
    })

    it('topk: k > n, wrong index width, unsorted / duplicate / out-of-range indices, padding, values', function () {
      const t = topkCodec({ fraction: 0.1 }) // n = 100 -> k = 10, 2-byte indices, padding 0
      const e = t.encode(x, [n], 'parameter-grad')
      const h = builtinHeaderLength(e)
      assert.equal(e.length, h + 20 + 40)
      rejects(t, forge(e, (b, dv) => { dv.setUint32(12, 101, true) }), 'k > n')
      rejects(t, forge(e, (b) => { b[16] = 4 }), 'width 4 for n <= 65536')
      rejects(t, forge(e, (b) => { b[17] = 1 }), 'reserved byte')
      rejects(t, forge(e, (b, dv) => { dv.setUint16(18, CodecIds.fp16, true) }), 'values codec id')
      rejects(t, forge(e, (b, dv, h) => { dv.setUint16(h + 2, dv.getUint16(h, true), true) }), 'duplicate index')
      rejects(t, forge(e, (b, dv, h) => { dv.setUint16(h + 18, 100, true) }), 'index out of range')
      rejects(t, forge(e, (b, dv, h) => { const a = dv.getUint16(h, true); dv.setUint16(h, dv.getUint16(h + 2, true), true); dv.setUint16(h + 2, a, true) }), 'unsorted')
      rejects(t, forge(e, (b, dv, h) => { dv.setFloat32(h + 20, NaN, true) }), 'NaN value')
      const t9 = topkCodec({ fraction: 0.09 })
      const e9 = t9.encode(x, [n], 'parameter-grad') // k = 9: 18 index bytes + 2 padding
      rejects(t9, forge(e9, (b, dv, h) => { b[h + 18] = 1 }), 'padding')
    })

    it('a tiny message claiming a huge tensor is refused before allocating it', function () {
      const t = topkCodec()
      const e = t.encode(new Float32Array(0), [0], 'parameter-grad')
      rejects(t, forge(e, (b, dv) => { dv.setUint32(4, 2 ** 31, true); dv.setUint32(8, 2 ** 31, true) }), '2^31 elements')
      const small = topkCodec({ maxElements: 1000 })
      const e2 = topkCodec().encode(new Float32Array(2000), [2000], 'parameter-grad')
      rejects(small, e2, 'over maxElements')
    })
  })

  it('ratios on large tensors: fp16/bf16 2x, int8 ~3.76x, int4 ~7.1x, topk 32x, topk.fp16 ~42.7x, topk.int8-block ~50.6x', function () {
    const r = rng(3)
    const x = new Float32Array(1 << 20).map(() => gaussian(r))
    const got = Object.fromEntries(builtinCodecs().map(c => [c.name, x.byteLength / c.encode(x, [x.length], 'activation').length]))
    const want: Record<string, number> = { fp32: 1, fp16: 2, bf16: 2, 'int8-block': 256 / 68, 'int4-block': 256 / 36, topk: 32, 'topk.fp16': 256 / 6, 'topk.int8-block': 4 / (4 + 4 / (256 / 68)) * 64 }
    for (const [name, w] of Object.entries(want)) assert.ok(Math.abs(got[name] - w) / w < 0.002, `${name}: ${got[name]} vs ${w}`)
  })
})
