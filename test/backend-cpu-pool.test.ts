// Worker-pool protocol under back-to-back jobs. Regression: the stop request used to be opcode 0 in
// the job params, which are zeroed before each job, so a worker waking late read "exit" and quit
// ("cpu backend worker exited with code 0") in the middle of training.
import assert from 'node:assert/strict'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'

describe('backend-cpu: worker pool', () => {
  it('survives thousands of back-to-back pooled jobs with more threads than cores', async () => {
    const be = await createCpuBackend({ threads: 3 })
    try {
      const C = 64
      const a = be.upload(new Float32Array(C * C).fill(0.5), [C, C])
      const w = be.upload(new Float32Array(C * C).fill(0.25), [C, C])
      const o = be.alloc([C, C])
      for (let i = 0; i < 20000; i++) {
        await be.matmulForward(o, a, w, null) // large enough to go to the workers
        if (i % 7 === 0) await be.fill(o, 0) // small: runs inline, rewriting the params between pooled jobs
      }
      await be.matmulForward(o, a, w, null)
      const out = await be.download(o) as Float32Array
      assert.ok(out.every(v => Math.abs(v - C * 0.125) < 1e-4), 'matmul result')
    } finally {
      await be.dispose()
    }
  })
})
