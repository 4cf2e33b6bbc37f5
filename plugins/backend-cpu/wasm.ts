// Loads the WASM SIMD kernels: assembles wasm/kernels.wat with the `wabt` npm package (no network,
// no system compiler) and compiles it once per process. The compiled module is sent to each worker,
// which instantiates it on the backend's shared memory.
import { readFile } from 'node:fs/promises'

// The project's lib settings (ES2023, no DOM) carry no WebAssembly types: the few used here, locally.
/** A shared WebAssembly.Memory. */
export interface WasmMemory {
  readonly buffer: SharedArrayBuffer
  grow(pages: number): number
}
/** A compiled WebAssembly.Module (opaque; structured-cloneable to workers). */
export interface WasmModule { readonly __wasmModule?: never }
interface WasmApi {
  compile(bytes: Uint8Array): Promise<WasmModule>
  Memory: new (d: { initial: number, maximum: number, shared: boolean }) => WasmMemory
  Instance: new (m: WasmModule, imports: object) => { exports: unknown }
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

export interface WasmKernels {
  gemm(A: number, sam: number, sar: number, sak: number, Bp: number, ps: number, C: number, ldc: number, M: number, K: number, np: number, nlast: number, beta: number, bias: number, tmp: number): void
  pack_b(b: number, sbk: number, sbj: number, K: number, cols: number, dst: number): void
  pack_a4(a: number, sam: number, sak: number, M: number, K: number, dst: number): void
  layernorm_forward(out: number, mean: number, rstd: number, inp: number, w: number, b: number, C: number, r0: number, r1: number): void
  layernorm_backward_input(dinp: number, dout: number, inp: number, w: number, mean: number, rstd: number, C: number, r0: number, r1: number): void
  layernorm_backward_params(dw: number, db: number, dout: number, inp: number, mean: number, rstd: number, N: number, C: number, c0: number, c1: number): void
  colsum_add(src: number, ld: number, rows: number, ncols: number, dst: number): void
  gelu_forward(out: number, inp: number, n: number): void
  gelu_backward(dinp: number, inp: number, dout: number, n: number): void
  dots(x: number, base: number, stride: number, n: number, hs: number, scale: number, dst: number): void
  wsum(coef: number, base: number, stride: number, n: number, hs: number, scale: number, dst: number, acc: number): void
  axpy_rows(coef: number, base: number, stride: number, n: number, hs: number, scale: number, x: number): void
}

const FEATURES = { simd: true, threads: true }

let compiled: Promise<WasmModule> | null = null

/** The compiled kernel module (assembled on first use, then cached for the process). */
export async function kernelModule (): Promise<WasmModule> {
  compiled ??= (async () => {
    const source = await readFile(new URL('./wasm/kernels.wat', import.meta.url), 'utf8')
    const wabt = await (await import('wabt')).default()
    const parsed = wabt.parseWat('kernels.wat', source, FEATURES)
    try {
      // wabt's typings omit validate's features argument; without it shared memory is rejected
      const validate = parsed.validate as unknown as (f: object) => void
      parsed.resolveNames()
      validate.call(parsed, FEATURES)
      const { buffer } = parsed.toBinary({})
      return await WA.compile(buffer)
    } finally {
      parsed.destroy()
    }
  })()
  return await compiled
}

/** Memory for tensors, shared with the workers. 65536 pages = 4 GiB, the wasm32 limit. */
export function createSharedMemory (initialPages = 16): WasmMemory {
  return new WA.Memory({ initial: initialPages, maximum: 65536, shared: true })
}

export function instantiate (module: WasmModule, memory: WasmMemory): WasmKernels {
  const instance = new WA.Instance(module, { env: { memory } })
  return instance.exports as unknown as WasmKernels
}
