// Backend compliance, the kernels of a training step against the float64 references (reference.ts):
// encoder, layernorm, matmul, attention, GELU and residual, cross-entropy and AdamW, each forward and
// backward (gradients pre-filled, so accumulation is checked) on several shapes including odd ones,
// and each kernel's shape errors, which must leave outputs untouched. Registered by backendCompliance.
import assert from 'node:assert/strict'
import type { SuiteContext } from './compliance-context.ts'
import * as R from './reference.ts'
import { assertClose, f64, plus, randF32, randInts, rng } from './gradcheck.ts'

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


export function kernelTests (ctx: SuiteContext): void {
  const { opts, up, zeros, get, rejectsShape, tol, seed } = ctx
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
        await ctx.be.encoderForward(out, tIds, tWte, tWpe)
        assertClose(await get(out), R.encoderForward(ids, f64(wte), f64(wpe), B, T, C), tol, 'encoder out')

        const dout = randF32(r, B * T * C)
        const dwte0 = randF32(r, V * C); const dwpe0 = randF32(r, maxT * C)
        const dwte = up(dwte0, [V, C]); const dwpe = up(dwpe0, [maxT, C])
        await ctx.be.encoderBackward(dwte, dwpe, up(dout, [B, T, C]), tIds)
        const ref = R.encoderBackward(f64(dout), ids, V, maxT, B, T, C)
        assertClose(await get(dwte), plus(dwte0, ref.dwte), tol, 'dwte (accumulated)')
        assertClose(await get(dwpe), plus(dwpe0, ref.dwpe), tol, 'dwpe (accumulated)')
      })
    }

    it('shape errors; out-of-range token ids throw before writing', async function () {
      const out = up(new Float32Array(2 * 3 * 4).fill(7), [2, 3, 4])
      const wte = zeros([5, 4]); const wpe = zeros([3, 4])
      const ids = up(Int32Array.from([0, 1, 2, 3, 4, 0]), [2, 3])
      await rejectsShape(() => ctx.be.encoderForward(out, up(Int32Array.from([0, 1, 5, 0, 0, 0]), [2, 3]), wte, wpe), 'token id >= V')
      await rejectsShape(() => ctx.be.encoderForward(out, up(Int32Array.from([0, 1, -1, 0, 0, 0]), [2, 3]), wte, wpe), 'token id < 0')
      await rejectsShape(() => ctx.be.encoderForward(out, up(new Float32Array(6), [2, 3]), wte, wpe), 'f32 ids')
      await rejectsShape(() => ctx.be.encoderForward(out, ids, wte, zeros([2, 4])), 'T > maxT')
      await rejectsShape(() => ctx.be.encoderForward(out, ids, zeros([5, 3]), wpe), 'wte C mismatch')
      await rejectsShape(() => ctx.be.encoderForward(zeros([2, 3, 5]), ids, wte, wpe), 'out wrong C')
      await rejectsShape(() => ctx.be.encoderBackward(zeros([5, 4]), zeros([3, 5]), out, ids), 'dwpe wrong C')
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
        await ctx.be.layernormForward(out, mean, rstd, tx, tw, tb)
        const ref = R.layernormForward(f64(x), f64(w), f64(b), N, C)
        assertClose(await get(out), ref.out, tol, 'layernorm out')
        assertClose(await get(mean), ref.mean, tol, 'layernorm mean')
        assertClose(await get(rstd), ref.rstd, tol, 'layernorm rstd')

        const dout = randF32(r, N * C)
        const dx0 = randF32(r, N * C); const dw0 = randF32(r, C); const db0 = randF32(r, C)
        const dx = up(dx0, [B, T, C]); const dw = up(dw0, [C]); const db = up(db0, [C])
        await ctx.be.layernormBackward(dx, dw, db, up(dout, [B, T, C]), tx, tw, mean, rstd)
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
      await ctx.be.layernormForward(out, mean, rstd, up(x, [N, C]), up(w, [C]), up(b, [C]))
      const ref = R.layernormForward(f64(x), f64(w), f64(b), N, C)
      assertClose(await get(out), ref.out, tol, 'layernorm out')
      assertClose(await get(rstd), ref.rstd, tol, 'layernorm rstd')
    })

    it('shape errors', async function () {
      const x = zeros([2, 3, 4]); const out = up(new Float32Array(24).fill(7), [2, 3, 4])
      await rejectsShape(() => ctx.be.layernormForward(out, zeros([6]), zeros([6]), x, zeros([5]), zeros([4])), 'weight wrong size')
      await rejectsShape(() => ctx.be.layernormForward(out, zeros([5]), zeros([6]), x, zeros([4]), zeros([4])), 'mean wrong size')
      await rejectsShape(() => ctx.be.layernormForward(zeros([2, 3, 5]), zeros([6]), zeros([6]), x, zeros([4]), zeros([4])), 'out wrong size')
      await rejectsShape(() => ctx.be.layernormBackward(zeros([23]), zeros([4]), zeros([4]), out, x, zeros([4]), zeros([6]), zeros([6])), 'dinp wrong size')
      await rejectsShape(() => ctx.be.layernormBackward(zeros([2, 3, 4]), zeros([4]), zeros([3]), out, x, zeros([4]), zeros([6]), zeros([6])), 'dbias wrong size')
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
          await ctx.be.matmulForward(out, tx, tw, tb)
          assertMatmul(await get(out), R.matmulForward(f64(x), f64(w), withBias ? f64(b) : null, N, C, OC),
            () => R.matmulForward(abs(f64(x)), abs(f64(w)), withBias ? abs(f64(b)) : null, N, C, OC), 'matmul out')

          const dout = randF32(r, N * OC)
          const dx0 = randF32(r, N * C); const dw0 = randF32(r, OC * C); const db0 = randF32(r, OC)
          const dx = up(dx0, [N, C]); const dw = up(dw0, [OC, C]); const db = withBias ? up(db0, [OC]) : null
          await ctx.be.matmulBackward(dx, dw, db, up(dout, [N, OC]), tx, tw)
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
      await ctx.be.matmulForward(out, up(x, [2, 3, 5]), up(w, [4, 5]), null)
      assertMatmul(await get(out), R.matmulForward(f64(x), f64(w), null, 6, 5, 4), () => R.matmulForward(abs(f64(x)), abs(f64(w)), null, 6, 5, 4), 'matmul [B,T,C]')
    })

    it('shape errors', async function () {
      const x = zeros([6, 5]); const w = zeros([4, 5]); const out = up(new Float32Array(24).fill(7), [6, 4])
      await rejectsShape(() => ctx.be.matmulForward(out, zeros([6, 6]), w, null), 'inp C mismatch')
      await rejectsShape(() => ctx.be.matmulForward(out, x, w, zeros([5])), 'bias wrong size')
      await rejectsShape(() => ctx.be.matmulForward(zeros([6, 5]), x, w, null), 'out wrong OC')
      await rejectsShape(() => ctx.be.matmulForward(zeros([5, 4]), x, w, null), 'out wrong N')
      await rejectsShape(() => ctx.be.matmulForward(out, x, zeros([20]), null), 'weight not 2-D')
      await rejectsShape(() => ctx.be.matmulBackward(zeros([6, 5]), zeros([5, 4]), null, out, x, w), 'dweight wrong shape')
      await rejectsShape(() => ctx.be.matmulBackward(zeros([6, 4]), zeros([4, 5]), null, out, x, w), 'dinp wrong size')
      await rejectsShape(() => ctx.be.matmulBackward(zeros([6, 5]), zeros([4, 5]), zeros([3]), out, x, w), 'dbias wrong size')
      await rejectsShape(() => ctx.be.matmulForward(out, zeros([6, 5], 'i32'), w, null), 'i32 inp')
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
        await ctx.be.attentionForward(out, preatt, att, tq, NH)
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
        await ctx.be.attentionBackward(dq, dpreatt, datt, up(dout, [B, T, C]), tq, att, NH)
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
      await rejectsShape(() => ctx.be.attentionForward(out, zeros([B, 4, T, T]), zeros([B, 4, T, T]), qkv, 4), 'C not divisible by NH')
      await rejectsShape(() => ctx.be.attentionForward(out, pa, a, qkv, 0), 'NH = 0')
      await rejectsShape(() => ctx.be.attentionForward(out, pa, zeros([B, NH, T, T + 1]), qkv, NH), 'att wrong shape')
      await rejectsShape(() => ctx.be.attentionForward(out, pa, a, zeros([B, T, 3 * C + 1]), NH), 'qkv last dim not 3C')
      await rejectsShape(() => ctx.be.attentionForward(zeros([B, T, C + 1]), pa, a, qkv, NH), 'out wrong shape')
      await rejectsShape(() => ctx.be.attentionBackward(zeros([B, T, C]), pa, a, out, qkv, a, NH), 'dqkv wrong shape')
      await rejectsShape(() => ctx.be.attentionBackward(zeros([B, T, 3 * C]), pa, a, out, qkv, zeros([B, NH, T, 2]), NH), 'att wrong shape in backward')
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
        await ctx.be.geluForward(out, tx)
        assertClose(await get(out), R.geluForward(f64(x)), tol, 'gelu out')
        const dout = randF32(r, n); const dx0 = randF32(r, n)
        const dx = up(dx0, [n])
        await ctx.be.geluBackward(dx, tx, up(dout, [n]))
        assertClose(await get(dx), plus(dx0, R.geluBackward(f64(x), f64(dout))), tol, 'gelu dinp (accumulated)')
      })
    }

    it('residual forward', async function () {
      const r = rng(seed + 19)
      const a = randF32(r, 999); const b = randF32(r, 999)
      const out = zeros([9, 111])
      await ctx.be.residualForward(out, up(a, [9, 111]), up(b, [999]))
      assertClose(await get(out), R.residualForward(f64(a), f64(b)), tol, 'residual out')
    })

    it('shape errors', async function () {
      await rejectsShape(() => ctx.be.geluForward(zeros([5]), zeros([6])), 'gelu size mismatch')
      await rejectsShape(() => ctx.be.geluBackward(zeros([6]), zeros([6]), zeros([5])), 'gelu dout size mismatch')
      await rejectsShape(() => ctx.be.residualForward(zeros([6]), zeros([6]), zeros([5])), 'residual size mismatch')
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
        await ctx.be.crossEntropyForward(losses, probs, tl, tt)
        const ref = R.crossEntropyForward(f64(logits), targets, N, V)
        assertClose(await get(losses), ref.losses, tol, 'losses (ignored targets: 0)')
        assertClose(await get(probs), ref.probs, tol, 'probs')

        const count = targets.filter(t => t >= 0).length
        const scale = 1 / Math.max(1, count)
        const d0 = randF32(r, N * V)
        const dl = up(d0, [N, V])
        await ctx.be.crossEntropyBackward(dl, probs, tt, scale)
        assertClose(await get(dl), plus(d0, R.crossEntropyBackward(ref.probs, targets, scale, N, V)), tol, 'dlogits (accumulated)')
      })
    }

    it('shape errors; out-of-range targets throw before writing', async function () {
      const logits = zeros([4, 5]); const probs = up(new Float32Array(20).fill(7), [4, 5]); const losses = zeros([4])
      const tt = up(Int32Array.from([0, 1, 2, 3]), [4])
      await rejectsShape(() => ctx.be.crossEntropyForward(losses, probs, logits, up(Int32Array.from([0, 1, 5, 3]), [4])), 'target >= V')
      await rejectsShape(() => ctx.be.crossEntropyForward(losses, probs, logits, zeros([3], 'i32')), 'targets wrong size')
      await rejectsShape(() => ctx.be.crossEntropyForward(losses, probs, logits, zeros([4])), 'f32 targets')
      await rejectsShape(() => ctx.be.crossEntropyForward(zeros([5]), probs, logits, tt), 'losses wrong size')
      await rejectsShape(() => ctx.be.crossEntropyForward(losses, zeros([4, 4]), logits, tt), 'probs wrong size')
      await rejectsShape(() => ctx.be.crossEntropyBackward(zeros([4, 4]), probs, tt, 1), 'dlogits wrong size')
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
        await ctx.be.adamwUpdate(tp, up(g, [n]), tm, tv, hp)
        const ref = R.adamwUpdate(f64(p), f64(g), f64(m), f64(v), hp)
        assertClose(await get(tp), ref.params, tol, 'params')
        assertClose(await get(tm), ref.m, tol, 'm')
        assertClose(await get(tv), ref.v, tol, 'v')
      })
    }

    it('shape errors', async function () {
      const p = up(new Float32Array(4).fill(7), [4])
      const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, step: 1, gradScale: 1 }
      await rejectsShape(() => ctx.be.adamwUpdate(p, zeros([4]), zeros([3]), zeros([4]), hp), 'm wrong size')
      await rejectsShape(() => ctx.be.adamwUpdate(p, zeros([5]), zeros([4]), zeros([4]), hp), 'grads wrong size')
      assert.deepEqual([...await get(p)], [7, 7, 7, 7])
    })
  })
}
