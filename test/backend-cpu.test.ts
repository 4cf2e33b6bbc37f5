// The CPU backend against the backend compliance suite (float64 references, finite differences,
// shape errors, NaN/Inf policy) in each of its configurations: WASM SIMD on worker threads (the
// default), inline on the caller's thread, and the plain TypeScript kernels; the training-parity
// suite (a backend trains to the inline CPU backend's loss curve), and a broken backend that passes a
// quick look but fails parity.
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../core/contracts/index.ts'
import { backendCompliance, trainingLosses, trainingParity } from '../core/testing/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'

backendCompliance('cpu (wasm simd, 2 worker threads)', async () => await createCpuBackend({ threads: 2 }))
backendCompliance('cpu (wasm simd, 3 worker threads)', async () => await createCpuBackend({ threads: 3 }))
// inline computes on the caller's thread by design (the reference, tests): the event-loop check is off
backendCompliance('cpu (wasm simd, inline)', async () => await createCpuBackend({ threads: 0 }), { eventLoop: false })
backendCompliance('cpu (plain typescript kernels, 2 worker threads)', async () => await createCpuBackend({ threads: 2, simd: false }))

trainingParity('cpu (wasm simd, 2 worker threads)', async () => await createCpuBackend({ threads: 2 }))
trainingParity('cpu (plain typescript kernels, inline)', async () => await createCpuBackend({ threads: 0, simd: false }))

describe('training parity catches a backend that computes slightly wrong', function () {
  this.timeout(120_000)
  it('a matmul scaled by 1.05 trains to a different loss curve than the reference', async () => {
    const ref = await createCpuBackend({ threads: 0 })
    const inner = await createCpuBackend({ threads: 0 })
    // every kernel as the CPU backend computes it, except matmulForward's output, scaled after the fact
    const broken = new Proxy(inner, {
      get (target, key) {
        if (key === 'matmulForward') {
          return async (...args: Parameters<ComputeBackend['matmulForward']>) => {
            await target.matmulForward(...args)
            const out = args[0]
            const v = await target.download(out) as Float32Array
            const scaled = v.map(x => x * 1.05)
            const t = target.upload(scaled, out.shape as number[])
            await target.copy(out, t)
            target.free(t)
          }
        }
        const v = Reflect.get(target, key, target)
        return typeof v === 'function' ? v.bind(target) : v
      }
    }) as ComputeBackend
    try {
      const a = await trainingLosses(ref)
      const b = await trainingLosses(broken)
      const worst = Math.max(...a.map((x, i) => Math.abs(x - b[i]) / Math.max(1, Math.abs(x))))
      assert.ok(worst > 0.02, `the broken backend stayed within the parity tolerance (worst ${worst})`)
    } finally {
      await ref.dispose()
      await inner.dispose()
    }
  })
})
