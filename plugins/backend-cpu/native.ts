// The optional native kernels: the GEMM (native/gemm.c, AVX-512 or AVX2+FMA), causal attention
// (native/attention.c), GELU (native/gelu.c) and softmax + cross-entropy (native/xent.c), built by `npm install` where a C
// compiler exists (native/build.mjs). Absent, unbuildable or on a CPU without AVX2/FMA: null, and the
// WASM GEMM runs. Each thread (main and every worker) loads it for itself; N-API addons are per thread.
import { createRequire } from 'node:module'

export interface NativeKernels {
  /** C(+)= A @ B (+ bias) on `view` (the whole memory); addressing as in native/gemm.c, in bytes. */
  gemm(view: Uint8Array, A: number, sam: number, sar: number, sak: number, B: number, sbk: number, sbj: number,
    C: number, ldc: number, M: number, K: number, N: number, beta: number, bias: number): void
  /** kernels.ts attentionForward for (b, h) pairs [p0, p1); tensors as byte offsets; C / NH a multiple of 8. */
  attentionForward(view: Uint8Array, out: number, preatt: number, att: number, qkv: number, B: number, T: number, C: number, NH: number, p0: number, p1: number): void
  /** kernels.ts attentionBackward, the same way. */
  attentionBackward(view: Uint8Array, dqkv: number, dpreatt: number, datt: number, dout: number, qkv: number, att: number,
    B: number, T: number, C: number, NH: number, p0: number, p1: number): void
  /** GELU (tanh approximation) of n floats: out = gelu(inp); byte offsets. */
  geluForward(view: Uint8Array, out: number, inp: number, n: number): void
  /** dinp += gelu'(inp) * dout over n floats; byte offsets. */
  geluBackward(view: Uint8Array, dinp: number, inp: number, dout: number, n: number): void
  /** kernels.ts crossEntropyForward for rows [r0, r1) of N; tensors as byte offsets. */
  crossEntropyForward(view: Uint8Array, losses: number, probs: number, logits: number, targets: number, N: number, V: number, r0: number, r1: number): void
  /** kernels.ts crossEntropyBackward for rows [r0, r1) of N, the same way. */
  crossEntropyBackward(view: Uint8Array, dlogits: number, probs: number, targets: number, scale: number, N: number, V: number, r0: number, r1: number): void
  /** 'avx512', 'avx2', or null where the CPU has neither. */
  isa(): string | null
  /** Caps the kernel at 'avx512' or 'avx2' for the whole process (tests run the AVX2 kernel this way); returns isa(). */
  useIsa(cap: 'avx512' | 'avx2'): string | null
}

let loaded: NativeKernels | null | undefined

/** The native kernels, or null (LAYERSWARM_NATIVE=0 turns them off). */
export function loadNativeKernels (): NativeKernels | null {
  if (loaded !== undefined) return loaded
  loaded = null
  if (process.env.LAYERSWARM_NATIVE === '0') return null
  try {
    const m = createRequire(import.meta.url)('./native/build/gemm.node') as NativeKernels
    if (m.isa() !== null) loaded = m
  } catch {
    // not built here (no compiler at install): the WASM GEMM is the fallback
  }
  return loaded
}

/** Columns per native micro-kernel tile (chunks of a job split on multiples of it). */
export function nativeTileCols (n: NativeKernels): number {
  return n.isa() === 'avx512' ? 32 : 16
}
