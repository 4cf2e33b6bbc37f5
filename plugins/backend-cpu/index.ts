// Plugin entry: binds one CPU ComputeBackend under Tokens.ComputeBackend.
// Options: `threads` (worker threads; default: available parallelism; 0 = inline), `simd` (false:
// plain TypeScript kernels only).
import { definePlugin, Tokens } from '../../core/contracts/index.ts'
import type { ComputeBackend } from '../../core/contracts/index.ts'
import { createCpuBackend } from './backend.ts'

export { createCpuBackend } from './backend.ts'
export type { CpuBackendOptions } from './backend.ts'

// One plugin module may serve several nodes in a process: each registration owns its backend,
// released when that node's signal aborts or when the plugin stops.
const live = new Set<ComputeBackend>()

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
    live.add(backend)
    ctx.signal.addEventListener('abort', () => { if (live.delete(backend)) void backend.dispose() }, { once: true })
    ctx.logger.forComponent('layerswarm:backend-cpu').debug('backend ready', { device: backend.info.device })
    ctx.container.registerInstance(Tokens.ComputeBackend, backend)
  },
  async stop () {
    const all = [...live]
    live.clear()
    await Promise.all(all.map(async b => { await b.dispose() }))
  }
})
