// Top-k selection, composition, and error feedback.
import assert from 'node:assert/strict'
import { rng } from '../core/testing/gradcheck.ts'
import { gaussian } from '../core/testing/codec-data.ts'
import { assertWithinBound } from '../core/testing/codec-compliance.ts'
import {
  compose, CodecIds, ErrorFeedback, fp16Codec, fp32Codec, int8BlockCodec, topkCodec
} from '../plugins/compression/index.ts'

const normal = (n: number, seed: number, scale = 1): Float32Array => {
  const r = rng(seed)
  return new Float32Array(n).map(() => gaussian(r) * scale)
}

describe('topk codec', function () {
  it('keeps exactly the k largest |x| (ties to the lower index), values exact, the rest zero', function () {
    const t = topkCodec({ fraction: 0.25 })
    const x = Float32Array.of(0.5, -3, 2, 2, -2, 0.1, 7, -0.2, 2, 0, 1, -1) // k = 3: 7, -3, then the first of the 2s
    const y = t.decode(t.encode(x, [3, 4], 'parameter-grad'))
    assert.deepEqual(y.shape, [3, 4])
    assert.deepEqual([...y.data], [0, -3, 2, 0, 0, 0, 7, 0, 0, 0, 0, 0])
  })

  it('agrees with a sort-based reference on random data, large and small', function () {
    for (const [n, fraction, seed] of [[1000, 0.01, 1], [70_000, 1 / 64, 2], [4099, 0.3, 3], [5, 0.5, 4]] as const) {
      const t = topkCodec({ fraction })
      const x = normal(n, seed)
      x[17 % n] = x[3 % n] // a tie
      const k = t.kFor(n)
      const order = [...x.keys()].sort((a, b) => Math.abs(x[b]) - Math.abs(x[a]) || a - b).slice(0, k)
      const want = new Float32Array(n)
      for (const i of order) want[i] = x[i]
      assert.deepEqual(t.decode(t.encode(x, [n], 'parameter-grad')).data, want, `n=${n}`)
    }
  })

  it('k = ceil(fraction * n), at least 1, at most n; 0 for an empty tensor', function () {
    const t = topkCodec({ fraction: 0.01 })
    assert.deepEqual([0, 1, 99, 100, 101, 1000].map(n => t.kFor(n)), [0, 1, 1, 1, 2, 10])
    assert.equal(topkCodec({ fraction: 1 }).kFor(7), 7)
    assert.throws(() => topkCodec({ fraction: 0 }), RangeError)
    assert.throws(() => topkCodec({ fraction: 1.5 }), RangeError)
  })

  it('uses 4-byte indices above 65536 elements', function () {
    const t = topkCodec({ fraction: 1 / 64 })
    const x = normal(65537, 5)
    const b = t.encode(x, [65537], 'parameter-grad')
    assert.equal(b[16], 4)
    const k = t.kFor(65537)
    assert.equal(b.length, 12 + 4 + 8 + 8 * k)
    assert.deepEqual(t.decode(b).data.filter(v => v !== 0).length, k)
  })

  it('compose: topk values through fp16 / int8-block, ids from the table, kept values within the inner bound', function () {
    const fp16 = fp16Codec()
    const int8 = int8BlockCodec()
    const a = compose(topkCodec(), fp16)
    const b = compose(topkCodec(), int8)
    assert.equal(a.name, 'topk.fp16')
    assert.equal(a.id, CodecIds['topk.fp16'])
    assert.equal(b.id, CodecIds['topk.int8-block'])
    const x = normal(8192, 6)
    const plain = topkCodec().decode(topkCodec().encode(x, [8192], 'parameter-grad')).data
    for (const c of [a, b]) {
      const y = c.decode(c.encode(x, [8192], 'parameter-grad')).data
      for (let i = 0; i < y.length; i++) assert.equal(y[i] === 0, plain[i] === 0, `${c.name}: kept set differs at ${i}`)
    }
    // Kept values of topk.int8-block are the int8 round trip of the kept vector.
    const kept = plain.filter(v => v !== 0)
    const yb = b.decode(b.encode(x, [8192], 'parameter-grad')).data.filter((_, i) => plain[i] !== 0)
    assertWithinBound(kept, yb, int8.errorBound.relMaxAbs, int8.blockSize, 'kept values')
    assert.throws(() => compose(fp32Codec(), int8), TypeError)
    assert.throws(() => compose(topkCodec(), fp32Codec()), /no built-in wire id/)
    assert.equal(compose(topkCodec(), fp32Codec(), { id: 1500 }).name, 'topk.fp32')
    assert.throws(() => (a as ReturnType<typeof topkCodec>).compose(int8), RangeError)
  })

  it('rejects values encoded with another codec than the composite declares', function () {
    const a = compose(topkCodec(), fp16Codec())
    const b = compose(topkCodec(), int8BlockCodec())
    const bytes = b.encode(normal(500, 7), [500], 'parameter-grad')
    bytes[0] = a.id & 0xff // wrong outer id: CRC still guards the header
    assert.throws(() => a.decode(bytes), (e: unknown) => (e as { code?: string }).code === 'ERR_CODEC')
  })
})

describe('error feedback', function () {
  /**
   * Runs `steps` steps of gradients g_t (a fixed direction plus noise). Returns sum(inputs) -
   * sum(decoded) and its max relative to max |sum(inputs)|.
   */
  function drift (encode: (g: Float32Array) => Float32Array, n: number, steps: number): { gap: Float64Array, rel: number } {
    const r = rng(11)
    const mean = normal(n, 12, 0.1)
    const gap = new Float64Array(n)
    const sumIn = new Float64Array(n)
    for (let s = 0; s < steps; s++) {
      const g = new Float32Array(n).map((_, i) => mean[i] + gaussian(r))
      const d = encode(g)
      for (let i = 0; i < n; i++) { sumIn[i] += g[i]; gap[i] += g[i] - d[i] }
    }
    let err = 0
    let scale = 0
    for (let i = 0; i < n; i++) { err = Math.max(err, Math.abs(gap[i])); scale = Math.max(scale, Math.abs(sumIn[i])) }
    return { gap, rel: err / scale }
  }

  for (const make of [() => topkCodec({ fraction: 1 / 32 }), () => compose(topkCodec({ fraction: 1 / 32 }), int8BlockCodec())]) {
    const codec = make()
    it(`${codec.name}: the sum of decoded tensors approaches the sum of inputs (and does not without feedback)`, function () {
      const n = 2048
      const ef = new ErrorFeedback(codec)
      const withEf = (steps: number): { gap: Float64Array, rel: number } => {
        ef.reset()
        return drift(g => codec.decode(ef.encode('w', g, [n], 'parameter-grad')).data, n, steps)
      }
      const short = withEf(50).rel
      const long = withEf(800)
      const without = drift(g => codec.decode(codec.encode(g, [n], 'parameter-grad')).data, n, 800).rel
      assert.ok(long.rel < short, `relative drift should shrink with steps: ${short} -> ${long.rel}`)
      assert.ok(long.rel < 0.1, `relative drift after 800 steps: ${long.rel}`)
      assert.ok(without > 5 * long.rel, `without feedback the drift stays large: ${without} vs ${long.rel}`)
      // The gap is exactly the carried residual (up to float32 rounding of the running sums).
      const res = ef.residual('w') as Float32Array
      for (let i = 0; i < n; i++) assert.ok(Math.abs(res[i] - long.gap[i]) <= 1e-3 * (1 + Math.abs(long.gap[i])), `residual ${res[i]} vs gap ${long.gap[i]} at ${i}`)
    })
  }

  it('keeps one residual per key, resets on a length change, and drops it when encode throws', function () {
    const ef = new ErrorFeedback(topkCodec({ fraction: 0.5 }))
    ef.encode('a', Float32Array.of(1, 2, 3, 4), [4], 'parameter-grad')
    assert.deepEqual([...(ef.residual('a') ?? [])], [1, 2, 0, 0])
    ef.encode('b', Float32Array.of(1, 1), [2], 'parameter-grad')
    assert.deepEqual(ef.keys.sort(), ['a', 'b'])
    // Step 2 of 'a': input + residual = [2, 4, 3, 4] -> keeps 4, 4 (indices 1, 3).
    const y = ef.codec.decode(ef.encode('a', Float32Array.of(1, 2, 3, 4), [4], 'parameter-grad')).data
    assert.deepEqual([...y], [0, 4, 0, 4])
    assert.deepEqual([...(ef.residual('a') ?? [])], [2, 0, 3, 0])
    ef.encode('a', Float32Array.of(1, 1, 1), [3], 'parameter-grad') // new length: fresh residual; k = 2 keeps the first two
    assert.deepEqual([...(ef.residual('a') ?? [])], [0, 0, 1])
    assert.throws(() => ef.encode('a', Float32Array.of(NaN, 1, 1), [3], 'parameter-grad'), (e: unknown) => (e as { code?: string }).code === 'ERR_NON_FINITE')
    assert.equal(ef.residual('a'), undefined)
    ef.reset('b')
    assert.deepEqual(ef.keys, [])
  })
})
