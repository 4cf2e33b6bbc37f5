// The Llama layers' WASM SIMD kernels (wasm/llama.wat: SwiGLU forward and backward, RMSNorm's forward
// and input gradient). The module's
// bytes are embedded (llama-wasm-bin.ts, generated from llama.wat by `node --import tsx
// plugins/backend-cpu/llama-wasm.ts --emit`), so each worker compiles them synchronously at import,
// in about a millisecond: assembling with wabt in every worker costs ~0.5 s per worker on a loaded
// machine, and a worker's chunks cannot await. test/backend-cpu-llama-wasm.test.ts checks that the
// embedded bytes are the assembly of llama.wat. Instantiated lazily on each backend's shared memory.
import { writeFile } from 'node:fs/promises'
import { pathToFileURL } from 'node:url'
import { LLAMA_WASM_BASE64 } from './llama-wasm-bin.ts'
import { assembleWat } from './wasm.ts'
import type { WasmMemory } from './wasm.ts'

export interface LlamaWasm {
  swiglu_forward(out: number, gate: number, up: number, n: number): void
  swiglu_backward(dgate: number, dup: number, dout: number, gate: number, up: number, n: number): void
  rmsnorm_forward(out: number, rstd: number, inp: number, w: number, C: number, r0: number, r1: number, eps: number): void
  rmsnorm_backward_input(dinp: number, dout: number, inp: number, w: number, rstd: number, C: number, r0: number, r1: number): void
}

interface Api {
  Module: new (bytes: Uint8Array) => object
  Instance: new (m: object, imports: object) => { exports: unknown }
}
const WA = (globalThis as unknown as { WebAssembly: Api }).WebAssembly
const FEATURES = { simd: true, threads: true }

/** wasm/llama.wat assembled with wabt (the embedded bytes' source; for the test and --emit). */
export async function assembleLlamaWat (): Promise<Uint8Array> {
  return await assembleWat('llama.wat', FEATURES)
}

const module = new WA.Module(Buffer.from(LLAMA_WASM_BASE64, 'base64'))
const instances = new WeakMap<WasmMemory, LlamaWasm>()

/** The Llama kernels instantiated on `memory` (one instance per memory and thread). */
export function llamaWasm (memory: WasmMemory): LlamaWasm {
  let k = instances.get(memory)
  if (k === undefined) {
    k = new WA.Instance(module, { env: { memory } }).exports as LlamaWasm
    instances.set(memory, k)
  }
  return k
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv.includes('--emit')) {
  const b64 = Buffer.from(await assembleLlamaWat()).toString('base64')
  const lines = b64.match(/.{1,100}/g) ?? []
  await writeFile(new URL('./llama-wasm-bin.ts', import.meta.url),
    '// Generated from wasm/llama.wat by `node --import tsx plugins/backend-cpu/llama-wasm.ts --emit`: do not edit.\n' +
    `export const LLAMA_WASM_BASE64 =\n${lines.map(l => `  '${l}'`).join(' +\n')}\n`)
}
