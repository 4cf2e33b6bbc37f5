// The CPU backend against the backend compliance suite (float64 references, finite differences,
// shape errors, NaN/Inf policy) in each of its configurations: WASM SIMD on worker threads (the
// default), inline on the caller's thread, and the plain TypeScript kernels.
import { backendCompliance } from '../core/testing/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'

backendCompliance('cpu (wasm simd, 2 worker threads)', async () => await createCpuBackend({ threads: 2 }))
backendCompliance('cpu (wasm simd, 3 worker threads)', async () => await createCpuBackend({ threads: 3 }))
backendCompliance('cpu (wasm simd, inline)', async () => await createCpuBackend({ threads: 0 }))
backendCompliance('cpu (plain typescript kernels, 2 worker threads)', async () => await createCpuBackend({ threads: 2, simd: false }))
