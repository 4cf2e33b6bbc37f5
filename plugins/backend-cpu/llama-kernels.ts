// TypeScript kernels of the Llama layers (RMSNorm, rotary embeddings, SwiGLU) and their job glue for
// exec.ts: op numbers, chunking, work estimate, and running one chunk. SwiGLU, an exp per element
// and the slowest of them in plain TypeScript (several times PyTorch's), runs in WASM SIMD
// (wasm/llama.wat, llama-wasm.ts) for whole groups of 4 columns when the backend has SIMD, and so do
// RMSNorm's forward and input gradient where C is a multiple of 4. Same rules as
// kernels.ts: no shape checks here (the backend validated), backward kernels ACCUMULATE (+=), and
// chunks never write the same element (rows, or channel ranges for a parameter gradient).
// Kept apart from exec.ts (which calls in here for these ops) so each file stays small.

import { llamaWasm } from './llama-wasm.ts'
import type { WasmMemory } from './wasm.ts'

type F32 = Float32Array

export const LLAMA_OP = {
  RMSNORM_FWD: 40, // out, rstd, inp, weight, N, C, eps
  RMSNORM_BWD: 41, // dinp, dweight, dout, inp, weight, rstd, N, C
  ROPE_FWD: 42, // out, inp, N, T, C, NH, theta
  ROPE_BWD: 43, // dinp, dout, N, T, C, NH, theta
  SWIGLU_FWD: 44, // out, inp, N, H
  SWIGLU_BWD: 45 // dinp, dout, inp, N, H
} as const

// ---- kernels ----------------------------------------------------------------------------------

/** Rows [r0, r1): rstd = 1/sqrt(mean(x^2) + eps), out = x * rstd * weight. */
export function rmsnormForward (out: F32, rstd: F32, inp: F32, weight: F32, C: number, eps: number, r0: number, r1: number): void {
  for (let n = r0; n < r1; n++) {
    const o = n * C
    let ss = 0
    for (let i = 0; i < C; i++) ss += inp[o + i] * inp[o + i]
    const s = 1 / Math.sqrt(ss / C + eps)
    for (let i = 0; i < C; i++) out[o + i] = inp[o + i] * s * weight[i]
    rstd[n] = s
  }
}

/** Rows [r0, r1) of dinp += rstd * (w*dout - norm * mean(w*dout*norm)), norm = x * rstd. */
export function rmsnormBackwardInput (dinp: F32, dout: F32, inp: F32, weight: F32, rstd: F32, C: number, r0: number, r1: number): void {
  for (let n = r0; n < r1; n++) {
    const o = n * C
    const s = rstd[n]
    let dot = 0
    for (let i = 0; i < C; i++) dot += weight[i] * dout[o + i] * inp[o + i]
    const k = dot * s * s / C // norm * mean(dnorm * norm) = x * k
    for (let i = 0; i < C; i++) dinp[o + i] += s * (weight[i] * dout[o + i] - inp[o + i] * k)
  }
}

/** Channels [c0, c1) of dweight += sum over rows of dout * x * rstd. */
export function rmsnormBackwardWeight (dweight: F32, dout: F32, inp: F32, rstd: F32, N: number, C: number, c0: number, c1: number): void {
  if (c1 <= c0) return
  const acc = new Float64Array(c1 - c0)
  for (let n = 0; n < N; n++) {
    const o = n * C
    const s = rstd[n]
    for (let i = c0; i < c1; i++) acc[i - c0] += dout[o + i] * inp[o + i] * s
  }
  for (let i = c0; i < c1; i++) dweight[i] += acc[i - c0]
}

/**
 * Rows [r0, r1) of qkv [N, 3C] (row n at position n % T): rotates q and k pairs (i, i + HS/2) of each
 * head by +angle (forward) or -angle (sign -1: the transpose, for the backward), v passed through.
 * accumulate: out += result (backward) instead of out = result. out may equal inp when !accumulate.
 */
export function rope (out: F32, inp: F32, T: number, C: number, NH: number, theta: number, sign: number, accumulate: boolean, r0: number, r1: number): void {
  const hs = C / NH
  const half = hs / 2
  const cos = new Float64Array(half)
  const sin = new Float64Array(half)
  const freq = new Float64Array(half)
  for (let i = 0; i < half; i++) freq[i] = Math.pow(theta, -2 * i / hs)
  for (let n = r0; n < r1; n++) {
    const t = n % T
    for (let i = 0; i < half; i++) { const a = t * freq[i]; cos[i] = Math.cos(a); sin[i] = sign * Math.sin(a) }
    const row = n * 3 * C
    for (let h = 0; h < 2 * NH; h++) { // q heads then k heads: channels [0, 2C)
      const base = row + h * hs
      for (let i = 0; i < half; i++) {
        const x1 = inp[base + i]; const x2 = inp[base + half + i]
        const y1 = x1 * cos[i] - x2 * sin[i]
        const y2 = x1 * sin[i] + x2 * cos[i]
        if (accumulate) { out[base + i] += y1; out[base + half + i] += y2 } else { out[base + i] = y1; out[base + half + i] = y2 }
      }
    }
    const v = row + 2 * C
    if (accumulate) for (let i = 0; i < C; i++) out[v + i] += inp[v + i]
    else if (out !== inp) for (let i = 0; i < C; i++) out[v + i] = inp[v + i]
  }
}

/** Rows [r0, r1), columns [i0, H): out[n, i] = silu(gate) * up, gate = inp[n, i], up = inp[n, H + i]. */
export function swigluForward (out: F32, inp: F32, H: number, r0: number, r1: number, i0 = 0): void {
  for (let n = r0; n < r1; n++) {
    const g0 = n * 2 * H; const o = n * H
    for (let i = i0; i < H; i++) {
      const g = inp[g0 + i]
      out[o + i] = g / (1 + Math.exp(-g)) * inp[g0 + H + i]
    }
  }
}

/** Rows [r0, r1), columns [i0, H): dgate += dout * up * silu'(gate), dup += dout * silu(gate). */
export function swigluBackward (dinp: F32, dout: F32, inp: F32, H: number, r0: number, r1: number, i0 = 0): void {
  for (let n = r0; n < r1; n++) {
    const g0 = n * 2 * H; const o = n * H
    for (let i = i0; i < H; i++) {
      const g = inp[g0 + i]
      const s = 1 / (1 + Math.exp(-g))
      const d = dout[o + i]
      dinp[g0 + i] += d * inp[g0 + H + i] * s * (1 + g * (1 - s))
      dinp[g0 + H + i] += d * g * s
    }
  }
}

// ---- job glue (exec.ts) -------------------------------------------------------------------------

function part (n: number, c: number, nc: number): [number, number] {
  const chunk = Math.ceil(n / nc)
  const lo = Math.min(n, c * chunk)
  return [lo, Math.min(n, lo + chunk)]
}

const rowChunks = (rows: number, parts: number, per = 4): number => Math.max(1, Math.min(rows, per * parts))

/** Chunks of a Llama job; undefined for another op. RMSNORM_BWD: row chunks, then channel chunks. */
export function llamaChunkCount (P: ArrayLike<number>, parts: number): number | undefined {
  switch (P[0]) {
    case LLAMA_OP.RMSNORM_FWD: return rowChunks(P[5], parts)
    case LLAMA_OP.RMSNORM_BWD: return rowChunks(P[7], parts) + rowChunks(P[8], parts, 2)
    case LLAMA_OP.ROPE_FWD: case LLAMA_OP.ROPE_BWD: return rowChunks(P[3], parts)
    case LLAMA_OP.SWIGLU_FWD: return rowChunks(P[3], parts)
    case LLAMA_OP.SWIGLU_BWD: return rowChunks(P[4], parts)
    default: return undefined
  }
}

/** Rough element-operations of a Llama job (see exec.ts jobWork); undefined for another op. */
export function llamaJobWork (P: ArrayLike<number>): number | undefined {
  switch (P[0]) {
    case LLAMA_OP.RMSNORM_FWD: return P[5] * P[6] * 4
    case LLAMA_OP.RMSNORM_BWD: return P[7] * P[8] * 8
    case LLAMA_OP.ROPE_FWD: case LLAMA_OP.ROPE_BWD: return P[3] * P[5] * 8
    case LLAMA_OP.SWIGLU_FWD: return P[3] * P[4] * 16
    case LLAMA_OP.SWIGLU_BWD: return P[4] * P[5] * 24
    default: return undefined
  }
}

/**
 * Runs chunk c of nc of a Llama job on the float32 view f of `memory`; false if P is not a Llama op.
 * memory null: plain TypeScript only (the backend's simd: false).
 */
export function runLlamaChunk (f: F32, P: ArrayLike<number>, c: number, nc: number, parts: number, memory: WasmMemory | null = null): boolean {
  const F = (off: number, n: number): F32 => f.subarray(off, off + n)
  switch (P[0]) {
    case LLAMA_OP.RMSNORM_FWD: {
      const N = P[5]; const C = P[6]
      const [r0, r1] = part(N, c, nc)
      if (memory !== null && C % 4 === 0) {
        llamaWasm(memory).rmsnorm_forward(P[1] * 4, P[2] * 4, P[3] * 4, P[4] * 4, C, r0, r1, P[7])
        return true
      }
      rmsnormForward(F(P[1], N * C), F(P[2], N), F(P[3], N * C), F(P[4], C), C, P[7], r0, r1)
      return true
    }
    case LLAMA_OP.RMSNORM_BWD: {
      const N = P[7]; const C = P[8]
      const rc = rowChunks(N, parts)
      if (c < rc) {
        const [r0, r1] = part(N, c, rc)
        if (memory !== null && C % 4 === 0) {
          llamaWasm(memory).rmsnorm_backward_input(P[1] * 4, P[3] * 4, P[4] * 4, P[5] * 4, P[6] * 4, C, r0, r1)
          return true
        }
        rmsnormBackwardInput(F(P[1], N * C), F(P[3], N * C), F(P[4], N * C), F(P[5], C), F(P[6], N), C, r0, r1)
      } else {
        const [c0, c1] = part(C, c - rc, nc - rc)
        rmsnormBackwardWeight(F(P[2], C), F(P[3], N * C), F(P[4], N * C), F(P[6], N), N, C, c0, c1)
      }
      return true
    }
    case LLAMA_OP.ROPE_FWD: case LLAMA_OP.ROPE_BWD: {
      const N = P[3]; const C = P[5]
      const [r0, r1] = part(N, c, nc)
      const fwd = P[0] === LLAMA_OP.ROPE_FWD
      const a = F(P[1], N * 3 * C); const b = P[1] === P[2] ? a : F(P[2], N * 3 * C)
      rope(a, b, P[4], C, P[6], P[7], fwd ? 1 : -1, !fwd, r0, r1)
      return true
    }
    case LLAMA_OP.SWIGLU_FWD: {
      const N = P[3]; const H = P[4]
      const [r0, r1] = part(N, c, nc)
      const n4 = memory === null ? 0 : H & ~3 // bytes below: offsets are in f32 elements
      if (n4 > 0) {
        const w = llamaWasm(memory as WasmMemory)
        for (let n = r0; n < r1; n++) w.swiglu_forward((P[1] + n * H) * 4, (P[2] + n * 2 * H) * 4, (P[2] + n * 2 * H + H) * 4, n4)
      }
      if (n4 < H) swigluForward(F(P[1], N * H), F(P[2], N * 2 * H), H, r0, r1, n4)
      return true
    }
    case LLAMA_OP.SWIGLU_BWD: {
      const N = P[4]; const H = P[5]
      const [r0, r1] = part(N, c, nc)
      const n4 = memory === null ? 0 : H & ~3
      if (n4 > 0) {
        const w = llamaWasm(memory as WasmMemory)
        for (let n = r0; n < r1; n++) {
          const g = (P[3] + n * 2 * H) * 4; const dg = (P[1] + n * 2 * H) * 4
          w.swiglu_backward(dg, dg + H * 4, (P[2] + n * H) * 4, g, g + H * 4, n4)
        }
      }
      if (n4 < H) swigluBackward(F(P[1], N * 2 * H), F(P[2], N * H), F(P[3], N * 2 * H), H, r0, r1, n4)
      return true
    }
    default: return false
  }
}
