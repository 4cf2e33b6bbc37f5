// The CPU backend's faster kernels against its plain WASM SIMD128 ones: the optional native GEMM,
// attention and GELU (plugins/backend-cpu/native/, built by `npm install` where a C compiler exists) and relaxed
// SIMD's fused multiply-add. Shapes cross every edge of the native blocking (MR/NR tiles, the 192-row
// A block, the 256-deep K slice) and of the 8-column WASM panels; bad arguments to the addon throw
// and leave it working. Without a built addon (no compiler) those cases are skipped, said in the title.
import assert from 'node:assert/strict'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'
import { loadNativeKernels } from '../plugins/backend-cpu/native.ts'
import { fusedSource, relaxedSimd } from '../plugins/backend-cpu/wasm.ts'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { backendCompliance } from '../core/testing/index.ts'

// The fallbacks stay covered where the addon is built (test/backend-cpu.test.ts runs the default,
// native where built): the WASM GEMM with FMA and no native kernels, and plain SIMD128 alone.
backendCompliance('cpu (wasm simd + fma, no native kernels, 2 worker threads)', async () => await createCpuBackend({ threads: 2, native: false }))
backendCompliance('cpu (wasm simd128 only: no fma, no native kernels, inline)', async () => await createCpuBackend({ threads: 0, native: false, fma: false }), { eventLoop: false })

function random (n: number, seed: number): Float32Array {
  let s = seed >>> 0
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = s / 2 ** 31 - 1 }
  return a
}

/** out, dinp, dweight, dbias of one matmul forward + backward. */
async function matmulOnce (be: ComputeBackend, N: number, C: number, OC: number, bias: boolean): Promise<Float32Array[]> {
  const x = be.upload(random(N * C, N + C), [N, C])
  const w = be.upload(random(OC * C, OC), [OC, C])
  const b = bias ? be.upload(random(OC, 3), [OC]) : null
  const dout = be.upload(random(N * OC, 4), [N, OC])
  const out = be.alloc([N, OC]); const dx = be.alloc([N, C]); const dw = be.alloc([OC, C]); const db = be.alloc([OC])
  try {
    await be.matmulForward(out, x, w, b)
    await be.matmulBackward(dx, dw, db, dout, x, w)
    return await Promise.all([out, dx, dw, db].map(async t => await be.download(t) as Float32Array))
  } finally {
    for (const t of [x, w, b, dout, out, dx, dw, db]) if (t !== null) be.free(t)
  }
}

function assertClose (got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, what)
  for (let i = 0; i < got.length; i++) {
    const tol = 1e-5 * (1 + Math.abs(want[i])) * 8
    if (!(Math.abs(got[i] - want[i]) <= tol)) assert.fail(`${what}[${i}]: ${got[i]} against ${want[i]}`)
  }
}

// [N, C, OC]: N rows, K = C, OC columns forward (backward also runs K = N and K = OC)
const SHAPES: Array<[number, number, number]> = [[1, 1, 1], [5, 7, 13], [9, 300, 33], [200, 19, 70], [13, 257, 48]]

describe('backend-cpu: native GEMM and fused multiply-add against the plain WASM GEMM', function () {
  this.timeout(60000)
  const native = loadNativeKernels()
  let plain: ComputeBackend
  const others: Array<[string, ComputeBackend]> = []

  before(async function () {
    plain = await createCpuBackend({ threads: 0, fma: false, native: false })
    if (relaxedSimd()) others.push(['wasm + fma', await createCpuBackend({ threads: 0, native: false })])
    if (native !== null) {
      others.push(['native inline', await createCpuBackend({ threads: 0 })])
      others.push(['native on 2 workers', await createCpuBackend({ threads: 2 })])
    }
  })
  after(async function () {
    await plain?.dispose()
    for (const [, be] of others) await be.dispose()
  })

  it(`agrees on odd shapes (${native === null ? 'native GEMM not built here: fma only' : `native ${native.isa() ?? ''}`})`, async function () {
    assert.ok(others.length > 0, 'neither relaxed SIMD nor the native GEMM is available')
    for (const [N, C, OC] of SHAPES) {
      for (const bias of [true, false]) {
        const want = await matmulOnce(plain, N, C, OC, bias)
        for (const [name, be] of others) {
          const got = await matmulOnce(be, N, C, OC, bias)
          const names = ['out', 'dinp', 'dweight', 'dbias']
          got.forEach((g, i) => { assertClose(g, want[i], `${name} ${N}x${C}x${OC}${bias ? ' +bias' : ''} ${names[i]}`) })
        }
      }
    }
  })

  it(`attention forward and backward agree where the head size is a multiple of 8 (${native === null ? 'native kernels not built here: skipped' : 'native'})`, async function () {
    if (native === null) this.skip()
    const run = async (be: ComputeBackend, B: number, T: number, C: number, NH: number): Promise<Float32Array[]> => {
      const qkv = be.upload(random(B * T * 3 * C, T), [B, T, 3 * C])
      const dout = be.upload(random(B * T * C, C), [B, T, C])
      const dqkv = be.upload(random(B * T * 3 * C, 9), [B, T, 3 * C]) // accumulates
      const out = be.alloc([B, T, C]); const pre = be.alloc([B, NH, T, T]); const att = be.alloc([B, NH, T, T])
      const dpre = be.alloc([B, NH, T, T]); const datt = be.alloc([B, NH, T, T])
      try {
        await be.attentionForward(out, pre, att, qkv, NH)
        await be.attentionBackward(dqkv, dpre, datt, dout, qkv, att, NH)
        return await Promise.all([out, pre, att, dqkv, dpre, datt].map(async t => await be.download(t) as Float32Array))
      } finally {
        for (const t of [qkv, dout, dqkv, out, pre, att, dpre, datt]) be.free(t)
      }
    }
    const names = ['out', 'preatt', 'att', 'dqkv', 'dpreatt', 'datt']
    for (const [B, T, C, NH] of [[2, 5, 16, 2], [1, 17, 64, 2], [3, 64, 128, 4]]) {
      const want = await run(plain, B, T, C, NH)
      for (const [name, be] of others.filter(([n]) => n.startsWith('native'))) {
        const got = await run(be, B, T, C, NH)
        got.forEach((g, i) => { assertClose(g, want[i], `${name} attention B${B} T${T} C${C} NH${NH} ${names[i]}`) })
      }
    }
    const mem = new Uint8Array(new SharedArrayBuffer(1 << 16))
    const fwd = native.attentionForward as unknown as (...a: unknown[]) => void
    assert.throws(() => { fwd(mem, 0, 4096, 8192, 12288, 1, 4, 12, 2, 0, 2) }, { code: 'ERR_NATIVE_ATTENTION_ARGS' }) // head size 6
    assert.throws(() => { fwd(mem, 0, 4096, 8192, 65000, 1, 4, 16, 2, 0, 2) }, { code: 'ERR_NATIVE_ATTENTION_BOUNDS' })
    assert.throws(() => { fwd(mem, 0, 4096, 8192, 12288, 1, 4, 16, 2, 0, 3) }, { code: 'ERR_NATIVE_ATTENTION_ARGS' }) // p1 > B*NH
    assert.throws(() => { fwd(mem, 0, 4096) }, { code: 'ERR_NATIVE_ATTENTION_ARGS' })
    fwd(mem, 0, 4096, 8192, 12288, 1, 4, 16, 2, 0, 2) // zeros in: uniform attention, zero out
    assert.deepEqual(Array.from(new Float32Array(mem.buffer, 8192, 4)), [1, 0, 0, 0])
  })

  it(`GELU forward and backward agree, NaN passes through (${native === null ? 'native kernels not built here: skipped' : 'native'})`, async function () {
    if (native === null) this.skip()
    const n = 8 * 37 + 4 // 8-lane vectors, then a 4-lane tail the native kernel runs scalar
    const x = random(n, 11).map((v, i) => i === 5 ? NaN : i === 6 ? 40 : i === 7 ? -40 : v * 6)
    const run = async (be: ComputeBackend): Promise<Float32Array[]> => {
      const inp = be.upload(x, [n]); const dout = be.upload(random(n, 12), [n]); const dinp = be.upload(random(n, 13), [n]); const out = be.alloc([n])
      try {
        await be.geluForward(out, inp)
        await be.geluBackward(dinp, inp, dout)
        return await Promise.all([out, dinp].map(async t => await be.download(t) as Float32Array))
      } finally {
        for (const t of [inp, dout, dinp, out]) be.free(t)
      }
    }
    const want = await run(plain)
    for (const i of [0, 1]) { assert.ok(Number.isNaN(want[i][5])); want[i][5] = 0 }
    for (const [name, be] of others.filter(([k]) => k.startsWith('native'))) {
      const got = await run(be)
      for (const i of [0, 1]) {
        assert.ok(Number.isNaN(got[i][5]), `${name} gelu NaN`)
        got[i][5] = 0
        assertClose(got[i], want[i], `${name} gelu ${i === 0 ? 'out' : 'dinp'}`)
      }
    }
  })

  it(`softmax + cross-entropy agree on a BPE-sized row, NaN and -Infinity logits, ignored targets (${native === null ? 'native kernels not built here: skipped' : 'native'})`, async function () {
    if (native === null) this.skip()
    const N = 5; const V = 50_257 // 8-lane vectors, 512-element sum blocks, then a 1-element tail
    const logits = random(N * V, 21).map(v => v * 30)
    logits[1 * V + 7] = NaN // row 1: NaN probs and loss
    logits[2 * V + 9] = -Infinity // row 2: that prob exactly 0
    logits[4 * V + V - 1] = 80 // row 4: the tail element dominates
    const targets = Int32Array.from([3, 8, 10, -1, V - 1]) // row 3 ignored: loss 0, no gradient
    const run = async (be: ComputeBackend): Promise<Float32Array[]> => {
      const lg = be.upload(logits, [N, V]); const tg = be.upload(targets, [N]); const probs = be.alloc([N, V]); const losses = be.alloc([N])
      const dl = be.upload(random(N * V, 22), [N, V])
      try {
        await be.crossEntropyForward(losses, probs, lg, tg)
        await be.crossEntropyBackward(dl, probs, tg, 1 / 7)
        return await Promise.all([losses, probs, dl].map(async t => await be.download(t) as Float32Array))
      } finally {
        for (const t of [lg, tg, probs, losses, dl]) be.free(t)
      }
    }
    const masked = (name: string, out: Float32Array[]): Float32Array[] => {
      assert.ok(Number.isNaN(out[0][1]), `${name} row 1 loss NaN`)
      assert.ok(out[1].subarray(V, 2 * V).every(Number.isNaN), `${name} row 1 probs NaN`)
      assert.equal(out[1][2 * V + 9], 0, `${name} exp(-inf)`)
      assert.equal(out[0][3], 0, `${name} ignored target`)
      out[0][1] = 0; out[1].fill(0, V, 2 * V); out[2].fill(0, V, 2 * V)
      return out
    }
    const want = masked('plain', await run(plain))
    for (const [name, be] of others.filter(([k]) => k.startsWith('native'))) {
      const got = masked(name, await run(be))
      got.forEach((g, i) => { assertClose(g, want[i], `${name} cross-entropy ${['losses', 'probs', 'dlogits'][i]}`) })
    }
  })

  it('the AVX2 kernel agrees too (capped to it on an AVX-512 CPU)', async function () {
    if (native?.isa() !== 'avx512') this.skip()
    try {
      assert.equal(native.useIsa('avx2'), 'avx2')
      const [name, be] = others.find(([n]) => n === 'native inline') as [string, ComputeBackend]
      for (const [N, C, OC] of SHAPES) {
        const want = await matmulOnce(plain, N, C, OC, true)
        const got = await matmulOnce(be, N, C, OC, true)
        got.forEach((g, i) => { assertClose(g, want[i], `${name} avx2 ${N}x${C}x${OC} output ${i}`) })
      }
    } finally {
      native.useIsa('avx512')
    }
  })

  it('names the native kernels and FMA in info.device', function () {
    assert.match(plain.info.device, /wasm simd128\)$/)
    for (const [name, be] of others) assert.match(be.info.device, name.startsWith('native') ? /native avx(512|2) gemm\+attention\+gelu/ : /\+ fma\)$/, name)
  })

  it('the native GEMM rejects bad arguments with a code and keeps working', function () {
    if (native === null) this.skip()
    const mem = new Uint8Array(new SharedArrayBuffer(4096))
    const f = new Float32Array(mem.buffer)
    f.set([1, 2, 3, 4], 0) // A [2, 2] at 0, B [2, 2] at 16, C at 32
    f.set([5, 6, 7, 8], 4)
    const args = (C: number, M: number): number[] => [0, 8, 8, 4, 16, 8, 4, C, 8, M, 2, 2, 0, 0]
    const gemm = native.gemm as unknown as (...a: unknown[]) => void // untyped, as a bad caller would
    assert.throws(() => { gemm(mem, ...args(4090, 2)) }, { code: 'ERR_NATIVE_GEMM_BOUNDS' })
    assert.throws(() => { gemm(mem, ...args(32, -1)) }, { code: 'ERR_NATIVE_GEMM_ARGS' })
    assert.throws(() => { gemm(new Float32Array(4), ...args(32, 2)) }, { code: 'ERR_NATIVE_GEMM_ARGS' })
    assert.throws(() => { gemm(mem, 1, 2) }, { code: 'ERR_NATIVE_GEMM_ARGS' })
    gemm(mem, ...args(32, 2))
    assert.deepEqual(Array.from(f.subarray(8, 12)), [19, 22, 43, 50])
  })

  it('fusing rewrites exactly the GEMM\'s 8 multiply-adds, and refuses a source that drifted', function () {
    const mac = (c: string, b: string): string => `(local.set ${c} (f32x4.add (local.get ${c}) (f32x4.mul (local.get $a) (local.get ${b}))))`
    const src = ['$c00', '$c01', '$c10', '$c11', '$c20', '$c21', '$c30', '$c31'].map((c, i) => mac(c, `$b${i % 2}`)).join('\n')
    const out = fusedSource(src)
    assert.equal(out.match(/f32x4\.relaxed_madd \(local\.get \$a\) \(local\.get \$b[01]\) \(local\.get \$c\d\d\)/g)?.length, 8)
    assert.doesNotMatch(out, /f32x4\.add/)
    assert.throws(() => fusedSource(src.split('\n').slice(1).join('\n')), /expected the GEMM's 8 multiply-adds, found 7/)
  })
})
