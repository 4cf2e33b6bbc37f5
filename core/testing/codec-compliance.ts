// Codec compliance suite. Registers mocha `describe`/`it` blocks that check one Codec against the
// contract (core/contracts/codec.ts):
//   - metadata: wire id in 1..65535, a manifest-compatible name, a finite bound and ratio;
//   - round trip within the declared bound (per block for blockwise codecs, else per tensor) on
//     random data (normal, uniform, log-normal, activation-like) and adversarial data (outliers,
//     zeros, constants, denormals, alternating signs, float32 extremes), at odd sizes;
//   - exact shapes (rank 0..8, zero-sized dims), the declared ratio on a large tensor;
//   - NaN/Inf: rejected on encode with NonFiniteError (default), or propagated if so declared;
//   - bad bytes never crash and never decode into a wrongly shaped or non-finite tensor: every
//     truncation, trailing bytes, header byte flips, payload flips, random garbage give CodecError
//     (code ERR_CODEC) or a well-formed tensor (header flips: the original tensor, bit for bit);
//   - determinism: same input, same bytes; inputs untouched; decoded data owns its memory.
//
// Usage, in a mocha test file of a codec plugin:
//   import { codecCompliance } from 'layerswarm/testing'
//   codecCompliance('my-codec', () => myCodec, { headerLength: bytes => 16 })
//
// Bound semantics: |x_i - y_i| <= relMaxAbs * max|x| over the block (or tensor) + 2^-149. The
// additive 2^-149 (one f32 denormal step) is the output grid's own resolution: any codec whose
// levels are not multiples of it must round there.
import assert from 'node:assert/strict'
import type { Codec, DecodedTensor, TensorRole } from '../contracts/codec.ts'
import { rng } from './gradcheck.ts'
import { CODEC_DATA_CASES, gaussian } from './codec-data.ts'

export interface CodecComplianceOptions {
  /** PRNG seed (default 4242). */
  seed?: number
  /** Elements per block when the bound is per block; default: the codec's own `blockSize` property if it has one, else the whole tensor. */
  blockSize?: number
  /** NaN/Inf policy the codec declares (default 'reject'). */
  nonFinite?: 'reject' | 'propagate'
  /** Length of the header at the start of an encoded message (byte flips there must be detected); default 8. */
  headerLength?: (bytes: Uint8Array) => number
  /** Elements of the tensor the nominal ratio is checked on (default 2^20). */
  ratioElements?: number
  /** Allowed shortfall of the measured ratio below nominalRatio (default 0.01 = 1%). */
  ratioTolerance?: number
}

const ROLES: readonly TensorRole[] = ['activation', 'activation-grad', 'parameter', 'parameter-grad']
const SIZES = [1, 2, 3, 31, 63, 64, 65, 127, 255, 257, 1000, 4099]
const MIN_DENORMAL = 2 ** -149
const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/

const codeOf = (err: unknown): unknown => (err as { code?: unknown } | null)?.code

/** Runs fn; passes if it throws a CodecError (code ERR_CODEC), returns the tensor if it decodes, fails on any other throw. */
function decodeOrCodecError (codec: Codec, bytes: Uint8Array, what: string): DecodedTensor | undefined {
  try {
    return codec.decode(bytes)
  } catch (err) {
    if (codeOf(err) === 'ERR_CODEC') return undefined
    assert.fail(`${what}: expected CodecError (code ERR_CODEC) or a tensor, got ${(err as Error)?.name}: ${(err as Error)?.message}`)
  }
}

function assertWellFormed (t: DecodedTensor, what: string): void {
  assert.ok(t.data instanceof Float32Array, `${what}: data is not a Float32Array`)
  assert.ok(Array.isArray(t.shape), `${what}: shape is not an array`)
  let n = 1
  for (const d of t.shape) {
    assert.ok(Number.isInteger(d) && d >= 0, `${what}: bad dim ${d}`)
    n *= d
  }
  assert.equal(t.data.length, n, `${what}: ${t.data.length} elements for shape [${t.shape.join(', ')}]`)
  for (let i = 0; i < t.data.length; i++) {
    if (!Number.isFinite(t.data[i])) assert.fail(`${what}: decoded a non-finite value ${t.data[i]} at ${i}`)
  }
}

function sameTensor (a: DecodedTensor, b: DecodedTensor, what: string): void {
  assert.deepEqual([...a.shape], [...b.shape], `${what}: shape differs`)
  assert.equal(a.data.length, b.data.length, `${what}: length differs`)
  const ua = new Uint32Array(a.data.buffer, a.data.byteOffset, a.data.length)
  const ub = new Uint32Array(b.data.buffer, b.data.byteOffset, b.data.length)
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} is ${b.data[i]}, expected ${a.data[i]}`)
}

/** Asserts |x - y| <= bound * blockMax + 2^-149 elementwise, reporting the worst element. */
export function assertWithinBound (x: Float32Array, y: Float32Array, relMaxAbs: number, blockSize: number, what: string): void {
  assert.equal(y.length, x.length, `${what}: decoded ${y.length} elements, expected ${x.length}`)
  const B = blockSize > 0 ? blockSize : Math.max(1, x.length)
  let worst = -1
  let worstRatio = 0
  for (let from = 0; from < x.length; from += B) {
    const to = Math.min(x.length, from + B)
    let m = 0
    for (let i = from; i < to; i++) m = Math.max(m, Math.abs(x[i]))
    const tol = relMaxAbs * m + MIN_DENORMAL
    for (let i = from; i < to; i++) {
      const err = Math.abs(x[i] - y[i])
      if (!(err <= tol)) { // also NaN
        const ratio = err / tol
        if (worst < 0 || !(ratio <= worstRatio)) { worst = i; worstRatio = ratio }
      }
    }
  }
  if (worst >= 0) {
    assert.fail(`${what}: element ${worst} decoded to ${y[worst]}, input ${x[worst]}: error ${Math.abs(x[worst] - y[worst])} is ` +
      `${worstRatio.toPrecision(4)}x the allowed bound (relMaxAbs ${relMaxAbs})`)
  }
}

/** Registers the compliance suite for one codec under `describe('<name> codec compliance')`. */
export function codecCompliance (name: string, factory: () => Codec, opts: CodecComplianceOptions = {}): void {
  const seed = opts.seed ?? 4242
  const policy = opts.nonFinite ?? 'reject'
  const ratioElements = opts.ratioElements ?? 2 ** 20
  const ratioTolerance = opts.ratioTolerance ?? 0.01

  describe(`${name} codec compliance`, function () {
    let codec: Codec
    let blockSize = 0
    const headerLength = (bytes: Uint8Array): number => Math.min(bytes.length, opts.headerLength?.(bytes) ?? 8)
    const normal = (n: number, s: number): Float32Array => {
      const r = rng(s)
      const a = new Float32Array(n)
      for (let i = 0; i < n; i++) a[i] = gaussian(r)
      return a
    }

    before(function () {
      codec = factory()
      const own = (codec as { blockSize?: unknown }).blockSize
      blockSize = opts.blockSize ?? (typeof own === 'number' ? own : 0)
    })

    it('declares a wire id, a name, an error bound and a ratio', function () {
      assert.ok(Number.isInteger(codec.id) && codec.id >= 1 && codec.id <= 0xffff, `id ${codec.id} not in 1..65535 (0 is the raw wire format)`)
      assert.match(codec.name, NAME_RE, 'name must be usable in a run manifest')
      assert.ok(Number.isFinite(codec.errorBound.relMaxAbs) && codec.errorBound.relMaxAbs >= 0, 'relMaxAbs must be finite and >= 0')
      assert.ok(Number.isFinite(codec.nominalRatio) && codec.nominalRatio > 0, 'nominalRatio must be finite and > 0')
    })

    describe('round trip within the declared bound', function () {
      CODEC_DATA_CASES.forEach((c, ci) => {
        it(c.name, function () {
          for (const n of SIZES) {
            const x = c.make(n, rng(seed + 97 * ci + n))
            const t = codec.decode(codec.encode(x, [n], 'activation'))
            assert.deepEqual([...t.shape], [n])
            assertWithinBound(x, t.data, codec.errorBound.relMaxAbs, blockSize, `${c.name}, n=${n}`)
          }
        })
      })

      it('every tensor role', function () {
        const x = normal(1000, seed)
        for (const role of ROLES) {
          const t = codec.decode(codec.encode(x, [10, 100], role))
          assert.deepEqual([...t.shape], [10, 100])
          assertWithinBound(x, t.data, codec.errorBound.relMaxAbs, blockSize, role)
        }
      })
    })

    describe('shapes', function () {
      const shapes: number[][] = [[], [1], [7], [3, 5], [2, 3, 4], [5, 1, 3, 1, 2], [1, 1, 1, 1, 1, 1, 1, 1], [2, 1, 2, 1, 2, 1, 2, 3]]
      it('decodes exact shapes, rank 0 to 8', function () {
        for (const shape of shapes) {
          const n = shape.reduce((a, b) => a * b, 1)
          const x = normal(n, seed + n)
          const t = codec.decode(codec.encode(x, shape, 'activation'))
          assert.deepEqual([...t.shape], shape, `shape [${shape.join(', ')}]`)
          assertWithinBound(x, t.data, codec.errorBound.relMaxAbs, blockSize, `shape [${shape.join(', ')}]`)
        }
      })

      it('handles empty tensors (a zero dim)', function () {
        for (const shape of [[0], [3, 0, 5], [0, 0], [1, 0]]) {
          const t = codec.decode(codec.encode(new Float32Array(0), shape, 'parameter-grad'))
          assert.deepEqual([...t.shape], shape)
          assert.equal(t.data.length, 0)
        }
      })

      it('encodes views into larger buffers (offset, odd length)', function () {
        const big = normal(1001, seed + 5)
        const view = big.subarray(3, 3 + 997)
        const t = codec.decode(codec.encode(view, [997], 'activation'))
        assertWithinBound(view, t.data, codec.errorBound.relMaxAbs, blockSize, 'subarray')
      })

      it('throws ShapeError (ERR_SHAPE) when shape and data disagree', function () {
        const x = normal(12, seed)
        const bad: number[][] = [[13], [3, 5], [-12], [12.5], [2, NaN], [1, 1, 1, 1, 1, 1, 1, 1, 12]]
        for (const shape of bad) {
          assert.throws(() => codec.encode(x, shape, 'activation'), (err: unknown) => codeOf(err) === 'ERR_SHAPE', `shape [${shape.join(', ')}]`)
        }
      })
    })

    it(`meets the declared ratio on a large tensor (within ${ratioTolerance * 100}%)`, function () {
      const x = normal(ratioElements, seed + 11)
      const bytes = codec.encode(x, [ratioElements / 1024, 1024], 'activation')
      const ratio = x.byteLength / bytes.length
      assert.ok(ratio >= codec.nominalRatio * (1 - ratioTolerance), `ratio ${ratio.toFixed(4)} < nominal ${codec.nominalRatio}`)
    })

    describe('NaN and Inf', function () {
      const specials = [NaN, Infinity, -Infinity]
      if (policy === 'reject') {
        it('encode throws NonFiniteError (ERR_NON_FINITE) wherever one appears', function () {
          for (const n of [1, 5, 1000]) {
            for (const at of new Set([0, n >> 1, n - 1])) {
              for (const v of specials) {
                const x = normal(n, seed + at)
                x[at] = v
                assert.throws(() => codec.encode(x, [n], 'activation-grad'), (err: unknown) => codeOf(err) === 'ERR_NON_FINITE', `${v} at ${at} of ${n}`)
              }
            }
          }
        })
      } else {
        it('propagates NaN and signed Inf to the same positions', function () {
          const x = normal(1000, seed)
          x[3] = NaN; x[500] = Infinity; x[999] = -Infinity
          const y = codec.decode(codec.encode(x, [1000], 'activation')).data
          assert.ok(Number.isNaN(y[3]), 'NaN lost')
          assert.equal(y[500], Infinity)
          assert.equal(y[999], -Infinity)
        })
      }
    })

    describe('bad bytes give CodecError, never a crash or a wrong tensor', function () {
      const samples = (): Array<{ what: string, x: Float32Array, shape: number[] }> => [
        { what: '1000 elements [10, 100]', x: normal(1000, seed + 1), shape: [10, 100] },
        { what: 'scalar', x: Float32Array.of(1.5), shape: [] },
        { what: 'empty [4, 0]', x: new Float32Array(0), shape: [4, 0] },
        { what: 'odd 67 [67]', x: normal(67, seed + 2), shape: [67] }
      ]

      it('rejects every truncation and trailing bytes', function () {
        for (const s of samples()) {
          const bytes = codec.encode(s.x, s.shape, 'activation')
          const r = rng(seed + bytes.length)
          const cuts = new Set<number>()
          if (bytes.length <= 8192) for (let i = 0; i < bytes.length; i++) cuts.add(i)
          else for (let i = 0; i < 8192; i++) cuts.add(i < 256 ? i : Math.floor(r() * bytes.length))
          for (const len of cuts) {
            assert.throws(() => codec.decode(bytes.subarray(0, len)), (err: unknown) => codeOf(err) === 'ERR_CODEC', `${s.what}: truncated to ${len} of ${bytes.length}`)
          }
          for (const extra of [1, 3, 4, 64]) {
            const long = new Uint8Array(bytes.length + extra)
            long.set(bytes)
            assert.throws(() => codec.decode(long), (err: unknown) => codeOf(err) === 'ERR_CODEC', `${s.what}: ${extra} trailing bytes`)
          }
        }
      })

      it('detects flipped header bytes (or decodes the same tensor)', function () {
        for (const s of samples()) {
          const bytes = codec.encode(s.x, s.shape, 'activation')
          const good = codec.decode(bytes)
          const h = headerLength(bytes)
          for (let at = 0; at < h; at++) {
            for (const mask of [0x01, 0x10, 0x80, 0xff]) {
              const bad = bytes.slice()
              bad[at] ^= mask
              const t = decodeOrCodecError(codec, bad, `${s.what}: byte ${at} ^ 0x${mask.toString(16)}`)
              if (t !== undefined) sameTensor(good, t, `${s.what}: byte ${at} ^ 0x${mask.toString(16)} decoded silently into a different tensor`)
            }
          }
        }
      })

      it('decodes flipped payload bytes into a well-formed tensor of the same shape, or rejects them', function () {
        for (const s of samples()) {
          const bytes = codec.encode(s.x, s.shape, 'activation')
          const h = headerLength(bytes)
          if (bytes.length <= h) continue
          const r = rng(seed + 3)
          for (let trial = 0; trial < 300; trial++) {
            const bad = bytes.slice()
            const flips = 1 + Math.floor(r() * 4)
            for (let f = 0; f < flips; f++) bad[h + Math.floor(r() * (bytes.length - h))] ^= 1 + Math.floor(r() * 255)
            const t = decodeOrCodecError(codec, bad, `${s.what}: payload trial ${trial}`)
            if (t === undefined) continue
            assertWellFormed(t, `${s.what}: payload trial ${trial}`)
            assert.deepEqual([...t.shape], s.shape, `${s.what}: payload corruption changed the shape`)
          }
        }
      })

      it('rejects random garbage (or decodes it into a well-formed tensor)', function () {
        const r = rng(seed + 7)
        const real = codec.encode(normal(20, seed), [4, 5], 'activation')
        for (let trial = 0; trial < 500; trial++) {
          const len = Math.floor(r() * 160)
          const g = new Uint8Array(len)
          for (let i = 0; i < len; i++) g[i] = Math.floor(r() * 256)
          // Half the trials keep the real header's first bytes so parsing gets further.
          if (trial % 2 === 1) g.set(real.subarray(0, Math.min(len, 1 + Math.floor(r() * 12))))
          const t = decodeOrCodecError(codec, g, `garbage trial ${trial}`)
          if (t !== undefined) assertWellFormed(t, `garbage trial ${trial}`)
        }
        assert.throws(() => codec.decode(new Uint8Array(0)), (err: unknown) => codeOf(err) === 'ERR_CODEC', 'empty input')
      })
    })

    describe('determinism and ownership', function () {
      it('encodes the same input to the same bytes, leaves the input untouched', function () {
        const x = normal(4099, seed + 13)
        const copy = x.slice()
        const a = codec.encode(x, [4099], 'parameter-grad')
        const b = codec.encode(copy.slice(), [4099], 'parameter-grad')
        assert.deepEqual(a, b, 'two encodings of one tensor differ')
        assert.deepEqual(x, copy, 'encode modified its input')
      })

      it('decodes the same bytes to the same tensor, from unaligned buffers too, without modifying them', function () {
        const x = normal(1001, seed + 17)
        const bytes = codec.encode(x, [7, 143], 'activation')
        const keep = bytes.slice()
        const a = codec.decode(bytes)
        assert.deepEqual(bytes, keep, 'decode modified its input')
        for (const shift of [1, 2, 3]) {
          const buf = new Uint8Array(bytes.length + shift)
          buf.set(bytes, shift)
          sameTensor(a, codec.decode(buf.subarray(shift)), `decode at byte offset ${shift}`)
          // Node Buffers from a pooled slab: slice() on them is a view, not a copy.
          const pooled = Buffer.alloc(bytes.length + shift)
          pooled.set(bytes, shift)
          sameTensor(a, codec.decode(pooled.subarray(shift)), `decode of a Buffer at byte offset ${shift}`)
        }
      })

      it('decoded data does not alias the encoded bytes', function () {
        const x = normal(256, seed + 19)
        const bytes = codec.encode(x, [256], 'activation')
        const t = codec.decode(bytes)
        const before = t.data.slice()
        bytes.fill(0xa5)
        assert.deepEqual(t.data, before, 'overwriting the encoded bytes changed the decoded tensor')
      })
    })
  })
}
