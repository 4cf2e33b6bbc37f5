// The WebGPU backend against the backend compliance suite (float64 references, finite differences,
// shape errors, NaN/Inf policy), on whatever adapter this machine has (a software one is allowed
// here: on a CPU-only machine that is Mesa's lavapipe), with the default matmul tile and with an odd
// one, with kernels resolving once queued (completion: 'queue'), and with f16 matmuls where the
// adapter has shader-f16 (lavapipe has it). Without an adapter the suite skips with the reason, except in CI (CI=true), where it fails.
import { backendCompliance, trainingParity } from '../core/testing/index.ts'
import { createWebGpuBackend } from '../plugins/backend-webgpu/index.ts'
import { probeWebGpu, skipOrFail } from './backend-webgpu-helpers.ts'

const probe = await probeWebGpu()

if (probe.missing === null) {
  backendCompliance('webgpu', async () => await createWebGpuBackend({ allowSoftwareGpu: true }))
  trainingParity('webgpu', async () => await createWebGpuBackend({ allowSoftwareGpu: true }))
  // a tile whose sizes divide nothing in the suite's shapes, and the scalar 'tn' path (tm % 4 != 0)
  // kernels resolve once queued; readbacks still see every earlier call's outputs
  backendCompliance('webgpu (completion: queue)', async () => await createWebGpuBackend({ allowSoftwareGpu: true, completion: 'queue' }), { skipLarge: true })
  backendCompliance('webgpu (matmul tile 4x2x3)', async () => await createWebGpuBackend({ allowSoftwareGpu: true, matmulTile: { wgX: 4, wgY: 2, tm: 3 } }), { skipLarge: true })
  // f16 matmuls: operands rounded to f16 (unit roundoff 2^-11 each), f16 products and four-term
  // sums, f32 accumulation: within 4e-3 of the sum of |products|; every other kernel is f32 as before
  if (probe.f16) {
    backendCompliance('webgpu (f16 matmuls)', async () => await createWebGpuBackend({ allowSoftwareGpu: true, f16: true }), { matmulTolerance: 4e-3 })
    backendCompliance('webgpu (f16 matmuls, tile 4x2x3)', async () => await createWebGpuBackend({ allowSoftwareGpu: true, f16: true, matmulTile: { wgX: 4, wgY: 2, tm: 3 } }), { skipLarge: true, matmulTolerance: 4e-3 })
  } else {
    describe('webgpu (f16 matmuls) backend compliance', function () {
      it('needs an adapter with shader-f16', function () { console.log('      (skipped: the adapter lacks shader-f16)'); this.skip() })
    })
  }
} else {
  const reason = probe.missing
  describe('webgpu backend compliance', function () {
    it('needs a WebGPU adapter', function () { skipOrFail(this, reason) })
  })
}
