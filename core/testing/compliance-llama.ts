// Backend compliance, the Llama layers' kernels against the float64 references (reference.ts):
// RMSNorm, rotary embeddings (out of place, in place, long positions, two thetas) and SwiGLU, each
// forward and backward (gradients pre-filled, so accumulation is checked) on odd shapes; each
// kernel's shape errors, which must leave outputs untouched; and the references' backward against
// finite differences. Registered by backendCompliance (compliance.ts).
import assert from 'node:assert/strict'
import type { SuiteContext } from './compliance-context.ts'
import * as R from './reference.ts'
import { assertClose, f64, numericGrad, plus, randF32, rng } from './gradcheck.ts'

interface RowShape { N: number, C: number }
interface RopeShape { B: number, T: number, C: number, NH: number }

// Odd on purpose: C = 1, C not a multiple of 4, N = 1, head sizes 2 and 6, positions past 256.
const RMS_SHAPES: RowShape[] = [{ N: 1, C: 1 }, { N: 7, C: 13 }, { N: 14, C: 15 }, { N: 33, C: 64 }]
const RMS_LARGE: RowShape[] = [{ N: 300, C: 257 }, { N: 64, C: 768 }]
const ROPE_SHAPES: RopeShape[] = [{ B: 1, T: 1, C: 2, NH: 1 }, { B: 2, T: 7, C: 18, NH: 3 }, { B: 3, T: 5, C: 10, NH: 1 }, { B: 2, T: 16, C: 32, NH: 4 }]
const ROPE_LARGE: RopeShape[] = [{ B: 2, T: 300, C: 64, NH: 2 }, { B: 1, T: 64, C: 192, NH: 3 }]
const SWIGLU_SHAPES: RowShape[] = [{ N: 1, C: 1 }, { N: 7, C: 13 }, { N: 33, C: 67 }] // C = H here
const SWIGLU_LARGE: RowShape[] = [{ N: 256, C: 344 }]

export function llamaKernelTests (ctx: SuiteContext): void {
  const { opts, up, zeros, get, rejectsShape, tol, seed } = ctx
  const big = opts.skipLarge !== true
  const rmsShapes = big ? [...RMS_SHAPES, ...RMS_LARGE] : RMS_SHAPES
  const ropeShapes = big ? [...ROPE_SHAPES, ...ROPE_LARGE] : ROPE_SHAPES
  const swShapes = big ? [...SWIGLU_SHAPES, ...SWIGLU_LARGE] : SWIGLU_SHAPES
  const untouched = async (t: Parameters<typeof get>[0], n: number): Promise<void> => {
    assert.deepEqual([...await get(t)], new Array(n).fill(7), 'outputs must be untouched after a ShapeError')
  }

  describe('rmsnorm', function () {
    for (const { N, C } of rmsShapes) {
      for (const eps of [1e-5, 1e-6]) {
        it(`forward and backward N=${N} C=${C} eps=${eps}`, async function () {
          const r = rng(seed + 301 + N * 10 + C)
          const x = randF32(r, N * C, 2, 0.5)
          const w = randF32(r, C, 1, 1)
          const out = zeros([N, C]); const rstd = zeros([N])
          const tx = up(x, [N, C]); const tw = up(w, [C])
          await ctx.be.rmsnormForward(out, rstd, tx, tw, eps)
          const ref = R.rmsnormForward(f64(x), f64(w), eps, N, C)
          assertClose(await get(out), ref.out, tol, 'rmsnorm out')
          assertClose(await get(rstd), ref.rstd, tol, 'rmsnorm rstd')

          const dout = randF32(r, N * C)
          const dx0 = randF32(r, N * C); const dw0 = randF32(r, C)
          const dx = up(dx0, [N, C]); const dw = up(dw0, [C])
          await ctx.be.rmsnormBackward(dx, dw, up(dout, [N, C]), tx, tw, rstd)
          const g = R.rmsnormBackward(f64(dout), f64(x), f64(w), ref.rstd, N, C)
          assertClose(await get(dx), plus(dx0, g.dinp), tol, 'dinp (accumulated)')
          assertClose(await get(dw), plus(dw0, g.dweight), tol, 'dweight (accumulated)')
        })
      }
    }

    it('small mean square: eps matters', async function () {
      const r = rng(seed + 302)
      const N = 5; const C = 24
      const x = randF32(r, N * C, 2e-3)
      const w = new Float32Array(C).fill(1)
      for (const eps of [1e-5, 1e-6]) {
        const out = zeros([N, C]); const rstd = zeros([N])
        await ctx.be.rmsnormForward(out, rstd, up(x, [N, C]), up(w, [C]), eps)
        const ref = R.rmsnormForward(f64(x), f64(w), eps, N, C)
        assertClose(await get(out), ref.out, tol, `rmsnorm out eps=${eps}`)
        assertClose(await get(rstd), ref.rstd, tol, `rmsnorm rstd eps=${eps}`)
      }
    })

    it('shape errors', async function () {
      const x = zeros([2, 3, 4]); const out = up(new Float32Array(24).fill(7), [2, 3, 4]); const rstd = up(new Float32Array(6).fill(7), [6])
      await rejectsShape(() => ctx.be.rmsnormForward(out, rstd, x, zeros([5]), 1e-5), 'weight wrong size')
      await rejectsShape(() => ctx.be.rmsnormForward(out, zeros([5]), x, zeros([4]), 1e-5), 'rstd wrong size')
      await rejectsShape(() => ctx.be.rmsnormForward(zeros([2, 3, 5]), rstd, x, zeros([4]), 1e-5), 'out wrong size')
      await rejectsShape(() => ctx.be.rmsnormForward(out, rstd, x, zeros([4]), Number.NaN), 'eps NaN')
      await rejectsShape(() => ctx.be.rmsnormForward(out, rstd, x, zeros([4]), -1), 'eps < 0')
      await rejectsShape(() => ctx.be.rmsnormForward(out, rstd, zeros([6, 4], 'i32'), zeros([4]), 1e-5), 'i32 inp')
      await rejectsShape(() => ctx.be.rmsnormBackward(zeros([23]), zeros([4]), out, x, zeros([4]), rstd), 'dinp wrong size')
      await rejectsShape(() => ctx.be.rmsnormBackward(out, zeros([3]), zeros([2, 3, 4]), x, zeros([4]), rstd), 'dweight wrong size')
      await rejectsShape(() => ctx.be.rmsnormBackward(out, zeros([4]), zeros([25]), x, zeros([4]), rstd), 'dout wrong size')
      await untouched(out, 24)
      await untouched(rstd, 6)
    })
  })

  describe('rope', function () {
    for (const { B, T, C, NH } of ropeShapes) {
      for (const theta of [10000, 500000]) {
        it(`forward (out of place and in place) and backward B=${B} T=${T} C=${C} NH=${NH} theta=${theta}`, async function () {
          const r = rng(seed + 311 + B * 100 + T * 10 + C)
          const n = B * T * 3 * C
          const x = randF32(r, n)
          const ref = R.ropeForward(f64(x), B, T, C, NH, theta)
          const out = up(new Float32Array(n).fill(7), [B, T, 3 * C])
          const tx = up(x, [B, T, 3 * C])
          await ctx.be.ropeForward(out, tx, NH, theta)
          assertClose(await get(out), ref, tol, 'rope out (v copied)')
          await ctx.be.ropeForward(tx, tx, NH, theta)
          assertClose(await get(tx), ref, tol, 'rope out (in place)')

          const dout = randF32(r, n)
          const dx0 = randF32(r, n)
          const dx = up(dx0, [B, T, 3 * C])
          await ctx.be.ropeBackward(dx, up(dout, [B, T, 3 * C]), NH, theta)
          assertClose(await get(dx), plus(dx0, R.ropeBackward(f64(dout), B, T, C, NH, theta)), tol, 'dinp (accumulated)')
        })
      }
    }

    it('shape errors', async function () {
      const out = up(new Float32Array(2 * 3 * 24).fill(7), [2, 3, 24]); const x = zeros([2, 3, 24])
      await rejectsShape(() => ctx.be.ropeForward(out, x, 3, 10000), 'odd head size (C=8, NH=3 does not divide)')
      await rejectsShape(() => ctx.be.ropeForward(out, x, 8, 10000), 'odd head size (HS=1)')
      await rejectsShape(() => ctx.be.ropeForward(out, x, 0, 10000), 'NH = 0')
      await rejectsShape(() => ctx.be.ropeForward(out, x, 2, 0), 'theta = 0')
      await rejectsShape(() => ctx.be.ropeForward(out, x, 2, Number.POSITIVE_INFINITY), 'theta infinite')
      await rejectsShape(() => ctx.be.ropeForward(out, zeros([2, 3, 25]), 2, 10000), 'last dim not 3C')
      await rejectsShape(() => ctx.be.ropeForward(out, zeros([6, 24]), 2, 10000), 'rank 2')
      await rejectsShape(() => ctx.be.ropeForward(out, zeros([2, 4, 24]), 2, 10000), 'out shape differs')
      await rejectsShape(() => ctx.be.ropeBackward(out, zeros([2, 3, 48]), 2, 10000), 'dout shape differs')
      await untouched(out, 144)
    })
  })

  describe('swiglu', function () {
    for (const { N, C: H } of swShapes) {
      it(`forward and backward N=${N} H=${H}`, async function () {
        const r = rng(seed + 321 + N * 10 + H)
        const x = randF32(r, N * 2 * H, 6) // gates far into both tails of the sigmoid
        const out = zeros([N, H]); const tx = up(x, [N, 2 * H])
        await ctx.be.swigluForward(out, tx)
        assertClose(await get(out), R.swigluForward(f64(x), N, H), tol, 'swiglu out')

        const dout = randF32(r, N * H)
        const dx0 = randF32(r, N * 2 * H)
        const dx = up(dx0, [N, 2 * H])
        await ctx.be.swigluBackward(dx, up(dout, [N, H]), tx)
        assertClose(await get(dx), plus(dx0, R.swigluBackward(f64(dout), f64(x), N, H)), tol, 'dinp (accumulated)')
      })
    }

    it('shape errors', async function () {
      const out = up(new Float32Array(12).fill(7), [2, 2, 3]); const x = zeros([2, 2, 6])
      await rejectsShape(() => ctx.be.swigluForward(out, zeros([2, 2, 5])), 'odd last dim')
      await rejectsShape(() => ctx.be.swigluForward(out, zeros([2, 2, 8])), 'out last dim not H')
      await rejectsShape(() => ctx.be.swigluForward(out, zeros([2, 3, 6])), 'rows differ')
      await rejectsShape(() => ctx.be.swigluBackward(zeros([2, 2, 5]), out, x), 'dinp wrong size')
      await rejectsShape(() => ctx.be.swigluBackward(zeros([2, 2, 6]), zeros([2, 2, 4]), x), 'dout wrong size')
      await untouched(out, 12)
    })
  })

  describe('float64 Llama references vs finite differences', function () {
    const close = (a: Float64Array, b: Float64Array, what: string): void => { assertClose(a, b, 1e-6, what) }

    it('rmsnorm', function () {
      const r = rng(seed + 331)
      const N = 3; const C = 7; const eps = 1e-5
      const x = f64(randF32(r, N * C, 2, 1)); const w = f64(randF32(r, C)); const g = f64(randF32(r, N * C))
      const ref = R.rmsnormBackward(g, x, w, R.rmsnormForward(x, w, eps, N, C).rstd, N, C)
      close(ref.dinp, numericGrad(xx => R.rmsnormForward(xx, w, eps, N, C).out, x, g), 'dinp')
      close(ref.dweight, numericGrad(ww => R.rmsnormForward(x, ww, eps, N, C).out, w, g), 'dweight')
    })

    it('rope (backward is the transpose of the forward)', function () {
      const r = rng(seed + 332)
      const B = 2; const T = 5; const C = 12; const NH = 2; const theta = 100
      const x = f64(randF32(r, B * T * 3 * C)); const g = f64(randF32(r, B * T * 3 * C))
      close(R.ropeBackward(g, B, T, C, NH, theta), numericGrad(xx => R.ropeForward(xx, B, T, C, NH, theta), x, g), 'dinp')
    })

    it('rope pairs channel i with i + HS/2 (rotate-half layout, as transformers)', function () {
      // rotate_half pairs channel i with i + HS/2 (not 2i with 2i+1): position 1, theta 1 turns q[0] and q[HS/2] by 1 radian
      const C = 4; const NH = 1
      const x = new Float64Array(2 * 3 * C); x.set([1, 0, 0, 0], 3 * C) // t = 1, q = e0
      const out = R.ropeForward(x, 1, 2, C, NH, 1)
      close(out.subarray(3 * C, 4 * C), Float64Array.from([Math.cos(1), 0, Math.sin(1), 0]), 'q at t=1')
    })

    it('swiglu', function () {
      const r = rng(seed + 333)
      const N = 3; const H = 5
      const x = f64(randF32(r, N * 2 * H, 4)); const g = f64(randF32(r, N * H))
      close(R.swigluBackward(g, x, N, H), numericGrad(xx => R.swigluForward(xx, N, H), x, g), 'dinp')
    })
  })
}
