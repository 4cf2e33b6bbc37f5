// Plugin entry: binds one CPU ComputeBackend under Tokens.ComputeBackend.
// Options: `threads` (worker threads; default: available parallelism; 0 = inline), `simd` (false:
// plain TypeScript kernels only).
import { definePlugin, registerRelease, release, Tokens } from '../../core/contracts/index.ts'
import { createCpuBackend } from './backend.ts'

export { createCpuBackend } from './backend.ts'
export type { CpuBackendOptions } from './backend.ts'

// One plugin module may serve several nodes in a process: each registration owns its backend, kept
// in that node's container under OWN, released when the plugin stops or the node's signal aborts.
const OWN = 'backend-cpu:release'

export default definePlugin({
  name: 'backend-cpu',
  kind: 'backend',
  description: 'CPU compute backend (WASM SIMD kernels on worker threads)',
  provides: [Tokens.ComputeBackend],
  async register (ctx) {
    const { threads, simd } = ctx.options
    const backend = await createCpuBackend({
      threads: typeof threads === 'number' ? threads : undefined,
      simd: typeof simd === 'boolean' ? simd : undefined
    })
    registerRelease(ctx, OWN, async () => { await backend.dispose() })
    ctx.logger.forComponent('layerswarm:backend-cpu').debug('backend ready', { device: backend.info.device })
    ctx.container.registerInstance(Tokens.ComputeBackend, backend)
  },
  async stop (ctx) {
    await release(ctx, OWN)
  }
})
