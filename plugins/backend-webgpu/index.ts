// Plugin entry: binds one WebGPU ComputeBackend (Dawn for Node) under Tokens.ComputeBackend.
// Options: allowSoftwareGpu (accept llvmpipe/SwiftShader/WARP; default false), powerPreference
// ('high-performance' | 'low-power'), f16 (matmuls in f16 with f32 accumulation; needs the adapter's
// shader-f16 feature; docs/backend-webgpu.md),
// matmulTile ({ wgX, wgY, tm }), completion ('kernel' | 'queue'; see queue.ts). The adapter is
// logged at info level when the backend starts.
/// <reference types="@webgpu/types" />
import { definePlugin, registerRelease, release, Tokens } from '../../core/contracts/index.ts'
import type { Logger } from '../../core/contracts/index.ts'
import { ConfigError } from '../../core/contracts/index.ts'
import { openDevice } from './adapter.ts'
import { WebGpuBackend } from './backend.ts'
import { nodeGpu, platformHint } from './node-gpu.ts'
import type { MatmulTile } from './shaders/matmul.ts'

export { WebGpuBackend } from './backend.ts'
export type { WebGpuBackendOptions } from './backend.ts'
export { openDevice, isSoftwareAdapter } from './adapter.ts'
export type { AdapterOptions, AdapterSummary } from './adapter.ts'
export { WebGpuDeviceError, WebGpuLimitError, WebGpuSoftwareAdapterError, WebGpuUnavailableError } from './errors.ts'

export interface WebGpuPluginOptions {
  allowSoftwareGpu?: boolean
  powerPreference?: 'high-performance' | 'low-power'
  f16?: boolean
  matmulTile?: MatmulTile
  /** When kernel promises resolve: 'kernel' (GPU finished; default) or 'queue' (queued). */
  completion?: 'kernel' | 'queue'
  logger?: Logger
  /** A GPU object to use instead of Dawn for Node (e.g. navigator.gpu). */
  gpu?: GPU
}

/** Parses plugin options (config file / flags), throwing ConfigError on bad values. */
export function parseWebGpuOptions (o: Readonly<Record<string, unknown>>): WebGpuPluginOptions {
  const out: WebGpuPluginOptions = {}
  if (o.allowSoftwareGpu !== undefined) {
    if (typeof o.allowSoftwareGpu !== 'boolean') throw new ConfigError(`backend-webgpu: allowSoftwareGpu must be true or false, got ${JSON.stringify(o.allowSoftwareGpu)}`)
    out.allowSoftwareGpu = o.allowSoftwareGpu
  }
  if (o.powerPreference !== undefined) {
    if (o.powerPreference !== 'high-performance' && o.powerPreference !== 'low-power') throw new ConfigError(`backend-webgpu: powerPreference must be "high-performance" or "low-power", got ${JSON.stringify(o.powerPreference)}`)
    out.powerPreference = o.powerPreference
  }
  if (o.f16 !== undefined) {
    if (typeof o.f16 !== 'boolean') throw new ConfigError(`backend-webgpu: f16 must be true or false, got ${JSON.stringify(o.f16)}`)
    out.f16 = o.f16
  }
  if (o.completion !== undefined) {
    if (o.completion !== 'kernel' && o.completion !== 'queue') throw new ConfigError(`backend-webgpu: completion must be "kernel" or "queue", got ${JSON.stringify(o.completion)}`)
    out.completion = o.completion
  }
  if (o.matmulTile !== undefined) {
    const t = o.matmulTile as Record<string, unknown>
    const ok = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 64
    if (t === null || typeof t !== 'object' || !ok(t.wgX) || !ok(t.wgY) || !ok(t.tm) || t.wgX * t.wgY > 256) {
      throw new ConfigError(`backend-webgpu: matmulTile must be { wgX, wgY, tm } (integers 1..64, wgX*wgY <= 256), got ${JSON.stringify(o.matmulTile)}`)
    }
    out.matmulTile = { wgX: t.wgX, wgY: t.wgY, tm: t.tm }
  }
  return out
}

/** Opens an adapter and device per the options and returns the backend. */
export async function createWebGpuBackend (opts: WebGpuPluginOptions = {}): Promise<WebGpuBackend> {
  const gpu = opts.gpu ?? await nodeGpu()
  const f16 = opts.f16 === true
  const { device, summary } = await openDevice(gpu, { allowSoftwareGpu: opts.allowSoftwareGpu, powerPreference: opts.powerPreference, f16, platformHint: opts.gpu === undefined ? platformHint() : undefined })
  return new WebGpuBackend(device, summary, { matmulTile: opts.matmulTile, completion: opts.completion, logger: opts.logger, matmulPrecision: f16 ? 'f16' : 'f32' })
}

/** Where a registration keeps the release of its backend (in its node's container). */
const OWN = 'backend-webgpu:release'

export default definePlugin({
  name: 'backend-webgpu',
  kind: 'backend',
  description: 'WebGPU compute backend (WGSL kernels; Dawn for Node: Vulkan, Metal or D3D12)',
  provides: [Tokens.ComputeBackend],
  async register (ctx) {
    const log = ctx.logger.forComponent('layerswarm:backend-webgpu')
    const backend = await createWebGpuBackend({ ...parseWebGpuOptions(ctx.options), logger: log })
    registerRelease(ctx, OWN, async () => { await backend.dispose() })
    const a = backend.adapter
    log.info('WebGPU adapter', { vendor: a.vendor, architecture: a.architecture, device: a.device, description: a.description, software: a.software, matmulPrecision: backend.info.matmulPrecision, ...a.limits })
    if (a.software) log.warn('using a software WebGPU adapter: for correctness runs only, far slower than the CPU backend')
    ctx.container.registerInstance(Tokens.ComputeBackend, backend)
  },
  async stop (ctx) {
    await release(ctx, OWN)
  }
})
