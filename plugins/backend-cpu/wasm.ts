// Loads the WASM SIMD kernels: assembles wasm/kernels.wat with the `wabt` npm package (no network,
// no system compiler) and compiles it once per process. The compiled module is sent to each worker,
// which instantiates it on the backend's shared memory.
import { readFile } from 'node:fs/promises'
import v8 from 'node:v8'

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
const FMA_FEATURES = { ...FEATURES, relaxed_simd: true }

// A module whose one function is f32x4.relaxed_madd: it validates only where the engine has relaxed SIMD.
const RELAXED_PROBE = Uint8Array.from(Buffer.from('0061736d0100000001080160037b7b7b017b03020100070501016600000a0d010b00200020012002fd85020b', 'hex'))
let relaxed: boolean | null = null

/**
 * Whether the engine compiles relaxed SIMD (fused multiply-add). Node 20 has it behind a V8 flag: set here
 * at run time, which holds for the whole process (worker threads started later too, and they only
 * instantiate the module compiled here). LAYERSWARM_WASM_FMA=0 turns it off.
 */
export function relaxedSimd (): boolean {
  if (relaxed !== null) return relaxed
  const V = (globalThis as unknown as { WebAssembly: { validate(b: Uint8Array): boolean } }).WebAssembly
  if (process.env.LAYERSWARM_WASM_FMA === '0') relaxed = false
  else if (V.validate(RELAXED_PROBE)) relaxed = true
  else {
    v8.setFlagsFromString('--experimental-wasm-relaxed-simd')
    relaxed = V.validate(RELAXED_PROBE)
  }
  return relaxed
}

// The GEMM's inner accumulations `c += a * b` (8 per k step), fused: one rounding instead of two.
const GEMM_MAC = /\(f32x4\.add \(local\.get (\$c\d\d)\) \(f32x4\.mul \(local\.get \$a\) \(local\.get (\$b\d)\)\)\)/g

/** kernels.wat with the GEMM's multiply-adds as f32x4.relaxed_madd (which lowers to an FMA instruction on x64). */
export function fusedSource (source: string): string {
  let n = 0
  const out = source.replace(GEMM_MAC, (_m, c: string, b: string) => { n++; return `(f32x4.relaxed_madd (local.get $a) (local.get ${b}) (local.get ${c}))` })
  if (n !== 8) throw new Error(`kernels.wat: expected the GEMM's 8 multiply-adds, found ${n}`)
  return out
}

/**
 * wasm/<file> assembled with the `wabt` npm package (no system compiler, no network); `edit` rewrites
 * the text first. The shared memory needs the threads feature at parse and at validation.
 */
export async function assembleWat (file: string, features: object, edit: (source: string) => string = s => s): Promise<Uint8Array> {
  const source = await readFile(new URL(`./wasm/${file}`, import.meta.url), 'utf8')
  const wabt = await (await import('wabt')).default()
  const parsed = wabt.parseWat(file, edit(source), features)
  try {
    parsed.resolveNames()
    // wabt's typings omit validate's features argument; without it shared memory is rejected
    ;(parsed.validate as unknown as (f: object) => void).call(parsed, features)
    return parsed.toBinary({}).buffer
  } finally {
    parsed.destroy()
  }
}

const compiled = new Map<boolean, Promise<WasmModule>>()

/**
 * The compiled kernel module (assembled on first use, then cached for the process). fma: the GEMM uses
 * relaxed SIMD's fused multiply-add (default: where the engine has it; else plain SIMD128).
 */
export async function kernelModule (fma = relaxedSimd()): Promise<WasmModule> {
  const useFma = fma && relaxedSimd()
  let p = compiled.get(useFma)
  if (p === undefined) {
    p = assembleWat('kernels.wat', useFma ? FMA_FEATURES : FEATURES, useFma ? fusedSource : undefined).then(async bytes => await WA.compile(bytes))
    compiled.set(useFma, p)
  }
  return await p
}

/** Memory for tensors, shared with the workers. 65536 pages = 4 GiB, the wasm32 limit. */
export function createSharedMemory (initialPages = 16): WasmMemory {
  return new WA.Memory({ initial: initialPages, maximum: 65536, shared: true })
}

export function instantiate (module: WasmModule, memory: WasmMemory): WasmKernels {
  const instance = new WA.Instance(module, { env: { memory } })
  return instance.exports as unknown as WasmKernels
}
