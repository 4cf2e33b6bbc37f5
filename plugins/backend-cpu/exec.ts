// Executes kernel jobs on the shared memory. The same code runs inside each worker (worker.ts) and,
// with threads: 0, inline on the caller's thread.
//
// A job is a Float64Array: P[0] = op, P[1..] = arguments (tensor offsets in float32 ELEMENTS, dims,
// scalars), P[SCRATCH] = the scratch base (elements), P[SCRATCH + 1] = scratch elements per thread.
// Each job splits into chunkCount() disjoint chunks (ranges of elements, rows, channels, 8-column
// panels or (b, h) pairs), so threads never write the same element. Threads claim chunks one at a
// time (pool.ts): a thread that the OS runs late, or that is slower, simply takes fewer.
import { FLASH_SCRATCH, flashBackward, flashForward } from './flash-attention.ts'
import * as K from './kernels.ts'
import { llamaChunkCount, llamaJobWork, runLlamaChunk } from './llama-kernels.ts'
import { GemmRunner } from './gemm.ts'
import type { NativeKernels } from './native.ts'
import type { WasmKernels, WasmMemory } from './wasm.ts'

export const OP = {
  // 0 is never a job (zeroed params), so a stale read cannot look like work
  FILL: 1,
  COPY: 2,
  SCALE: 3,
  ACCUMULATE: 4,
  SUM_SQUARES: 5,
  ENCODER_FWD: 6,
  ENCODER_BWD: 7,
  LAYERNORM_FWD: 8,
  LAYERNORM_BWD: 9,
  MATMUL_FWD: 10,
  MATMUL_BWD: 11,
  ATTENTION_FWD: 12,
  ATTENTION_BWD: 13,
  GELU_FWD: 14,
  GELU_BWD: 15,
  RESIDUAL_FWD: 16,
  CROSSENTROPY_FWD: 17,
  CROSSENTROPY_BWD: 18,
  ADAMW: 19,
  /** Range checks on i32 tensors (token ids, targets); partials[part] = 1 where a value is out of range. */
  CHECK_RANGE: 20,
  /** Flash attention (flash-attention.ts): no [B,NH,T,T] buffers. */
  FLASH_FWD: 30, // out, lse, qkv, B, T, C, NH
  FLASH_BWD: 31 // dqkv, dout, out, qkv, lse, B, T, C, NH
} as const

/** Index in the job array of the scratch base and per-part size. */
export const SCRATCH = 60
export const PARAMS_LENGTH = 64

/** [lo, hi) of part `part` of `parts` over n items, in chunks that are multiples of `align`. */
export function partRange (n: number, part: number, parts: number, align = 1): [number, number] {
  const chunk = Math.ceil(n / parts / align) * align
  const lo = Math.min(n, part * chunk)
  return [lo, Math.min(n, lo + chunk)]
}

const elementChunks = (n: number, parts: number): number => Math.max(1, Math.min(Math.ceil(n / 8192), 4 * parts))
const unitChunks = (units: number, parts: number, per = 4): number => Math.max(1, Math.min(units, per * parts))

/** Chunks of MATMUL_BWD: dinp panel chunks, dweight panel chunks, dbias chunks, concatenated. */
function matmulBwdChunks (P: ArrayLike<number>, parts: number): [number, number, number] {
  const C = P[8]; const OC = P[9]
  const panels = unitChunks(Math.ceil(C / 8), parts)
  return [panels, panels, unitChunks(OC, parts, 1)]
}

/** Number of chunks job P splits into. */
export function chunkCount (P: ArrayLike<number>, parts: number): number {
  switch (P[0]) {
    case OP.FILL: case OP.SCALE: case OP.SUM_SQUARES: case OP.CHECK_RANGE: return elementChunks(P[2], parts)
    case OP.COPY: case OP.GELU_FWD: return elementChunks(P[3], parts)
    case OP.ACCUMULATE: case OP.GELU_BWD: case OP.RESIDUAL_FWD: return elementChunks(P[P[0] === OP.ACCUMULATE ? 3 : 4], parts)
    case OP.ADAMW: return elementChunks(P[5], parts)
    case OP.ENCODER_FWD: return unitChunks(P[5], parts)
    case OP.ENCODER_BWD: return unitChunks(P[7], parts)
    case OP.LAYERNORM_FWD: return unitChunks(P[7], parts)
    case OP.LAYERNORM_BWD: return unitChunks(P[9], parts) + unitChunks(P[10], parts, 2)
    case OP.MATMUL_FWD: return unitChunks(Math.ceil(P[7] / 8), parts)
    case OP.MATMUL_BWD: return matmulBwdChunks(P, parts).reduce((a, b) => a + b, 0)
    case OP.ATTENTION_FWD: return unitChunks(P[5] * P[8], parts, 16)
    case OP.ATTENTION_BWD: return unitChunks(P[7] * P[10], parts, 16)
    case OP.CROSSENTROPY_FWD: case OP.CROSSENTROPY_BWD: return unitChunks(P[5], parts)
    case OP.FLASH_FWD: return unitChunks(P[4] * P[7] * P[5], parts, 16) // rows: independent in forward
    case OP.FLASH_BWD: return unitChunks(P[6] * P[9], parts, 16) // (b, h) pairs: they share dk, dv
    default: return llamaChunkCount(P, parts) ?? 1
  }
}

/**
 * Scratch (float32 elements per thread) a job needs: for a matmul, the packed B panels of one chunk
 * (plus, backward, the packed dout^T) and 16 for partial panels.
 */
export function scratchElements (P: ArrayLike<number>, parts: number): number {
  switch (P[0]) {
    case OP.MATMUL_FWD: {
      const C = P[6]; const np = Math.ceil(P[7] / 8)
      return C * 8 * Math.ceil(np / chunkCount(P, parts)) + 16
    }
    case OP.MATMUL_BWD: {
      const N = P[7]; const C = P[8]; const OC = P[9]; const np = Math.ceil(C / 8)
      return packedASize(OC, N) + Math.max(OC, N) * 8 * Math.ceil(np / matmulBwdChunks(P, parts)[0]) + 16
    }
    case OP.FLASH_FWD: case OP.FLASH_BWD: return FLASH_SCRATCH
    default: return 0
  }
}

/**
 * Rough element-operations of job P. Below INLINE_WORK a job runs on the caller's thread: waking the
 * workers costs more (tens of microseconds) than such a job takes, and it blocks the loop for less.
 */
export function jobWork (P: ArrayLike<number>): number {
  switch (P[0]) {
    case OP.FILL: case OP.SCALE: case OP.SUM_SQUARES: case OP.CHECK_RANGE: return P[2]
    case OP.COPY: case OP.ACCUMULATE: return P[3]
    case OP.GELU_FWD: return P[3] * 4
    case OP.GELU_BWD: case OP.RESIDUAL_FWD: return P[4] * 4
    case OP.ADAMW: return P[5] * 4
    case OP.ENCODER_FWD: return P[5] * P[7]
    case OP.ENCODER_BWD: return P[5] * P[6] * P[7]
    case OP.LAYERNORM_FWD: return P[7] * P[8] * 4
    case OP.LAYERNORM_BWD: return P[9] * P[10] * 8
    case OP.MATMUL_FWD: return P[5] * P[6] * P[7]
    case OP.MATMUL_BWD: return 2 * P[7] * P[8] * P[9]
    case OP.ATTENTION_FWD: return P[5] * P[6] * P[6] * P[7]
    case OP.ATTENTION_BWD: return 2 * P[7] * P[8] * P[8] * P[9]
    case OP.CROSSENTROPY_FWD: return P[5] * P[6] * 8
    case OP.CROSSENTROPY_BWD: return P[5] * P[6]
    case OP.FLASH_FWD: return P[4] * P[5] * P[5] * P[6]
    case OP.FLASH_BWD: return 2 * P[6] * P[7] * P[7] * P[8]
    default: return llamaJobWork(P) ?? Infinity
  }
}

export const INLINE_WORK = 32768

/** Elements of A[M, K] packed in 4-row panels (M rounded up to 4). */
const packedASize = (M: number, K: number): number => Math.ceil(M / 4) * 4 * K

export class Executor {
  private f32: Float32Array<ArrayBufferLike> = new Float32Array(0)
  /** The job whose dout^T this thread packed last, and where (matmul backward). */
  private packedJob = -1
  private packedAt = -1
  private i32: Int32Array<ArrayBufferLike> = new Int32Array(0)

  private readonly gemm: GemmRunner
  /** wasm null: plain TypeScript kernels only (the simple version, for comparison and debugging). */
  private u8: Uint8Array<ArrayBufferLike> = new Uint8Array(0)
  private readonly native: NativeKernels | null
  constructor (private readonly memory: WasmMemory, private readonly wasm: WasmKernels | null, native: NativeKernels | null = null) {
    this.native = wasm === null ? null : native
    this.gemm = new GemmRunner(memory, wasm as WasmKernels, this.native)
  }

  /** Runs every chunk of job P on this thread (inline mode). */
  runAll (P: Float64Array, parts: number, partials: Float64Array, job: number): void {
    const nc = chunkCount(P, parts)
    for (let c = 0; c < nc; c++) this.runChunk(P, c, nc, parts, 0, partials, job)
  }

  /**
   * Runs chunk c of the nc = chunkCount(P, parts) chunks of job P as thread `part`: per-thread sums
   * are added to partials[part]; scratch is this thread's slot. `job` identifies the job (per-job caches).
   */
  runChunk (P: Float64Array, c: number, nc: number, parts: number, part: number, partials: Float64Array, job: number): void {
    if (this.f32.buffer.byteLength !== this.memory.buffer.byteLength) {
      this.f32 = new Float32Array(this.memory.buffer)
      this.i32 = new Int32Array(this.memory.buffer)
      this.u8 = new Uint8Array(this.memory.buffer)
    }
    const f = this.f32
    const F = (off: number, n: number): Float32Array => f.subarray(off, off + n)
    const I = (off: number, n: number): Int32Array => this.i32.subarray(off, off + n)
    const scratch = P[SCRATCH] + part * P[SCRATCH + 1]

    switch (P[0]) {
      case OP.FILL: { // t, n, value, isInt
        const [lo, hi] = partRange(P[2], c, nc, 16)
        if (P[4] === 1) K.fill(I(P[1] + lo, hi - lo), P[3]); else K.fill(F(P[1] + lo, hi - lo), P[3])
        return
      }
      case OP.COPY: { // dst, src, n, isInt
        const [lo, hi] = partRange(P[3], c, nc, 16)
        if (P[4] === 1) K.copy(I(P[1] + lo, hi - lo), I(P[2] + lo, hi - lo)); else K.copy(F(P[1] + lo, hi - lo), F(P[2] + lo, hi - lo))
        return
      }
      case OP.SCALE: { // t, n, s
        const [lo, hi] = partRange(P[2], c, nc, 16)
        K.scale(F(P[1] + lo, hi - lo), P[3])
        return
      }
      case OP.ACCUMULATE: { // dst, src, n, alpha
        const [lo, hi] = partRange(P[3], c, nc, 16)
        K.accumulate(F(P[1] + lo, hi - lo), F(P[2] + lo, hi - lo), P[4])
        return
      }
      case OP.SUM_SQUARES: { // t, n
        const [lo, hi] = partRange(P[2], c, nc, 16)
        partials[part] += K.sumSquares(F(P[1] + lo, hi - lo))
        return
      }
      case OP.CHECK_RANGE: { // t, n, lo, hi
        const [a, b] = partRange(P[2], c, nc, 16)
        const ids = I(P[1] + a, b - a)
        const lo = P[3]; const hi = P[4]
        let bad = 0
        for (let i = 0; i < ids.length; i++) if (ids[i] < lo || ids[i] >= hi) { bad = 1; break }
        if (bad === 1) partials[part] = 1
        return
      }
      case OP.ENCODER_FWD: { // out, inp, wte, wpe, N, T, C, V, maxT
        const [N, T, C, V, maxT] = [P[5], P[6], P[7], P[8], P[9]]
        const [r0, r1] = partRange(N, c, nc)
        K.encoderForward(F(P[1], N * C), I(P[2], N), F(P[3], V * C), F(P[4], maxT * C), T, C, r0, r1)
        return
      }
      case OP.ENCODER_BWD: { // dwte, dwpe, dout, inp, B, T, C, V, maxT
        const [B, T, C, V, maxT] = [P[5], P[6], P[7], P[8], P[9]]
        const [c0, c1] = partRange(C, c, nc)
        K.encoderBackward(F(P[1], V * C), F(P[2], maxT * C), F(P[3], B * T * C), I(P[4], B * T), B, T, C, c0, c1)
        return
      }
      case OP.LAYERNORM_FWD: { // out, mean, rstd, inp, weight, bias, N, C
        const N = P[7]; const C = P[8]
        const [r0, r1] = partRange(N, c, nc)
        if (this.wasm !== null && C % 4 === 0) this.wasm.layernorm_forward(P[1] * 4, P[2] * 4, P[3] * 4, P[4] * 4, P[5] * 4, P[6] * 4, C, r0, r1)
        else K.layernormForward(F(P[1], N * C), F(P[2], N), F(P[3], N), F(P[4], N * C), F(P[5], C), F(P[6], C), C, r0, r1)
        return
      }
      case OP.LAYERNORM_BWD: { // dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C
        const N = P[9]; const C = P[10]
        const rowChunks = unitChunks(N, parts) // see chunkCount: row chunks, then channel chunks
        const dout = F(P[4], N * C); const inp = F(P[5], N * C); const mean = F(P[7], N); const rstd = F(P[8], N)
        const simd = this.wasm !== null && C % 4 === 0
        if (c < rowChunks) {
          const [r0, r1] = partRange(N, c, rowChunks)
          if (simd) this.wasm?.layernorm_backward_input(P[1] * 4, P[4] * 4, P[5] * 4, P[6] * 4, P[7] * 4, P[8] * 4, C, r0, r1)
          else K.layernormBackwardInput(F(P[1], N * C), dout, inp, F(P[6], C), mean, rstd, C, r0, r1)
        } else {
          const [c0, c1] = partRange(C, c - rowChunks, nc - rowChunks, 4)
          if (simd) this.wasm?.layernorm_backward_params(P[2] * 4, P[3] * 4, P[4] * 4, P[5] * 4, P[7] * 4, P[8] * 4, N, C, c0, c1)
          else K.layernormBackwardParams(F(P[2], C), F(P[3], C), dout, inp, mean, rstd, N, C, c0, c1)
        }
        return
      }
      case OP.MATMUL_FWD: { // out, inp, weight, bias (-1: none), N, C, OC
        const [out, inp, w, bias, N, C, OC] = [P[1], P[2], P[3], P[4], P[5], P[6], P[7]]
        if (this.wasm === null) {
          const [r0, r1] = partRange(N, c, nc)
          K.matmulForward(F(out, N * OC), F(inp, N * C), F(w, OC * C), bias < 0 ? null : F(bias, OC), C, OC, r0, r1)
          return
        }
        // out[:, cols] = inp @ W[cols, :]^T; B(k=c, j=o) = W[o*C + c]
        this.gemm.panels(inp, C, 1, -1, w, 1, C, out, OC, N, C, OC, 0, bias, c, nc, scratch)
        return
      }
      case OP.MATMUL_BWD: { // dinp, dweight, dbias (-1: none), dout, inp, weight, N, C, OC
        const [dinp, dw, db, dout, inp, w, N, C, OC] = [P[1], P[2], P[3], P[4], P[5], P[6], P[7], P[8], P[9]]
        const [na, nb] = matmulBwdChunks(P, parts) // see chunkCount
        if (c < na) { // dinp[N,C] += dout[N,OC] @ W[OC,C]: A = dout, B(k=o, j=c) = W[o*C + c]
          if (this.wasm === null) {
            const [r0, r1] = partRange(N, c, na)
            K.matmulBackwardInput(F(dinp, N * C), F(dout, N * OC), F(w, OC * C), C, OC, r0, r1)
          } else {
            this.gemm.panels(dout, OC, 1, -1, w, C, 1, dinp, C, N, OC, C, 1, -1, c, na, scratch + packedASize(OC, N))
          }
        } else if (c < na + nb) { // dweight[OC,C] += dout^T @ inp: A(m=o, k=n) = dout[n*OC + o], B(k=n, j=c) = inp[n*C + c]
          if (this.wasm === null) {
            const [o0, o1] = partRange(OC, c - na, nb)
            K.matmulBackwardWeight(F(dw, OC * C), null, F(dout, N * OC), F(inp, N * C), N, C, OC, o0, o1)
          } else {
            // A is strided along k: packed once per thread per job, at the start of the scratch slot
            if (this.packedJob !== job || this.packedAt !== scratch) {
              this.packA(dout, 1, OC, OC, N, scratch)
              this.packedJob = job
              this.packedAt = scratch
            }
            this.gemm.panels(scratch, 0, 0, N, inp, C, 1, dw, C, OC, N, C, 1, -1, c - na, nb, scratch + packedASize(OC, N))
          }
        } else if (db >= 0) { // dbias[OC] += sum over rows of dout
          const [o0, o1] = partRange(OC, c - na - nb, nc - na - nb, 4)
          const mid = this.wasm === null ? o0 : o0 + ((o1 - o0) & ~3) // WASM for whole groups of 4 columns
          if (mid > o0) this.wasm?.colsum_add((dout + o0) * 4, OC * 4, N, mid - o0, (db + o0) * 4)
          if (mid === o1) return
          const sums = new Float64Array(o1 - mid) // the rest in JS, rows outer: dout read contiguously
          for (let n = 0; n < N; n++) {
            const row = dout + n * OC + mid
            for (let o = 0; o < sums.length; o++) sums[o] += f[row + o]
          }
          for (let o = 0; o < sums.length; o++) f[db + mid + o] += sums[o]
        }
        return
      }
      case OP.ATTENTION_FWD: { // out, preatt, att, qkv, B, T, C, NH
        const [out, preatt, att, qkv, B, T, C, NH] = [P[1], P[2], P[3], P[4], P[5], P[6], P[7], P[8]]
        const [p0, p1] = partRange(B * NH, c, nc)
        if (this.wasm === null || (C / NH) % 4 !== 0) {
          K.attentionForward(F(out, B * T * C), F(preatt, B * NH * T * T), F(att, B * NH * T * T), F(qkv, B * T * 3 * C), B, T, C, NH, p0, p1)
        } else if (this.native !== null && (C / NH) % 8 === 0) {
          this.native.attentionForward(this.u8, out * 4, preatt * 4, att * 4, qkv * 4, B, T, C, NH, p0, p1)
        } else {
          this.attentionForwardSimd(out, preatt, att, qkv, T, C, NH, p0, p1)
        }
        return
      }
      case OP.ATTENTION_BWD: { // dqkv, dpreatt, datt, dout, qkv, att, B, T, C, NH
        const [dqkv, dpreatt, datt, dout, qkv, att, B, T, C, NH] = [P[1], P[2], P[3], P[4], P[5], P[6], P[7], P[8], P[9], P[10]]
        const [p0, p1] = partRange(B * NH, c, nc)
        if (this.wasm === null || (C / NH) % 4 !== 0) {
          const n3 = B * T * 3 * C; const nA = B * NH * T * T
          K.attentionBackward(F(dqkv, n3), F(dpreatt, nA), F(datt, nA), F(dout, B * T * C), F(qkv, n3), F(att, nA), B, T, C, NH, p0, p1)
        } else if (this.native !== null && (C / NH) % 8 === 0) {
          this.native.attentionBackward(this.u8, dqkv * 4, dpreatt * 4, datt * 4, dout * 4, qkv * 4, att * 4, B, T, C, NH, p0, p1)
        } else {
          this.attentionBackwardSimd(dqkv, dpreatt, datt, dout, qkv, att, T, C, NH, p0, p1)
        }
        return
      }
      case OP.GELU_FWD: { // out, inp, n
        const [lo, hi] = partRange(P[3], c, nc, 16)
        // WASM for whole groups of 4 (its tanh is a rational approximation: Math.tanh is slow), JS for the rest
        const mid = this.wasm === null ? lo : lo + ((hi - lo) & ~3)
        if (mid > lo && this.native !== null) this.native.geluForward(this.u8, (P[1] + lo) * 4, (P[2] + lo) * 4, mid - lo)
        else if (mid > lo) this.wasm?.gelu_forward((P[1] + lo) * 4, (P[2] + lo) * 4, mid - lo)
        K.geluForward(F(P[1], P[3]), F(P[2], P[3]), mid, hi)
        return
      }
      case OP.GELU_BWD: { // dinp, inp, dout, n
        const [lo, hi] = partRange(P[4], c, nc, 16)
        const mid = this.wasm === null ? lo : lo + ((hi - lo) & ~3)
        if (mid > lo && this.native !== null) this.native.geluBackward(this.u8, (P[1] + lo) * 4, (P[2] + lo) * 4, (P[3] + lo) * 4, mid - lo)
        else if (mid > lo) this.wasm?.gelu_backward((P[1] + lo) * 4, (P[2] + lo) * 4, (P[3] + lo) * 4, mid - lo)
        K.geluBackward(F(P[1], P[4]), F(P[2], P[4]), F(P[3], P[4]), mid, hi)
        return
      }
      case OP.RESIDUAL_FWD: { // out, a, b, n
        const [lo, hi] = partRange(P[4], c, nc, 16)
        K.residualForward(F(P[1], P[4]), F(P[2], P[4]), F(P[3], P[4]), lo, hi)
        return
      }
      case OP.CROSSENTROPY_FWD: { // losses, probs, logits, targets, N, V
        const N = P[5]; const V = P[6]
        const [r0, r1] = partRange(N, c, nc)
        if (this.native !== null) this.native.crossEntropyForward(this.u8, P[1] * 4, P[2] * 4, P[3] * 4, P[4] * 4, N, V, r0, r1)
        else K.crossEntropyForward(F(P[1], N), F(P[2], N * V), F(P[3], N * V), I(P[4], N), V, r0, r1)
        return
      }
      case OP.CROSSENTROPY_BWD: { // dlogits, probs, targets, scale, N, V
        const N = P[5]; const V = P[6]
        const [r0, r1] = partRange(N, c, nc)
        if (this.native !== null) this.native.crossEntropyBackward(this.u8, P[1] * 4, P[2] * 4, P[3] * 4, P[4], N, V, r0, r1)
        else K.crossEntropyBackward(F(P[1], N * V), F(P[2], N * V), I(P[3], N), P[4], V, r0, r1)
        return
      }
      case OP.ADAMW: { // params, grads, m, v, n, lr, beta1, beta2, eps, weightDecay, step, gradScale
        const n = P[5]
        const [lo, hi] = partRange(n, c, nc, 16)
        K.adamwUpdate(F(P[1], n), F(P[2], n), F(P[3], n), F(P[4], n),
          { lr: P[6], beta1: P[7], beta2: P[8], eps: P[9], weightDecay: P[10], step: P[11], gradScale: P[12] }, lo, hi)
        return
      }
      case OP.FLASH_FWD: { // out, lse, qkv, B, T, C, NH
        const [r0, r1] = partRange(P[4] * P[7] * P[5], c, nc)
        flashForward(f, this.wasm, P[1], P[2], P[3], P[5], P[6], P[7], r0, r1, scratch)
        return
      }
      case OP.FLASH_BWD: { // dqkv, dout, out, qkv, lse, B, T, C, NH
        const [p0, p1] = partRange(P[6] * P[9], c, nc)
        flashBackward(f, this.wasm, P[1], P[2], P[3], P[4], P[5], P[7], P[8], P[9], p0, p1, scratch)
        return
      }
      default:
        if (runLlamaChunk(f, P, c, nc, parts, this.wasm === null ? null : this.memory)) return
        throw new Error(`cpu backend: unknown op ${P[0]}`)
    }
  }

  /** dst[(m & ~3)*K + k*4 + (m & 3)] = A(m, k) = a[m*sam + k*sak], rows past M zero (elements). */
  private packA (a: number, sam: number, sak: number, M: number, Kd: number, dst: number): void {
    (this.wasm as WasmKernels).pack_a4(a * 4, sam * 4, sak * 4, M, Kd, dst * 4)
  }

  /** (b, h) pairs [p0, p1): q.k and att@v in WASM, the softmax of each row in JS (exp). hs % 4 == 0. */
  private attentionForwardSimd (out: number, preatt: number, att: number, qkv: number, T: number, C: number, NH: number, p0: number, p1: number): void {
    const w = this.wasm as WasmKernels
    const f = this.f32
    const hs = C / NH
    const C3 = 3 * C
    const sc = 1 / Math.sqrt(hs)
    for (let p = p0; p < p1; p++) {
      const b = Math.floor(p / NH)
      const h = p % NH
      const base = qkv + b * T * C3 + h * hs // q of (b, t=0, h)
      for (let t = 0; t < T; t++) {
        const row = preatt + (p * T + t) * T
        const arow = att + (p * T + t) * T
        w.dots((base + t * C3) * 4, (base + C) * 4, C3 * 4, t + 1, hs, sc, row * 4)
        let maxval = -Infinity
        for (let t2 = 0; t2 <= t; t2++) if (f[row + t2] > maxval) maxval = f[row + t2]
        let sum = 0
        for (let t2 = 0; t2 <= t; t2++) { const e = Math.exp(f[row + t2] - maxval); f[arow + t2] = e; sum += e }
        const inv = sum === 0 ? 0 : 1 / sum
        for (let t2 = 0; t2 <= t; t2++) f[arow + t2] *= inv
        for (let t2 = t + 1; t2 < T; t2++) { f[arow + t2] = 0; f[row + t2] = 0 }
        w.wsum(arow * 4, (base + 2 * C) * 4, C3 * 4, t + 1, hs, 1, (out + (b * T + t) * C + h * hs) * 4, 0)
      }
    }
  }

  /** (b, h) pairs [p0, p1) of the attention backward; see kernels.ts attentionBackward. hs % 4 == 0. */
  private attentionBackwardSimd (dqkv: number, dpreatt: number, datt: number, dout: number, qkv: number, att: number, T: number, C: number, NH: number, p0: number, p1: number): void {
    const w = this.wasm as WasmKernels
    const f = this.f32
    const hs = C / NH
    const C3 = 3 * C
    const sc = 1 / Math.sqrt(hs)
    for (let p = p0; p < p1; p++) {
      const b = Math.floor(p / NH)
      const h = p % NH
      const base = qkv + b * T * C3 + h * hs
      const dbase = dqkv + b * T * C3 + h * hs
      for (let t = 0; t < T; t++) {
        const arow = att + (p * T + t) * T
        const darow = datt + (p * T + t) * T
        const dprow = dpreatt + (p * T + t) * T
        const dout4 = (dout + (b * T + t) * C + h * hs) * 4
        // datt[t2] = v[t2] . dout[t]; dv[t2] += att[t2] * dout[t]
        w.dots(dout4, (base + 2 * C) * 4, C3 * 4, t + 1, hs, 1, darow * 4)
        w.axpy_rows(arow * 4, (dbase + 2 * C) * 4, C3 * 4, t + 1, hs, 1, dout4)
        // softmax backward
        let dot = 0
        for (let t2 = 0; t2 <= t; t2++) dot += f[arow + t2] * f[darow + t2]
        for (let t2 = 0; t2 <= t; t2++) f[dprow + t2] = f[arow + t2] * (f[darow + t2] - dot)
        for (let t2 = t + 1; t2 < T; t2++) { f[darow + t2] = 0; f[dprow + t2] = 0 }
        // dq[t] += sc * sum dpreatt[t2] k[t2]; dk[t2] += sc * dpreatt[t2] q[t]
        w.wsum(dprow * 4, (base + C) * 4, C3 * 4, t + 1, hs, sc, (dbase + t * C3) * 4, 1)
        w.axpy_rows(dprow * 4, (dbase + C) * 4, C3 * 4, t + 1, hs, sc, (base + t * C3) * 4)
      }
    }
  }
}
