// Loads the WASM SIMD kernels: assembles wasm/kernels.wat with the `wabt` npm package (no network,
// no system compiler) and compiles it once per process. The compiled module is sent to each worker,
// which instantiates it on the backend's shared memory.
import { readFile } from 'node:fs/promises'

export interface WasmKernels {
  gemm(A: number, sam: number, sak: number, Bp: number, C: number, ldc: number, M: number, K: number, np: number, nlast: number, beta: number, bias: number, tmp: number): void
  dots(x: number, base: number, stride: number, n: number, hs: number, scale: number, dst: number): void
  wsum(coef: number, base: number, stride: number, n: number, hs: number, scale: number, dst: number, acc: number): void
  axpy_rows(coef: number, base: number, stride: number, n: number, hs: number, scale: number, x: number): void
}

const FEATURES = { simd: true, threads: true }

let compiled: Promise<WebAssembly.Module> | null = null

/** The compiled kernel module (assembled on first use, then cached for the process). */
export async function kernelModule (): Promise<WebAssembly.Module> {
  compiled ??= (async () => {
    const source = await readFile(new URL('./wasm/kernels.wat', import.meta.url), 'utf8')
    const wabt = await (await import('wabt')).default()
    const parsed = wabt.parseWat('kernels.wat', source, FEATURES)
    try {
      parsed.resolveNames()
      parsed.validate(FEATURES)
      const { buffer } = parsed.toBinary({})
      return await WebAssembly.compile(buffer)
    } finally {
      parsed.destroy()
    }
  })()
  return await compiled
}

/** Memory for tensors, shared with the workers. 65536 pages = 4 GiB, the wasm32 limit. */
export function createSharedMemory (initialPages = 16): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: initialPages, maximum: 65536, shared: true })
}

export function instantiate (module: WebAssembly.Module, memory: WebAssembly.Memory): WasmKernels {
  const instance = new WebAssembly.Instance(module, { env: { memory } })
  return instance.exports as unknown as WasmKernels
}
