// Backend compliance suite. Registers mocha `describe`/`it` blocks that check a ComputeBackend against
// the float64 references in reference.ts:
//   - every kernel's forward against the reference, on several shapes including odd ones;
//   - every backward against the reference backward, with gradients pre-filled so accumulation (+=)
//     is checked, and the reference backward itself against finite differences;
//   - wrong shapes and dtypes throw ShapeError (code ERR_SHAPE) and leave outputs untouched;
//   - NaN/Inf propagate without throwing, and sumSquares reports them.
//
// Usage, in a mocha test file of a backend plugin:
//   import { backendCompliance } from 'layerswarm/testing'
//   backendCompliance('my-backend', () => createMyBackend())
import assert from 'node:assert/strict'
import type { ComputeBackend, Tensor } from '../contracts/index.ts'
import * as R from './reference.ts'
import { assertClose, f64, numericGrad, plus, randF32, randInts, rng } from './gradcheck.ts'

export interface ComplianceOptions {
  /** Relative tolerance against the float64 reference: |a - r| <= tol * (1 + |r|). Default 1e-4. */
  tolerance?: number
  /** PRNG seed for inputs (default 1234). */
  seed?: number
  /** Skip the larger shapes (for slow backends under development). */
  skipLarge?: boolean
  /**
   * For backends whose matmuls round operands below f32 (e.g. f16 with f32 accumulation): matmul
   * outputs are checked as |a - r| <= matmulTolerance * (1 + sum_k |x_k w_k|), the error bound of a
   * dot product of rounded operands, instead of `tolerance`. Default: none (matmuls use `tolerance`).
   */
  matmulTolerance?: number
}

interface AttShape { B: number, T: number, C: number, NH: number }
interface MmShape { N: number, C: number, OC: number }

// Odd sizes on purpose: C not a multiple of 4 or 8, T = 1, OC not a multiple of any tile size.
const ATT_SHAPES: AttShape[] = [
  { B: 1, T: 1, C: 4, NH: 1 },
  { B: 2, T: 7, C: 15, NH: 3 },
  { B: 3, T: 5, C: 13, NH: 1 },
  { B: 2, T: 16, C: 32, NH: 4 }
]
const ATT_LARGE: AttShape[] = [{ B: 3, T: 64, C: 128, NH: 4 }, { B: 2, T: 33, C: 36, NH: 6 }]
const MM_SHAPES: MmShape[] = [
  { N: 1, C: 1, OC: 1 },
  { N: 7, C: 13, OC: 5 },
  { N: 14, C: 15, OC: 45 },
  { N: 33, C: 67, OC: 129 }
]
const MM_LARGE: MmShape[] = [{ N: 256, C: 128, OC: 384 }, { N: 131, C: 257, OC: 300 }, { N: 64, C: 512, OC: 128 }]

const isShapeError = (err: unknown): boolean => (err as { code?: unknown })?.code === 'ERR_SHAPE'

/** Fails unless `outcome` holds a ShapeError; the message says what happened instead (nothing thrown, or which error). */
function expectShapeError (outcome: { thrown: unknown } | undefined, what: string): void {
  if (outcome == null) assert.fail(`${what}: expected ShapeError (code ERR_SHAPE), but nothing was thrown`)
  const err = outcome.thrown as { name?: unknown, code?: unknown, message?: unknown } | undefined
  if (isShapeError(err)) return
  const code = (err as { code?: unknown } | undefined)?.code
  const desc = err instanceof Error ? `${err.name}${code != null ? ` (code ${String(code)})` : ''}: ${err.message}` : `a non-Error value ${String(err)}`
  assert.fail(`${what}: expected ShapeError (code ERR_SHAPE), got ${desc}`)
}

/** Registers the compliance suite for one backend under `describe('<name> backend compliance')`. */
export function backendCompliance (name: string, factory: () => Promise<ComputeBackend>, opts: ComplianceOptions = {}): void {
  const tol = opts.tolerance ?? 1e-4
  const seed = opts.seed ?? 1234
  const attShapes = opts.skipLarge === true ? ATT_SHAPES : [...ATT_SHAPES, ...ATT_LARGE]
  const mmShapes = opts.skipLarge === true ? MM_SHAPES : [...MM_SHAPES, ...MM_LARGE]
  const abs = (x: Float64Array): Float64Array => x.map(Math.abs)
  /** Checks a matmul result: `tol`, or matmulTolerance against the sum of |products| (`mag`). */
  const assertMatmul = (actual: Float32Array, expected: Float64Array, mag: () => Float64Array, what: string): void => {
    if (opts.matmulTolerance === undefined) { assertClose(actual, expected, tol, what); return }
    const m = mag()
    const mt = opts.matmulTolerance
    for (let i = 0; i < actual.length; i++) {
      const err = Math.abs(actual[i] - expected[i])
      if (!(err <= mt * (1 + m[i]))) assert.fail(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]} (error ${err} > ${mt} x (1 + ${m[i]}))`)
    }
  }

  describe(`${name} backend compliance`, function () {
    let be: ComputeBackend
    let live: Tensor[] = []
    // Tensors made through these helpers are freed after each test.
    const up = (data: Float32Array | Int32Array, shape: number[]): Tensor => { const t = be.upload(data, shape); live.push(t); return t }
    const zeros = (shape: number[], dtype: 'f32' | 'i32' = 'f32'): Tensor => { const t = be.alloc(shape, dtype); live.push(t); return t }
    const get = async (t: Tensor): Promise<Float32Array> => await be.download(t) as Float32Array
    const rejectsShape = async (fn: () => Promise<unknown>, what: string): Promise<void> => {
      let outcome: { thrown: unknown } | undefined
      try { await fn() } catch (err) { outcome = { thrown: err } }
      expectShapeError(outcome, what)
    }
    const throwsShape = (fn: () => unknown, what: string): void => {
      let outcome: { thrown: unknown } | undefined
      try { fn() } catch (err) { outcome = { thrown: err } }
      expectShapeError(outcome, what)
    }

    before(async function () { be = await factory() })
    afterEach(function () { for (const t of live) be.free(t); live = [] })
    after(async function () { await be?.dispose() })

    it('reports info with a name', function () {
      assert.equal(typeof be.info.name, 'string')
      assert.ok(be.info.name.length > 0)
    })

    // ---- memory --------------------------------------------------------------------------------

    describe('memory', function () {
      it('alloc is zero-filled, with the given shape and dtype', async function () {
        const t = zeros([3, 5])
        assert.deepEqual([...t.shape], [3, 5])
        assert.equal(t.dtype, 'f32')
        assert.equal(t.size, 15)
        assert.deepEqual([...await get(t)], new Array(15).fill(0))
        const i = zeros([4], 'i32')
        const d = await be.download(i)
        assert.ok(d instanceof Int32Array)
        assert.deepEqual([...d], [0, 0, 0, 0])
      })

      it('upload/download round-trip f32 and i32 exactly, and download is a copy', async function () {
        const r = rng(seed)
        const x = randF32(r, 37, 1e3)
        x[3] = -0; x[4] = 3.4e38; x[5] = 1e-40
        const t = up(x, [37])
        const y = await get(t)
        assert.ok(y instanceof Float32Array)
        assert.deepEqual(y, x)
        y[0] = 42
        assert.equal((await get(t))[0], x[0])
        const ids = Int32Array.from([0, -1, 2147483647, -2147483648, 7])
        const ti = up(ids, [5])
        assert.equal(ti.dtype, 'i32')
        assert.deepEqual(await be.download(ti), ids)
      })

      it('upload keeps no reference to the caller\'s array', async function () {
        const x = Float32Array.from([1, 2, 3])
        const t = up(x, [3])
        x[0] = 99
        assert.deepEqual([...await get(t)], [1, 2, 3])
      })

      it('write overwrites the contents', async function () {
        const t = zeros([2, 2])
        await be.write(t, Float32Array.from([1, 2, 3, 4]))
        assert.deepEqual([...await get(t)], [1, 2, 3, 4])
      })

      it('wrong sizes throw ShapeError', async function () {
        throwsShape(() => be.upload(new Float32Array(5), [2, 3]), 'upload 5 into [2,3]')
        throwsShape(() => be.alloc([2, -1]), 'alloc [2,-1]')
        throwsShape(() => be.alloc([2.5]), 'alloc [2.5]')
        const t = zeros([4])
        await rejectsShape(() => be.write(t, new Float32Array(3)), 'write 3 into [4]')
      })

      it('free right after a queued download or write does not disturb them', async function () {
        const t = be.upload(Float32Array.from([1, 2, 3]), [3])
        const u = be.alloc([3])
        const pending = [be.scale(u, 2), be.write(u, Float32Array.from([4, 5, 6]))]
        const got = be.download(t)
        const gotU = be.download(u)
        be.free(t)
        be.free(u)
        await Promise.all(pending)
        assert.deepEqual([...await got], [1, 2, 3])
        assert.deepEqual([...await gotU], [4, 5, 6])
      })

      it('kernels run in call order without awaiting each one', async function () {
        const a = up(Float32Array.from([1, 2, 3]), [3])
        const b = up(Float32Array.from([10, 20, 30]), [3])
        const pending = [be.fill(a, 2), be.scale(a, 3), be.accumulate(a, b, 0.5), be.scale(b, 0)]
        const result = await get(a)
        await Promise.all(pending)
        assert.deepEqual([...result], [11, 16, 21])
        assert.deepEqual([...await get(b)], [0, 0, 0])
      })
    })

    // ---- utilities -----------------------------------------------------------------------------

    describe('utilities', function () {
      it('fill, copy, scale, accumulate', async function () {
        const r = rng(seed + 1)
        const x = randF32(r, 101)
        const y = randF32(r, 101)
        const a = up(x, [101])
        const b = up(y, [101])
        await be.accumulate(a, b)
        assertClose(await get(a), plus(x, y), tol, 'accumulate alpha=1')
        await be.accumulate(a, b, -0.5)
        assertClose(await get(a), x.map((v, i) => v + 0.5 * y[i]), tol, 'accumulate alpha=-0.5')
        await be.scale(a, 3)
        assertClose(await get(a), x.map((v, i) => 3 * (v + 0.5 * y[i])), tol, 'scale')
        await be.copy(a, b)
        assert.deepEqual(await get(a), y)
        await be.fill(a, -1.5)
        assert.deepEqual([...await get(a)], new Array(101).fill(-1.5))
        const ia = up(Int32Array.from([1, 2]), [2])
        const ib = zeros([2], 'i32')
        await be.copy(ib, ia)
        assert.deepEqual([...await be.download(ib)], [1, 2])
      })

      it('sumSquares is accurate and does not overflow float32', async function () {
        const r = rng(seed + 2)
        const x = randF32(r, 1003, 3)
        const t = up(x, [1003])
        const s = await be.sumSquares(t)
        assert.ok(Math.abs(s - x.reduce((a, v) => a + v * v, 0)) <= 1e-6 * s)
        const big = up(new Float32Array(4).fill(3e38), [4])
        const sb = await be.sumSquares(big)
        assert.ok(Number.isFinite(sb) && Math.abs(sb / (4 * 9e76) - 1) < 1e-6, `sumSquares of 3e38s should be finite in float64, got ${sb}`)
      })

      it('utility shape errors', async function () {
        const a = zeros([4]); const b = zeros([5]); const i = zeros([4], 'i32')
        await rejectsShape(() => be.copy(a, b), 'copy size mismatch')
        await rejectsShape(() => be.copy(a, i), 'copy dtype mismatch')
        await rejectsShape(() => be.accumulate(a, b), 'accumulate size mismatch')
        await rejectsShape(() => be.scale(i, 2), 'scale i32')
      })
    })

    // ---- encoder -------------------------------------------------------------------------------

    describe('encoder', function () {
      for (const { B, T, C } of attShapes) {
        const V = 11
        const maxT = T + 2
        it(`forward and backward B=${B} T=${T} C=${C} V=${V}`, async function () {
          const r = rng(seed + B * 100 + T * 10 + C)
          const ids = randInts(r, B * T, 0, V) // few ids: repeated tokens test accumulation
          const wte = randF32(r, V * C)
          const wpe = randF32(r, maxT * C)
          const out = zeros([B, T, C])
          const tIds = up(ids, [B, T]); const tWte = up(wte, [V, C]); const tWpe = up(wpe, [maxT, C])
          await be.encoderForward(out, tIds, tWte, tWpe)
          assertClose(await get(out), R.encoderForward(ids, f64(wte), f64(wpe), B, T, C), tol, 'encoder out')

          const dout = randF32(r, B * T * C)
          const dwte0 = randF32(r, V * C); const dwpe0 = randF32(r, maxT * C)
          const dwte = up(dwte0, [V, C]); const dwpe = up(dwpe0, [maxT, C])
          await be.encoderBackward(dwte, dwpe, up(dout, [B, T, C]), tIds)
          const ref = R.encoderBackward(f64(dout), ids, V, maxT, B, T, C)
          assertClose(await get(dwte), plus(dwte0, ref.dwte), tol, 'dwte (accumulated)')
          assertClose(await get(dwpe), plus(dwpe0, ref.dwpe), tol, 'dwpe (accumulated)')
        })
      }

      it('shape errors; out-of-range token ids throw before writing', async function () {
        const out = up(new Float32Array(2 * 3 * 4).fill(7), [2, 3, 4])
        const wte = zeros([5, 4]); const wpe = zeros([3, 4])
        const ids = up(Int32Array.from([0, 1, 2, 3, 4, 0]), [2, 3])
        await rejectsShape(() => be.encoderForward(out, up(Int32Array.from([0, 1, 5, 0, 0, 0]), [2, 3]), wte, wpe), 'token id >= V')
        await rejectsShape(() => be.encoderForward(out, up(Int32Array.from([0, 1, -1, 0, 0, 0]), [2, 3]), wte, wpe), 'token id < 0')
        await rejectsShape(() => be.encoderForward(out, up(new Float32Array(6), [2, 3]), wte, wpe), 'f32 ids')
        await rejectsShape(() => be.encoderForward(out, ids, wte, zeros([2, 4])), 'T > maxT')
        await rejectsShape(() => be.encoderForward(out, ids, zeros([5, 3]), wpe), 'wte C mismatch')
        await rejectsShape(() => be.encoderForward(zeros([2, 3, 5]), ids, wte, wpe), 'out wrong C')
        await rejectsShape(() => be.encoderBackward(zeros([5, 4]), zeros([3, 5]), out, ids), 'dwpe wrong C')
        assert.deepEqual([...await get(out)], new Array(24).fill(7), 'out must be untouched after a ShapeError')
      })
    })

    // ---- layernorm -----------------------------------------------------------------------------

    describe('layernorm', function () {
      for (const { B, T, C } of attShapes) {
        it(`forward and backward B=${B} T=${T} C=${C}`, async function () {
          const r = rng(seed + 7 + B * 100 + T * 10 + C)
          const N = B * T
          // an offset mean checks the variance is computed stably
          const x = randF32(r, N * C, 2, 3)
          const w = randF32(r, C, 1, 1)
          const b = randF32(r, C)
          const out = zeros([B, T, C]); const mean = zeros([B, T]); const rstd = zeros([B, T])
          const tx = up(x, [B, T, C]); const tw = up(w, [C]); const tb = up(b, [C])
          await be.layernormForward(out, mean, rstd, tx, tw, tb)
          const ref = R.layernormForward(f64(x), f64(w), f64(b), N, C)
          assertClose(await get(out), ref.out, tol, 'layernorm out')
          assertClose(await get(mean), ref.mean, tol, 'layernorm mean')
          assertClose(await get(rstd), ref.rstd, tol, 'layernorm rstd')

          const dout = randF32(r, N * C)
          const dx0 = randF32(r, N * C); const dw0 = randF32(r, C); const db0 = randF32(r, C)
          const dx = up(dx0, [B, T, C]); const dw = up(dw0, [C]); const db = up(db0, [C])
          await be.layernormBackward(dx, dw, db, up(dout, [B, T, C]), tx, tw, mean, rstd)
          const g = R.layernormBackward(f64(dout), f64(x), f64(w), ref.mean, ref.rstd, N, C)
          assertClose(await get(dx), plus(dx0, g.dinp), tol, 'dinp (accumulated)')
          assertClose(await get(dw), plus(dw0, g.dweight), tol, 'dweight (accumulated)')
          assertClose(await get(db), plus(db0, g.dbias), tol, 'dbias (accumulated)')
        })
      }

      it('small variance: eps = 1e-5 matters', async function () {
        const r = rng(seed + 8)
        const N = 5; const C = 24
        const x = randF32(r, N * C, 3e-3, 0.5)
        const w = new Float32Array(C).fill(1); const b = new Float32Array(C)
        const out = zeros([N, C]); const mean = zeros([N]); const rstd = zeros([N])
        await be.layernormForward(out, mean, rstd, up(x, [N, C]), up(w, [C]), up(b, [C]))
        const ref = R.layernormForward(f64(x), f64(w), f64(b), N, C)
        assertClose(await get(out), ref.out, tol, 'layernorm out')
        assertClose(await get(rstd), ref.rstd, tol, 'layernorm rstd')
      })

      it('shape errors', async function () {
        const x = zeros([2, 3, 4]); const out = up(new Float32Array(24).fill(7), [2, 3, 4])
        await rejectsShape(() => be.layernormForward(out, zeros([6]), zeros([6]), x, zeros([5]), zeros([4])), 'weight wrong size')
        await rejectsShape(() => be.layernormForward(out, zeros([5]), zeros([6]), x, zeros([4]), zeros([4])), 'mean wrong size')
        await rejectsShape(() => be.layernormForward(zeros([2, 3, 5]), zeros([6]), zeros([6]), x, zeros([4]), zeros([4])), 'out wrong size')
        await rejectsShape(() => be.layernormBackward(zeros([23]), zeros([4]), zeros([4]), out, x, zeros([4]), zeros([6]), zeros([6])), 'dinp wrong size')
        await rejectsShape(() => be.layernormBackward(zeros([2, 3, 4]), zeros([4]), zeros([3]), out, x, zeros([4]), zeros([6]), zeros([6])), 'dbias wrong size')
        assert.deepEqual([...await get(out)], new Array(24).fill(7), 'out must be untouched after a ShapeError')
      })
    })

    // ---- matmul --------------------------------------------------------------------------------

    describe('matmul', function () {
      for (const { N, C, OC } of mmShapes) {
        for (const withBias of [true, false]) {
          it(`forward and backward N=${N} C=${C} OC=${OC} ${withBias ? 'with' : 'without'} bias`, async function () {
            const r = rng(seed + 11 + N * 7 + C * 3 + OC + (withBias ? 1 : 0))
            const x = randF32(r, N * C); const w = randF32(r, OC * C); const b = randF32(r, OC)
            const tx = up(x, [N, C]); const tw = up(w, [OC, C]); const tb = withBias ? up(b, [OC]) : null
            const out = up(randF32(r, N * OC), [N, OC]) // garbage in out: forward overwrites
            await be.matmulForward(out, tx, tw, tb)
            assertMatmul(await get(out), R.matmulForward(f64(x), f64(w), withBias ? f64(b) : null, N, C, OC),
              () => R.matmulForward(abs(f64(x)), abs(f64(w)), withBias ? abs(f64(b)) : null, N, C, OC), 'matmul out')

            const dout = randF32(r, N * OC)
            const dx0 = randF32(r, N * C); const dw0 = randF32(r, OC * C); const db0 = randF32(r, OC)
            const dx = up(dx0, [N, C]); const dw = up(dw0, [OC, C]); const db = withBias ? up(db0, [OC]) : null
            await be.matmulBackward(dx, dw, db, up(dout, [N, OC]), tx, tw)
            const g = R.matmulBackward(f64(dout), f64(x), f64(w), N, C, OC)
            const gm = (): ReturnType<typeof R.matmulBackward> => R.matmulBackward(abs(f64(dout)), abs(f64(x)), abs(f64(w)), N, C, OC)
            assertMatmul(await get(dx), plus(dx0, g.dinp), () => plus(abs(f64(dx0)), gm().dinp), 'dinp (accumulated)')
            assertMatmul(await get(dw), plus(dw0, g.dweight), () => plus(abs(f64(dw0)), gm().dweight), 'dweight (accumulated)')
            if (db !== null) assertClose(await get(db), plus(db0, g.dbias), tol, 'dbias (accumulated)')
          })
        }
      }

      it('accepts leading dims [B,T,C]', async function () {
        const r = rng(seed + 12)
        const x = randF32(r, 2 * 3 * 5); const w = randF32(r, 4 * 5)
        const out = zeros([2, 3, 4])
        await be.matmulForward(out, up(x, [2, 3, 5]), up(w, [4, 5]), null)
        assertMatmul(await get(out), R.matmulForward(f64(x), f64(w), null, 6, 5, 4), () => R.matmulForward(abs(f64(x)), abs(f64(w)), null, 6, 5, 4), 'matmul [B,T,C]')
      })

      it('shape errors', async function () {
        const x = zeros([6, 5]); const w = zeros([4, 5]); const out = up(new Float32Array(24).fill(7), [6, 4])
        await rejectsShape(() => be.matmulForward(out, zeros([6, 6]), w, null), 'inp C mismatch')
        await rejectsShape(() => be.matmulForward(out, x, w, zeros([5])), 'bias wrong size')
        await rejectsShape(() => be.matmulForward(zeros([6, 5]), x, w, null), 'out wrong OC')
        await rejectsShape(() => be.matmulForward(zeros([5, 4]), x, w, null), 'out wrong N')
        await rejectsShape(() => be.matmulForward(out, x, zeros([20]), null), 'weight not 2-D')
        await rejectsShape(() => be.matmulBackward(zeros([6, 5]), zeros([5, 4]), null, out, x, w), 'dweight wrong shape')
        await rejectsShape(() => be.matmulBackward(zeros([6, 4]), zeros([4, 5]), null, out, x, w), 'dinp wrong size')
        await rejectsShape(() => be.matmulBackward(zeros([6, 5]), zeros([4, 5]), zeros([3]), out, x, w), 'dbias wrong size')
        await rejectsShape(() => be.matmulForward(out, zeros([6, 5], 'i32'), w, null), 'i32 inp')
        assert.deepEqual([...await get(out)], new Array(24).fill(7), 'out must be untouched after a ShapeError')
      })
    })

    // ---- attention -----------------------------------------------------------------------------

    describe('attention', function () {
      for (const { B, T, C, NH } of attShapes) {
        it(`forward and backward B=${B} T=${T} C=${C} NH=${NH}`, async function () {
          const r = rng(seed + 13 + B * 1000 + T * 100 + C + NH)
          const qkv = randF32(r, B * T * 3 * C, 1.5)
          const tq = up(qkv, [B, T, 3 * C])
          const out = up(randF32(r, B * T * C), [B, T, C])
          const preatt = up(randF32(r, B * NH * T * T), [B, NH, T, T])
          const att = up(randF32(r, B * NH * T * T), [B, NH, T, T])
          await be.attentionForward(out, preatt, att, tq, NH)
          const ref = R.attentionForward(f64(qkv), B, T, C, NH)
          const causal = (i: number): boolean => (i % T) <= Math.floor(i / T) % T // t2 <= t
          assertClose(await get(out), ref.out, tol, 'attention out')
          assertClose(await get(att), ref.att, tol, 'att (masked entries must be 0)')
          assertClose(await get(preatt), ref.preatt, tol, 'preatt (causal part)', causal)

          const dout = randF32(r, B * T * C)
          const dq0 = randF32(r, B * T * 3 * C)
          const dq = up(dq0, [B, T, 3 * C])
          // datt/dpreatt are scratch: garbage in them must not matter
          const datt = up(randF32(r, B * NH * T * T), [B, NH, T, T])
          const dpreatt = up(randF32(r, B * NH * T * T), [B, NH, T, T])
          await be.attentionBackward(dq, dpreatt, datt, up(dout, [B, T, C]), tq, att, NH)
          const g = R.attentionBackward(f64(dout), f64(qkv), ref.att, B, T, C, NH)
          assertClose(await get(dq), plus(dq0, g.dqkv), tol, 'dqkv (accumulated)')
          assertClose(await get(datt), g.datt, tol, 'datt (causal part)', causal)
          assertClose(await get(dpreatt), g.dpreatt, tol, 'dpreatt (causal part)', causal)
        })
      }

      it('shape errors', async function () {
        const B = 2; const T = 3; const C = 6; const NH = 2
        const qkv = zeros([B, T, 3 * C]); const out = up(new Float32Array(B * T * C).fill(7), [B, T, C])
        const pa = zeros([B, NH, T, T]); const a = zeros([B, NH, T, T])
        await rejectsShape(() => be.attentionForward(out, zeros([B, 4, T, T]), zeros([B, 4, T, T]), qkv, 4), 'C not divisible by NH')
        await rejectsShape(() => be.attentionForward(out, pa, a, qkv, 0), 'NH = 0')
        await rejectsShape(() => be.attentionForward(out, pa, zeros([B, NH, T, T + 1]), qkv, NH), 'att wrong shape')
        await rejectsShape(() => be.attentionForward(out, pa, a, zeros([B, T, 3 * C + 1]), NH), 'qkv last dim not 3C')
        await rejectsShape(() => be.attentionForward(zeros([B, T, C + 1]), pa, a, qkv, NH), 'out wrong shape')
        await rejectsShape(() => be.attentionBackward(zeros([B, T, C]), pa, a, out, qkv, a, NH), 'dqkv wrong shape')
        await rejectsShape(() => be.attentionBackward(zeros([B, T, 3 * C]), pa, a, out, qkv, zeros([B, NH, T, 2]), NH), 'att wrong shape in backward')
        assert.deepEqual([...await get(out)], new Array(B * T * C).fill(7), 'out must be untouched after a ShapeError')
      })
    })

    // ---- gelu, residual ------------------------------------------------------------------------

    describe('gelu and residual', function () {
      for (const n of [1, 7, 1000, 65537]) {
        it(`gelu forward and backward n=${n}`, async function () {
          const r = rng(seed + 17 + n)
          const x = randF32(r, n, 6)
          if (n > 4) { x[0] = 30; x[1] = -30; x[2] = 0; x[3] = 1e-20 }
          const tx = up(x, [n])
          const out = zeros([n])
          await be.geluForward(out, tx)
          assertClose(await get(out), R.geluForward(f64(x)), tol, 'gelu out')
          const dout = randF32(r, n); const dx0 = randF32(r, n)
          const dx = up(dx0, [n])
          await be.geluBackward(dx, tx, up(dout, [n]))
          assertClose(await get(dx), plus(dx0, R.geluBackward(f64(x), f64(dout))), tol, 'gelu dinp (accumulated)')
        })
      }

      it('residual forward', async function () {
        const r = rng(seed + 19)
        const a = randF32(r, 999); const b = randF32(r, 999)
        const out = zeros([9, 111])
        await be.residualForward(out, up(a, [9, 111]), up(b, [999]))
        assertClose(await get(out), R.residualForward(f64(a), f64(b)), tol, 'residual out')
      })

      it('shape errors', async function () {
        await rejectsShape(() => be.geluForward(zeros([5]), zeros([6])), 'gelu size mismatch')
        await rejectsShape(() => be.geluBackward(zeros([6]), zeros([6]), zeros([5])), 'gelu dout size mismatch')
        await rejectsShape(() => be.residualForward(zeros([6]), zeros([6]), zeros([5])), 'residual size mismatch')
      })
    })

    // ---- cross-entropy -------------------------------------------------------------------------

    describe('cross-entropy', function () {
      for (const [N, V] of [[1, 2], [7, 13], [64, 256], [33, 1000]]) {
        it(`forward and backward N=${N} V=${V}, with ignored targets`, async function () {
          const r = rng(seed + 23 + N + V)
          const logits = randF32(r, N * V, 4)
          const targets = randInts(r, N, 0, V)
          if (N > 1) { targets[0] = -1; targets[N - 1] = -100 }
          const tl = up(logits, [N, V]); const tt = up(targets, [N])
          const losses = zeros([N]); const probs = zeros([N, V])
          await be.crossEntropyForward(losses, probs, tl, tt)
          const ref = R.crossEntropyForward(f64(logits), targets, N, V)
          assertClose(await get(losses), ref.losses, tol, 'losses (ignored targets: 0)')
          assertClose(await get(probs), ref.probs, tol, 'probs')

          const count = targets.filter(t => t >= 0).length
          const scale = 1 / Math.max(1, count)
          const d0 = randF32(r, N * V)
          const dl = up(d0, [N, V])
          await be.crossEntropyBackward(dl, probs, tt, scale)
          assertClose(await get(dl), plus(d0, R.crossEntropyBackward(ref.probs, targets, scale, N, V)), tol, 'dlogits (accumulated)')
        })
      }

      it('shape errors; out-of-range targets throw before writing', async function () {
        const logits = zeros([4, 5]); const probs = up(new Float32Array(20).fill(7), [4, 5]); const losses = zeros([4])
        const tt = up(Int32Array.from([0, 1, 2, 3]), [4])
        await rejectsShape(() => be.crossEntropyForward(losses, probs, logits, up(Int32Array.from([0, 1, 5, 3]), [4])), 'target >= V')
        await rejectsShape(() => be.crossEntropyForward(losses, probs, logits, zeros([3], 'i32')), 'targets wrong size')
        await rejectsShape(() => be.crossEntropyForward(losses, probs, logits, zeros([4])), 'f32 targets')
        await rejectsShape(() => be.crossEntropyForward(zeros([5]), probs, logits, tt), 'losses wrong size')
        await rejectsShape(() => be.crossEntropyForward(losses, zeros([4, 4]), logits, tt), 'probs wrong size')
        await rejectsShape(() => be.crossEntropyBackward(zeros([4, 4]), probs, tt, 1), 'dlogits wrong size')
        assert.deepEqual([...await get(probs)], new Array(20).fill(7), 'probs must be untouched after a ShapeError')
      })
    })

    // ---- AdamW ---------------------------------------------------------------------------------

    describe('adamw', function () {
      for (const [n, step, wd, gs] of [[1, 1, 0, 1], [1001, 3, 0.1, 0.5], [40000, 10, 0.01, 2]]) {
        it(`update n=${n} step=${step} weightDecay=${wd} gradScale=${gs}`, async function () {
          const r = rng(seed + 29 + n)
          const p = randF32(r, n); const g = randF32(r, n, 0.1)
          const m = randF32(r, n, 0.01); const v = randF32(r, n, 1e-4, 1.1e-4)
          const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: wd, step, gradScale: gs }
          const tp = up(p, [n]); const tm = up(m, [n]); const tv = up(v, [n])
          await be.adamwUpdate(tp, up(g, [n]), tm, tv, hp)
          const ref = R.adamwUpdate(f64(p), f64(g), f64(m), f64(v), hp)
          assertClose(await get(tp), ref.params, tol, 'params')
          assertClose(await get(tm), ref.m, tol, 'm')
          assertClose(await get(tv), ref.v, tol, 'v')
        })
      }

      it('shape errors', async function () {
        const p = up(new Float32Array(4).fill(7), [4])
        const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, step: 1, gradScale: 1 }
        await rejectsShape(() => be.adamwUpdate(p, zeros([4]), zeros([3]), zeros([4]), hp), 'm wrong size')
        await rejectsShape(() => be.adamwUpdate(p, zeros([5]), zeros([4]), zeros([4]), hp), 'grads wrong size')
        assert.deepEqual([...await get(p)], [7, 7, 7, 7])
      })
    })

    // ---- NaN / Inf -----------------------------------------------------------------------------

    describe('NaN/Inf propagate (no throw) and sumSquares reports them', function () {
      const rowFinite = (a: Float32Array, width: number, row: number): boolean =>
        a.subarray(row * width, (row + 1) * width).every(Number.isFinite)

      it('sumSquares of NaN is NaN, of +-Inf is +Inf', async function () {
        assert.ok(Number.isNaN(await be.sumSquares(up(Float32Array.from([1, NaN, 2]), [3]))))
        assert.equal(await be.sumSquares(up(Float32Array.from([1, Infinity]), [2])), Infinity)
        assert.equal(await be.sumSquares(up(Float32Array.from([-Infinity, 1]), [2])), Infinity)
      })

      it('matmul forward and backward: only rows touching the NaN are NaN', async function () {
        const r = rng(seed + 31)
        const N = 9; const C = 10; const OC = 11
        const x = randF32(r, N * C); x[3 * C + 4] = NaN
        const tx = up(x, [N, C]); const tw = up(randF32(r, OC * C), [OC, C])
        const out = zeros([N, OC])
        await be.matmulForward(out, tx, tw, up(randF32(r, OC), [OC]))
        const o = await get(out)
        assert.ok(o.subarray(3 * OC, 4 * OC).every(Number.isNaN), 'row 3 of out must be NaN')
        for (const row of [0, 2, 4, 8]) assert.ok(rowFinite(o, OC, row), `row ${row} must stay finite`)
        assert.ok(!Number.isFinite(await be.sumSquares(out)))
        const dout = randF32(r, N * OC); dout[5 * OC + 1] = Infinity
        const dx = zeros([N, C]); const dw = zeros([OC, C])
        await be.matmulBackward(dx, dw, null, up(dout, [N, OC]), up(randF32(r, N * C), [N, C]), tw)
        const gx = await get(dx)
        assert.ok(!rowFinite(gx, C, 5) && rowFinite(gx, C, 4), 'dinp: only row 5 non-finite')
        assert.ok(!Number.isFinite(await be.sumSquares(dw)))
      })

      it('layernorm, gelu, residual, encoder', async function () {
        const r = rng(seed + 37)
        const N = 6; const C = 8
        const x = randF32(r, N * C); x[2 * C] = NaN
        const out = zeros([N, C])
        await be.layernormForward(out, zeros([N]), zeros([N]), up(x, [N, C]), up(randF32(r, C), [C]), up(randF32(r, C), [C]))
        const o = await get(out)
        assert.ok(!rowFinite(o, C, 2) && rowFinite(o, C, 1) && rowFinite(o, C, 3), 'layernorm: only row 2 non-finite')
        const g = zeros([N * C])
        await be.geluForward(g, up(x, [N * C]))
        const go = await get(g)
        assert.ok(Number.isNaN(go[2 * C]) && go.every((v, i) => i === 2 * C || Number.isFinite(v)), 'gelu: only the NaN element')
        const res = zeros([N * C])
        await be.residualForward(res, up(x, [N * C]), up(randF32(r, N * C), [N * C]))
        assert.ok(Number.isNaN((await get(res))[2 * C]))
        const wte = randF32(r, 3 * C); wte[C + 1] = NaN
        const enc = zeros([1, 2, C])
        await be.encoderForward(enc, up(Int32Array.from([0, 1]), [1, 2]), up(wte, [3, C]), up(randF32(r, 2 * C), [2, C]))
        const e = await get(enc)
        assert.ok(rowFinite(e, C, 0) && Number.isNaN(e[C + 1]), 'encoder: only token 1 row')
      })

      it('attention: a NaN value reaches only its own batch row', async function () {
        const r = rng(seed + 41)
        const B = 2; const T = 4; const C = 6; const NH = 2
        const qkv = randF32(r, B * T * 3 * C); qkv[2 * C] = NaN // v of (b=0, t=0, head 0)
        const out = zeros([B, T, C])
        await be.attentionForward(out, zeros([B, NH, T, T]), zeros([B, NH, T, T]), up(qkv, [B, T, 3 * C]), NH)
        const o = await get(out)
        assert.ok(Number.isNaN(o[0]) && o.subarray(T * C).every(Number.isFinite), 'batch 0 head 0 NaN, batch 1 finite')
      })

      it('cross-entropy: a NaN logit makes only its row NaN', async function () {
        const r = rng(seed + 43)
        const N = 4; const V = 7
        const logits = randF32(r, N * V); logits[V + 3] = NaN
        const losses = zeros([N]); const probs = zeros([N, V])
        await be.crossEntropyForward(losses, probs, up(logits, [N, V]), up(Int32Array.from([1, 2, 3, 4]), [N]))
        const l = await get(losses)
        assert.ok(Number.isNaN(l[1]) && Number.isFinite(l[0]) && Number.isFinite(l[2]) && Number.isFinite(l[3]))
        assert.ok(!Number.isFinite(await be.sumSquares(probs)))
      })

      it('adamw: a NaN gradient makes only its parameter NaN', async function () {
        const g = Float32Array.from([0.1, NaN, -0.2])
        const p = up(Float32Array.from([1, 2, 3]), [3])
        await be.adamwUpdate(p, up(g, [3]), zeros([3]), zeros([3]), { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1, gradScale: 1 })
        const pv = await get(p)
        assert.ok(Number.isFinite(pv[0]) && Number.isNaN(pv[1]) && Number.isFinite(pv[2]))
      })
    })

    // ---- the references themselves ------------------------------------------------------------

    describe('float64 reference backward vs finite differences', function () {
      const close = (a: Float64Array, b: Float64Array, what: string): void => { assertClose(a, b, 1e-6, what) }

      it('matmul', function () {
        const r = rng(seed + 51)
        const N = 3; const C = 5; const OC = 4
        const x = f64(randF32(r, N * C)); const w = f64(randF32(r, OC * C)); const b = f64(randF32(r, OC)); const g = f64(randF32(r, N * OC))
        const ref = R.matmulBackward(g, x, w, N, C, OC)
        close(ref.dinp, numericGrad(xx => R.matmulForward(xx, w, b, N, C, OC), x, g), 'dinp')
        close(ref.dweight, numericGrad(ww => R.matmulForward(x, ww, b, N, C, OC), w, g), 'dweight')
        close(ref.dbias, numericGrad(bb => R.matmulForward(x, w, bb, N, C, OC), b, g), 'dbias')
      })

      it('layernorm', function () {
        const r = rng(seed + 53)
        const N = 3; const C = 7
        const x = f64(randF32(r, N * C, 2, 1)); const w = f64(randF32(r, C)); const b = f64(randF32(r, C)); const g = f64(randF32(r, N * C))
        const fwd = R.layernormForward(x, w, b, N, C)
        const ref = R.layernormBackward(g, x, w, fwd.mean, fwd.rstd, N, C)
        close(ref.dinp, numericGrad(xx => R.layernormForward(xx, w, b, N, C).out, x, g), 'dinp')
        close(ref.dweight, numericGrad(ww => R.layernormForward(x, ww, b, N, C).out, w, g), 'dweight')
        close(ref.dbias, numericGrad(bb => R.layernormForward(x, w, bb, N, C).out, b, g), 'dbias')
      })

      it('attention', function () {
        const r = rng(seed + 57)
        const B = 2; const T = 4; const C = 6; const NH = 2
        const qkv = f64(randF32(r, B * T * 3 * C)); const g = f64(randF32(r, B * T * C))
        const fwd = R.attentionForward(qkv, B, T, C, NH)
        close(R.attentionBackward(g, qkv, fwd.att, B, T, C, NH).dqkv, numericGrad(q => R.attentionForward(q, B, T, C, NH).out, qkv, g), 'dqkv')
      })

      it('encoder, gelu, cross-entropy', function () {
        const r = rng(seed + 59)
        const B = 2; const T = 3; const C = 4; const V = 5
        const ids = randInts(r, B * T, 0, V); const wte = f64(randF32(r, V * C)); const wpe = f64(randF32(r, T * C)); const g = f64(randF32(r, B * T * C))
        const eb = R.encoderBackward(g, ids, V, T, B, T, C)
        close(eb.dwte, numericGrad(w => R.encoderForward(ids, w, wpe, B, T, C), wte, g), 'dwte')
        close(eb.dwpe, numericGrad(w => R.encoderForward(ids, wte, w, B, T, C), wpe, g), 'dwpe')

        const x = f64(randF32(r, 50, 4)); const gg = f64(randF32(r, 50))
        close(R.geluBackward(x, gg), numericGrad(xx => R.geluForward(xx), x, gg), 'gelu')

        const N = 4; const logits = f64(randF32(r, N * V, 3)); const targets = Int32Array.from([1, -1, 4, 0])
        const scale = 1 / 3
        const probs = R.crossEntropyForward(logits, targets, N, V).probs
        const ones = new Float64Array(N).fill(scale)
        close(R.crossEntropyBackward(probs, targets, scale, N, V), numericGrad(l => R.crossEntropyForward(l, targets, N, V).losses, logits, ones), 'dlogits')
      })
    })
  })
}
