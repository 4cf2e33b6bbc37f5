// Backend compliance, flash attention (attentionFlashForward / attentionFlashBackward): against the
// float64 references on odd shapes (T = 1, T not a multiple of any tile, head sizes not a multiple
// of 4) and a long sequence that spans many tiles; the references themselves against the full
// attention's reference and finite differences; shape errors leave outputs untouched.
// Registered by backendCompliance (compliance.ts).
import assert from 'node:assert/strict'
import type { SuiteContext } from './compliance-context.ts'
import * as R from './reference.ts'
import { assertClose, f64, numericGrad, plus, randF32, rng } from './gradcheck.ts'

interface AttShape { B: number, T: number, C: number, NH: number }

const SHAPES: AttShape[] = [
  { B: 1, T: 1, C: 4, NH: 1 },
  { B: 2, T: 7, C: 15, NH: 3 },
  { B: 3, T: 5, C: 13, NH: 1 },
  { B: 2, T: 16, C: 32, NH: 4 },
  { B: 1, T: 67, C: 24, NH: 2 }
]
// past a tile of 64 keys on both sides: 3 tiles and a partial one
const LARGE: AttShape[] = [{ B: 2, T: 200, C: 32, NH: 2 }, { B: 1, T: 130, C: 36, NH: 6 }]

export function flashAttentionTests (ctx: SuiteContext): void {
  const { opts, up, zeros, get, rejectsShape, tol, seed } = ctx
  const shapes = opts.skipLarge === true ? SHAPES : [...SHAPES, ...LARGE]

  describe('flash attention', function () {
    for (const { B, T, C, NH } of shapes) {
      it(`forward and backward B=${B} T=${T} C=${C} NH=${NH}`, async function () {
        const r = rng(seed + 71 + B * 1000 + T * 100 + C + NH)
        const qkv = randF32(r, B * T * 3 * C, 1.5)
        const tq = up(qkv, [B, T, 3 * C])
        // outputs pre-filled with garbage: the forward overwrites them
        const out = up(randF32(r, B * T * C), [B, T, C])
        const lse = up(randF32(r, B * NH * T), [B, NH, T])
        await ctx.be.attentionFlashForward(out, lse, tq, NH)
        const ref = R.attentionFlashForward(f64(qkv), B, T, C, NH)
        const outGot = await get(out)
        assertClose(outGot, ref.out, tol, 'flash out')
        assertClose(await get(lse), ref.lse, tol, 'flash lse')

        const dout = randF32(r, B * T * C)
        const dq0 = randF32(r, B * T * 3 * C)
        const dq = up(dq0, [B, T, 3 * C])
        await ctx.be.attentionFlashBackward(dq, up(dout, [B, T, C]), out, tq, lse, NH)
        const g = R.attentionFlashBackward(f64(dout), f64(outGot), f64(qkv), ref.lse, B, T, C, NH)
        assertClose(await get(dq), plus(dq0, g), tol, 'flash dqkv (accumulated)')
      })
    }

    it('the references equal full attention and finite differences', function () {
      const r = rng(seed + 73)
      const B = 2; const T = 5; const C = 6; const NH = 2
      const qkv = f64(randF32(r, B * T * 3 * C, 1.5)); const g = f64(randF32(r, B * T * C))
      const full = R.attentionForward(qkv, B, T, C, NH)
      const flash = R.attentionFlashForward(qkv, B, T, C, NH)
      assertClose(flash.out, full.out, 1e-12, 'out')
      const dq = R.attentionFlashBackward(g, flash.out, qkv, flash.lse, B, T, C, NH)
      assertClose(dq, R.attentionBackward(g, qkv, full.att, B, T, C, NH).dqkv, 1e-10, 'dqkv vs full')
      assertClose(dq, numericGrad(q => R.attentionForward(q, B, T, C, NH).out, qkv, g), 1e-6, 'dqkv vs finite differences')
    })

    it('a NaN in one batch row reaches only that row, without throwing', async function () {
      const r = rng(seed + 79)
      const B = 2; const T = 70; const C = 8; const NH = 2
      const qkv = randF32(r, B * T * 3 * C, 1.5)
      qkv[5 * 3 * C + C + 1] = NaN // a key of batch row 0 at t = 5
      const out = zeros([B, T, C]); const lse = zeros([B, NH, T])
      await ctx.be.attentionFlashForward(out, lse, up(qkv, [B, T, 3 * C]), NH)
      const o = await get(out)
      const half = T * C
      assert.ok(o.subarray(0, half).some(v => !Number.isFinite(v)), 'batch row 0 must carry the NaN')
      const clean = qkv.slice(T * 3 * C)
      assertClose(o.subarray(half), R.attentionFlashForward(f64(clean), 1, T, C, NH).out, tol, 'batch row 1')
    })

    it('shape errors', async function () {
      const B = 2; const T = 3; const C = 6; const NH = 2
      const qkv = zeros([B, T, 3 * C]); const out = up(new Float32Array(B * T * C).fill(7), [B, T, C])
      const lse = zeros([B, NH, T]); const dq = zeros([B, T, 3 * C])
      await rejectsShape(() => ctx.be.attentionFlashForward(out, zeros([B, 4, T]), qkv, 4), 'C not divisible by NH')
      await rejectsShape(() => ctx.be.attentionFlashForward(out, lse, qkv, 0), 'NH = 0')
      await rejectsShape(() => ctx.be.attentionFlashForward(out, zeros([B, NH, T + 1]), qkv, NH), 'lse wrong shape')
      await rejectsShape(() => ctx.be.attentionFlashForward(out, lse, zeros([B, T, 3 * C + 1]), NH), 'qkv last dim not 3C')
      await rejectsShape(() => ctx.be.attentionFlashForward(zeros([B, T, C + 1]), lse, qkv, NH), 'out wrong shape')
      await rejectsShape(() => ctx.be.attentionFlashBackward(zeros([B, T, C]), out, out, qkv, lse, NH), 'dqkv wrong shape')
      await rejectsShape(() => ctx.be.attentionFlashBackward(dq, out, zeros([B, T, 2]), qkv, lse, NH), 'out wrong shape in backward')
      await rejectsShape(() => ctx.be.attentionFlashBackward(dq, out, out, qkv, zeros([B, NH, 2]), NH), 'lse wrong shape in backward')
      assert.deepEqual([...await get(out)], new Array(B * T * C).fill(7), 'out must be untouched after a ShapeError')
    })
  })
}
