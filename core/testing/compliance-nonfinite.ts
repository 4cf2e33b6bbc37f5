// Backend compliance, the NaN/Inf policy: kernels propagate non-finite values IEEE-style, only to the
// outputs that depend on them, and never throw on them; sumSquares reports them (NaN, or +Inf).
// Registered by backendCompliance (compliance.ts).
import assert from 'node:assert/strict'
import type { SuiteContext } from './compliance-context.ts'
import { randF32, rng } from './gradcheck.ts'

export function nonFiniteTests (ctx: SuiteContext): void {
  const { up, zeros, get, seed } = ctx

  describe('NaN/Inf propagate (no throw) and sumSquares reports them', function () {
    const rowFinite = (a: Float32Array, width: number, row: number): boolean =>
      a.subarray(row * width, (row + 1) * width).every(Number.isFinite)

    it('sumSquares of NaN is NaN, of +-Inf is +Inf', async function () {
      assert.ok(Number.isNaN(await ctx.be.sumSquares(up(Float32Array.from([1, NaN, 2]), [3]))))
      assert.equal(await ctx.be.sumSquares(up(Float32Array.from([1, Infinity]), [2])), Infinity)
      assert.equal(await ctx.be.sumSquares(up(Float32Array.from([-Infinity, 1]), [2])), Infinity)
    })

    it('matmul forward and backward: only rows touching the NaN are NaN', async function () {
      const r = rng(seed + 31)
      const N = 9; const C = 10; const OC = 11
      const x = randF32(r, N * C); x[3 * C + 4] = NaN
      const tx = up(x, [N, C]); const tw = up(randF32(r, OC * C), [OC, C])
      const out = zeros([N, OC])
      await ctx.be.matmulForward(out, tx, tw, up(randF32(r, OC), [OC]))
      const o = await get(out)
      assert.ok(o.subarray(3 * OC, 4 * OC).every(Number.isNaN), 'row 3 of out must be NaN')
      for (const row of [0, 2, 4, 8]) assert.ok(rowFinite(o, OC, row), `row ${row} must stay finite`)
      assert.ok(!Number.isFinite(await ctx.be.sumSquares(out)))
      const dout = randF32(r, N * OC); dout[5 * OC + 1] = Infinity
      const dx = zeros([N, C]); const dw = zeros([OC, C])
      await ctx.be.matmulBackward(dx, dw, null, up(dout, [N, OC]), up(randF32(r, N * C), [N, C]), tw)
      const gx = await get(dx)
      assert.ok(!rowFinite(gx, C, 5) && rowFinite(gx, C, 4), 'dinp: only row 5 non-finite')
      assert.ok(!Number.isFinite(await ctx.be.sumSquares(dw)))
    })

    it('layernorm, gelu, residual, encoder', async function () {
      const r = rng(seed + 37)
      const N = 6; const C = 8
      const x = randF32(r, N * C); x[2 * C] = NaN
      const out = zeros([N, C])
      await ctx.be.layernormForward(out, zeros([N]), zeros([N]), up(x, [N, C]), up(randF32(r, C), [C]), up(randF32(r, C), [C]))
      const o = await get(out)
      assert.ok(!rowFinite(o, C, 2) && rowFinite(o, C, 1) && rowFinite(o, C, 3), 'layernorm: only row 2 non-finite')
      const g = zeros([N * C])
      await ctx.be.geluForward(g, up(x, [N * C]))
      const go = await get(g)
      assert.ok(Number.isNaN(go[2 * C]) && go.every((v, i) => i === 2 * C || Number.isFinite(v)), 'gelu: only the NaN element')
      const res = zeros([N * C])
      await ctx.be.residualForward(res, up(x, [N * C]), up(randF32(r, N * C), [N * C]))
      assert.ok(Number.isNaN((await get(res))[2 * C]))
      const wte = randF32(r, 3 * C); wte[C + 1] = NaN
      const enc = zeros([1, 2, C])
      await ctx.be.encoderForward(enc, up(Int32Array.from([0, 1]), [1, 2]), up(wte, [3, C]), up(randF32(r, 2 * C), [2, C]))
      const e = await get(enc)
      assert.ok(rowFinite(e, C, 0) && Number.isNaN(e[C + 1]), 'encoder: only token 1 row')
    })

    it('attention: a NaN value reaches only its own batch row', async function () {
      const r = rng(seed + 41)
      const B = 2; const T = 4; const C = 6; const NH = 2
      const qkv = randF32(r, B * T * 3 * C); qkv[2 * C] = NaN // v of (b=0, t=0, head 0)
      const out = zeros([B, T, C])
      await ctx.be.attentionForward(out, zeros([B, NH, T, T]), zeros([B, NH, T, T]), up(qkv, [B, T, 3 * C]), NH)
      const o = await get(out)
      assert.ok(Number.isNaN(o[0]) && o.subarray(T * C).every(Number.isFinite), 'batch 0 head 0 NaN, batch 1 finite')
    })

    it('cross-entropy: a NaN logit makes only its row NaN', async function () {
      const r = rng(seed + 43)
      const N = 4; const V = 7
      const logits = randF32(r, N * V); logits[V + 3] = NaN
      const losses = zeros([N]); const probs = zeros([N, V])
      await ctx.be.crossEntropyForward(losses, probs, up(logits, [N, V]), up(Int32Array.from([1, 2, 3, 4]), [N]))
      const l = await get(losses)
      assert.ok(Number.isNaN(l[1]) && Number.isFinite(l[0]) && Number.isFinite(l[2]) && Number.isFinite(l[3]))
      assert.ok(!Number.isFinite(await ctx.be.sumSquares(probs)))
    })

    it('adamw: a NaN gradient makes only its parameter NaN', async function () {
      const g = Float32Array.from([0.1, NaN, -0.2])
      const p = up(Float32Array.from([1, 2, 3]), [3])
      await ctx.be.adamwUpdate(p, up(g, [3]), zeros([3]), zeros([3]), { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1, gradScale: 1 })
      const pv = await get(p)
      assert.ok(Number.isFinite(pv[0]) && Number.isNaN(pv[1]) && Number.isFinite(pv[2]))
    })
  })
}
