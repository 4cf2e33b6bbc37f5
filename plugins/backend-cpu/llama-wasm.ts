// The Llama layers' WASM SIMD kernels (wasm/llama.wat: SwiGLU forward and backward). Assembled once
// per thread at import (top-level await, so the kernels are there, synchronously, whenever a job
// runs: a worker's chunks cannot await), instantiated lazily on each backend's shared memory.
// Kept apart from kernels.wat so the Llama kernels change without touching the others.
import { readFile } from 'node:fs/promises'
import type { WasmMemory } from './wasm.ts'

export interface LlamaWasm {
  swiglu_forward(out: number, gate: number, up: number, n: number): void
  swiglu_backward(dgate: number, dup: number, dout: number, gate: number, up: number, n: number): void
}

interface Api {
  Module: new (bytes: Uint8Array) => object
  Instance: new (m: object, imports: object) => { exports: unknown }
}
const WA = (globalThis as unknown as { WebAssembly: Api }).WebAssembly
const FEATURES = { simd: true, threads: true }

async function assemble (): Promise<object> {
  const source = await readFile(new URL('./wasm/llama.wat', import.meta.url), 'utf8')
  const wabt = await (await import('wabt')).default()
  const parsed = wabt.parseWat('llama.wat', source, FEATURES)
  try {
    parsed.resolveNames()
    // wabt's typings omit validate's features argument; without it shared memory is rejected
    ;(parsed.validate as unknown as (f: object) => void).call(parsed, FEATURES)
    return new WA.Module(parsed.toBinary({}).buffer)
  } finally {
    parsed.destroy()
  }
}

const module = await assemble()
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
