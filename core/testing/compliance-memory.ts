// Backend compliance, memory and utilities: alloc, upload/download, write and free (zero fill, exact
// round trips, copies, call order) and fill, copy, scale, accumulate, sumSquares, with their shape
// errors. Registered by backendCompliance (compliance.ts).
import assert from 'node:assert/strict'
import type { SuiteContext } from './compliance-context.ts'
import { assertClose, plus, randF32, rng } from './gradcheck.ts'

export function memoryTests (ctx: SuiteContext): void {
  const { up, zeros, get, rejectsShape, throwsShape, tol, seed } = ctx

  describe('memory', function () {
    it('alloc is zero-filled, with the given shape and dtype', async function () {
      const t = zeros([3, 5])
      assert.deepEqual([...t.shape], [3, 5])
      assert.equal(t.dtype, 'f32')
      assert.equal(t.size, 15)
      assert.deepEqual([...await get(t)], new Array(15).fill(0))
      const i = zeros([4], 'i32')
      const d = await ctx.be.download(i)
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
      assert.deepEqual(await ctx.be.download(ti), ids)
    })

    it('upload keeps no reference to the caller\'s array', async function () {
      const x = Float32Array.from([1, 2, 3])
      const t = up(x, [3])
      x[0] = 99
      assert.deepEqual([...await get(t)], [1, 2, 3])
    })

    it('write overwrites the contents', async function () {
      const t = zeros([2, 2])
      await ctx.be.write(t, Float32Array.from([1, 2, 3, 4]))
      assert.deepEqual([...await get(t)], [1, 2, 3, 4])
    })

    it('wrong sizes throw ShapeError', async function () {
      throwsShape(() => ctx.be.upload(new Float32Array(5), [2, 3]), 'upload 5 into [2,3]')
      throwsShape(() => ctx.be.alloc([2, -1]), 'alloc [2,-1]')
      throwsShape(() => ctx.be.alloc([2.5]), 'alloc [2.5]')
      const t = zeros([4])
      await rejectsShape(() => ctx.be.write(t, new Float32Array(3)), 'write 3 into [4]')
    })

    it('free right after a queued download or write does not disturb them', async function () {
      const t = ctx.be.upload(Float32Array.from([1, 2, 3]), [3])
      const u = ctx.be.alloc([3])
      const pending = [ctx.be.scale(u, 2), ctx.be.write(u, Float32Array.from([4, 5, 6]))]
      const got = ctx.be.download(t)
      const gotU = ctx.be.download(u)
      ctx.be.free(t)
      ctx.be.free(u)
      await Promise.all(pending)
      assert.deepEqual([...await got], [1, 2, 3])
      assert.deepEqual([...await gotU], [4, 5, 6])
    })

    it('kernels run in call order without awaiting each one', async function () {
      const a = up(Float32Array.from([1, 2, 3]), [3])
      const b = up(Float32Array.from([10, 20, 30]), [3])
      const pending = [ctx.be.fill(a, 2), ctx.be.scale(a, 3), ctx.be.accumulate(a, b, 0.5), ctx.be.scale(b, 0)]
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
      await ctx.be.accumulate(a, b)
      assertClose(await get(a), plus(x, y), tol, 'accumulate alpha=1')
      await ctx.be.accumulate(a, b, -0.5)
      assertClose(await get(a), x.map((v, i) => v + 0.5 * y[i]), tol, 'accumulate alpha=-0.5')
      await ctx.be.scale(a, 3)
      assertClose(await get(a), x.map((v, i) => 3 * (v + 0.5 * y[i])), tol, 'scale')
      await ctx.be.copy(a, b)
      assert.deepEqual(await get(a), y)
      await ctx.be.fill(a, -1.5)
      assert.deepEqual([...await get(a)], new Array(101).fill(-1.5))
      const ia = up(Int32Array.from([1, 2]), [2])
      const ib = zeros([2], 'i32')
      await ctx.be.copy(ib, ia)
      assert.deepEqual([...await ctx.be.download(ib)], [1, 2])
    })

    it('sumSquares is accurate and does not overflow float32', async function () {
      const r = rng(seed + 2)
      const x = randF32(r, 1003, 3)
      const t = up(x, [1003])
      const s = await ctx.be.sumSquares(t)
      assert.ok(Math.abs(s - x.reduce((a, v) => a + v * v, 0)) <= 1e-6 * s)
      const big = up(new Float32Array(4).fill(3e38), [4])
      const sb = await ctx.be.sumSquares(big)
      assert.ok(Number.isFinite(sb) && Math.abs(sb / (4 * 9e76) - 1) < 1e-6, `sumSquares of 3e38s should be finite in float64, got ${sb}`)
    })

    it('utility shape errors', async function () {
      const a = zeros([4]); const b = zeros([5]); const i = zeros([4], 'i32')
      await rejectsShape(() => ctx.be.copy(a, b), 'copy size mismatch')
      await rejectsShape(() => ctx.be.copy(a, i), 'copy dtype mismatch')
      await rejectsShape(() => ctx.be.accumulate(a, b), 'accumulate size mismatch')
      await rejectsShape(() => ctx.be.scale(i, 2), 'scale i32')
    })
  })
}
