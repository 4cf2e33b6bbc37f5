// Worker thread of the CPU backend: instantiates the WASM kernels on the shared memory, then loops:
// sleep on the job counter (Atomics.wait), claim and run chunks of the job until none are left
// (protocol in pool.ts), the one finishing the last chunk wakes the main thread. It never returns
// to its event loop until EXIT.
import { parentPort, workerData } from 'node:worker_threads'
import { Executor, PARAMS_LENGTH } from './exec.ts'
import { instantiate } from './wasm.ts'
import { loadNativeKernels } from './native.ts'
import type { WasmMemory, WasmModule } from './wasm.ts'
import { CTRL, ERROR_BYTES } from './pool.ts'

interface Init {
  memory: WasmMemory
  module: WasmModule | null
  /** Load the native GEMM in this thread (the main thread found it loadable). */
  native: boolean
  control: SharedArrayBuffer
  index: number
  parts: number
}

const init = workerData as Init
const ctrl = new Int32Array(init.control, 0, 16)
const params = new Float64Array(init.control, 64, PARAMS_LENGTH)
const partials = new Float64Array(init.control, 64 + PARAMS_LENGTH * 8, init.parts)
const errorText = new Uint8Array(init.control, 64 + PARAMS_LENGTH * 8 + init.parts * 8, ERROR_BYTES)
const exec = new Executor(init.memory, init.module === null ? null : instantiate(init.module, init.memory), init.native ? loadNativeKernels() : null)
parentPort?.postMessage('ready')

let seen = 0
for (;;) {
  Atomics.wait(ctrl, CTRL.SEQ, seen)
  const seq = Atomics.load(ctrl, CTRL.SEQ)
  if (seq === seen) continue
  seen = seq
  if (Atomics.load(ctrl, CTRL.EXIT) !== 0) break
  const tag = seq & 0xffff
  const chunks = Atomics.load(ctrl, CTRL.CHUNKS)
  for (;;) {
    const v = Atomics.load(ctrl, CTRL.CLAIM)
    const chunk = v & 0xffff
    if ((v >>> 16) !== tag || chunk >= chunks) break // job over (or a newer one began: wait for its wake-up)
    if (Atomics.compareExchange(ctrl, CTRL.CLAIM, v, v + 1) !== v) continue
    try {
      exec.runChunk(params, chunk, chunks, init.parts, init.index, partials, seq)
    } catch (err) {
      // first error wins; the main thread rejects the job with it
      if (Atomics.compareExchange(ctrl, CTRL.ERROR, 0, 1) === 0) {
        const msg = new TextEncoder().encode(String((err as Error)?.stack ?? err)).subarray(0, ERROR_BYTES)
        errorText.fill(0)
        errorText.set(msg)
      }
    }
    if (Atomics.add(ctrl, CTRL.DONE, 1) === chunks - 1) Atomics.notify(ctrl, CTRL.DONE)
  }
}
