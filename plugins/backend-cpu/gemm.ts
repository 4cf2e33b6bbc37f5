// The matmul inner step of one thread: a chunk of 8-column panels of C(+)= A @ B, run by the native
// GEMM where it is loaded (native.ts), else by the WASM kernels (B's panels packed into this thread's
// scratch first, so the WASM kernel reads them contiguously).
import { partRange } from './exec.ts'
import type { NativeKernels } from './native.ts'
import { nativeTileCols } from './native.ts'
import type { WasmKernels, WasmMemory } from './wasm.ts'

export class GemmRunner {
  private u8: Uint8Array<ArrayBufferLike> = new Uint8Array(0)
  private readonly tilePanels: number

  constructor (private readonly memory: WasmMemory, private readonly wasm: WasmKernels, private readonly nativeGemm: NativeKernels | null) {
    this.tilePanels = nativeGemm === null ? 1 : nativeTileCols(nativeGemm) / 8
  }

  /**
   * Chunk c of nch (a range of 8-column panels) of Cm[M, ncols] (+)= A[M, K] @ B[K, ncols].
   * A(m, k) = a[m*sam + k*sak], or with aPackedK >= 0, a is A already packed in 4-row panels (K =
   * aPackedK); B(k, j) = b[k*sbk + j*sbj]; Cm(m, j) = c[m*ldc + j]; offsets and strides in elements.
   */
  panels (a: number, sam: number, sak: number, aPackedK: number, b: number, sbk: number, sbj: number,
    c: number, ldc: number, M: number, Kd: number, ncols: number, beta: number, bias: number,
    chunk: number, nch: number, scratch: number): void {
    // chunks on whole native tiles, so no tile is split between threads
    const [p0, p1] = partRange(Math.ceil(ncols / 8), chunk, nch, this.tilePanels)
    if (p1 <= p0 || M === 0 || Kd === 0) return
    const j0 = p0 * 8
    const cols = Math.min(ncols, p1 * 8) - j0
    const biasBytes = bias < 0 ? 0 : (bias + j0) * 4
    // A(m, k) at a + (m & ~3)*sam + (m & 3)*sar + k*sak (bytes): plain view sar = sam; packed sar = 4
    const [samB, sarB, sakB] = aPackedK < 0 ? [sam * 4, sam * 4, sak * 4] : [aPackedK * 4, 4, 16]
    if (this.nativeGemm !== null) {
      if (this.u8.byteLength !== this.memory.buffer.byteLength) this.u8 = new Uint8Array(this.memory.buffer)
      this.nativeGemm.gemm(this.u8, a * 4, samB, sarB, sakB, (b + j0 * sbj) * 4, sbk * 4, sbj * 4, (c + j0) * 4, ldc * 4, M, Kd, cols, beta, biasBytes)
      return
    }
    const np = p1 - p0
    this.wasm.pack_b((b + j0 * sbj) * 4, sbk * 4, sbj * 4, Kd, cols, scratch * 4)
    const tmp = scratch + np * Kd * 8
    const nlast = cols - (np - 1) * 8
    // (slicing K so a panel slice stays in L1 measured slower here, even at K = 1024)
    this.wasm.gemm(a * 4, samB, sarB, sakB, scratch * 4, Kd * 32, (c + j0) * 4, ldc * 4, M, Kd, np, nlast, beta, biasBytes, tmp * 4)
  }
}
