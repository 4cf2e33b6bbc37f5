// Flash attention on the CPU backend: causal multi-head attention without [B,NH,T,T] buffers.
// Each query row walks its keys in tiles of TILE with an online softmax (running max m, running sum
// l, the output row rescaled by exp(m_old - m_new) when the max grows), so a thread holds one tile of
// scores: memory is O(TILE) per thread beside qkv/out, not O(T^2). Forward keeps lse = m + log(l)
// per row; backward recomputes p = exp(s - lse) tile by tile (FlashAttention-2's backward, row by
// row): dv += p dout, ds = p (dout.v - D) with D = dout.out, dq += sc ds k, dk += sc ds q.
// With the WASM kernels (head size a multiple of 4) the dot products and row sums run in SIMD; the
// plain TypeScript path (any head size) accumulates in float64.
import type { WasmKernels } from './wasm.ts'

/** Keys per tile: the score scratch of one thread is 2 x TILE floats. */
export const FLASH_TILE = 64
export const FLASH_SCRATCH = 2 * FLASH_TILE

/**
 * Forward rows [r0, r1) of the B*NH*T rows (row r = (b*NH + h)*T + t). Offsets in f32 elements into
 * `f`; `scratch`: FLASH_SCRATCH elements this thread owns (WASM path).
 */
export function flashForward (f: Float32Array, wasm: WasmKernels | null, out: number, lse: number, qkv: number,
  T: number, C: number, NH: number, r0: number, r1: number, scratch: number): void {
  const hs = C / NH
  const C3 = 3 * C
  const sc = 1 / Math.sqrt(hs)
  const simd = wasm !== null && hs % 4 === 0
  const s = new Float64Array(simd ? 0 : FLASH_TILE)
  for (let r = r0; r < r1; r++) {
    const t = r % T
    const p = (r - t) / T
    const b = Math.floor(p / NH)
    const h = p % NH
    const qrow = qkv + (b * T + t) * C3 + h * hs
    const kbase = qkv + b * T * C3 + C + h * hs
    const o = out + (b * T + t) * C + h * hs
    let m = -Infinity
    let l = 0
    for (let k0 = 0; k0 <= t; k0 += FLASH_TILE) {
      const n = Math.min(FLASH_TILE, t + 1 - k0)
      const krow = kbase + k0 * C3
      if (simd) (wasm as WasmKernels).dots(qrow * 4, krow * 4, C3 * 4, n, hs, sc, scratch * 4)
      else {
        for (let j = 0; j < n; j++) {
          let d = 0
          for (let i = 0; i < hs; i++) d += f[qrow + i] * f[krow + j * C3 + i]
          s[j] = d * sc
        }
      }
      // the tile's scores: in the scratch (WASM wrote them there) or in s
      const sv: Float32Array | Float64Array = simd ? f : s
      const s0 = simd ? scratch : 0
      let mt = m
      for (let j = s0; j < s0 + n; j++) if (sv[j] > mt) mt = sv[j]
      const alpha = m === -Infinity ? 0 : Math.exp(m - mt)
      let sum = 0
      for (let j = s0; j < s0 + n; j++) {
        const e = Math.exp(sv[j] - mt)
        sv[j] = e
        sum += e
      }
      l = l * alpha + sum
      m = mt
      if (k0 > 0) for (let i = 0; i < hs; i++) f[o + i] *= alpha
      if (simd) (wasm as WasmKernels).wsum(scratch * 4, (krow + C) * 4, C3 * 4, n, hs, 1, o * 4, k0 > 0 ? 1 : 0)
      else {
        for (let i = 0; i < hs; i++) {
          let acc = k0 > 0 ? f[o + i] : 0
          for (let j = 0; j < n; j++) acc += s[j] * f[krow + C + j * C3 + i]
          f[o + i] = acc
        }
      }
    }
    const inv = l === 0 ? 0 : 1 / l
    for (let i = 0; i < hs; i++) f[o + i] *= inv
    f[lse + r] = m + Math.log(l)
  }
}

/**
 * Backward of the (b, h) pairs [p0, p1): ACCUMULATES into dqkv. A pair's dk/dv rows are written by
 * every query row of that pair, so pairs (not rows) are the unit of work split across threads.
 */
export function flashBackward (f: Float32Array, wasm: WasmKernels | null, dqkv: number, dout: number, out: number,
  qkv: number, lse: number, T: number, C: number, NH: number, p0: number, p1: number, scratch: number): void {
  const hs = C / NH
  const C3 = 3 * C
  const sc = 1 / Math.sqrt(hs)
  const simd = wasm !== null && hs % 4 === 0
  const w = wasm as WasmKernels
  const ps = simd ? null : new Float64Array(FLASH_TILE)
  const ds = simd ? null : new Float64Array(FLASH_TILE)
  const pS = scratch; const dsS = scratch + FLASH_TILE // SIMD path: p and ds tiles in the scratch
  for (let p = p0; p < p1; p++) {
    const b = Math.floor(p / NH)
    const h = p % NH
    const kbase = qkv + b * T * C3 + C + h * hs
    const dkbase = dqkv + b * T * C3 + C + h * hs
    for (let t = 0; t < T; t++) {
      const qrow = qkv + (b * T + t) * C3 + h * hs
      const dqrow = dqkv + (b * T + t) * C3 + h * hs
      const o = (b * T + t) * C + h * hs
      let D = 0
      for (let i = 0; i < hs; i++) D += f[dout + o + i] * f[out + o + i]
      const L = f[lse + p * T + t]
      for (let k0 = 0; k0 <= t; k0 += FLASH_TILE) {
        const n = Math.min(FLASH_TILE, t + 1 - k0)
        const krow = kbase + k0 * C3
        const dkrow = dkbase + k0 * C3
        if (simd) {
          w.dots(qrow * 4, krow * 4, C3 * 4, n, hs, sc, pS * 4)
          for (let j = 0; j < n; j++) f[pS + j] = Math.exp(f[pS + j] - L)
          w.dots((dout + o) * 4, (krow + C) * 4, C3 * 4, n, hs, 1, dsS * 4)
          w.axpy_rows(pS * 4, (dkrow + C) * 4, C3 * 4, n, hs, 1, (dout + o) * 4)
          for (let j = 0; j < n; j++) f[dsS + j] = f[pS + j] * (f[dsS + j] - D)
          w.wsum(dsS * 4, krow * 4, C3 * 4, n, hs, sc, dqrow * 4, 1)
          w.axpy_rows(dsS * 4, dkrow * 4, C3 * 4, n, hs, sc, qrow * 4)
          continue
        }
        const P = ps as Float64Array; const S = ds as Float64Array
        for (let j = 0; j < n; j++) {
          const kr = krow + j * C3
          let d = 0; let dp = 0
          for (let i = 0; i < hs; i++) { d += f[qrow + i] * f[kr + i]; dp += f[dout + o + i] * f[kr + C + i] }
          P[j] = Math.exp(d * sc - L)
          S[j] = P[j] * (dp - D) * sc
        }
        for (let i = 0; i < hs; i++) {
          let dq = 0
          const qi = f[qrow + i]; const gi = f[dout + o + i]
          for (let j = 0; j < n; j++) {
            const kr = krow + j * C3 + i; const dkr = dkrow + j * C3 + i
            dq += S[j] * f[kr]
            f[dkr] += S[j] * qi
            f[dkr + C] += P[j] * gi
          }
          f[dqrow + i] += dq
        }
      }
    }
  }
}
