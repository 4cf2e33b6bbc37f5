// The CPU backend against the backend compliance suite (float64 references, finite differences,
// shape errors, NaN/Inf policy), with worker threads and inline.
import { backendCompliance } from '../core/testing/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'

backendCompliance('cpu (2 threads)', async () => await createCpuBackend({ threads: 2 }))
