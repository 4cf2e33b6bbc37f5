// Shared by the WebGPU backend tests: whether this machine has a WebGPU adapter, and what to do when
// it has none. Outside CI the WebGPU tests skip with a printed reason; in CI (CI=true) a missing
// adapter fails, so a CI run cannot go green without running them.
import { nodeGpu, platformHint } from '../plugins/backend-webgpu/node-gpu.ts'
import { isSoftwareAdapter } from '../plugins/backend-webgpu/adapter.ts'

export interface WebGpuProbe {
  /** null when an adapter exists; else why not. */
  missing: string | null
  /** The default adapter is a software one (llvmpipe, SwiftShader, WARP). */
  software: boolean
  /** The default adapter has the shader-f16 feature (the f16 option). */
  f16: boolean
}

let probe: Promise<WebGpuProbe> | undefined

export async function probeWebGpu (): Promise<WebGpuProbe> {
  probe ??= (async () => {
    try {
      const adapter = await (await nodeGpu()).requestAdapter()
      if (adapter === null) return { missing: `no WebGPU adapter: ${platformHint()}`, software: false, f16: false }
      return { missing: null, software: isSoftwareAdapter(adapter), f16: adapter.features.has('shader-f16') }
    } catch (err) {
      return { missing: (err as Error).message, software: false, f16: false }
    }
  })()
  return await probe
}

export const inCi = (): boolean => process.env.CI === 'true' || process.env.CI === '1'

/** In a mocha test or hook: fail in CI, else print the reason and skip. */
export function skipOrFail (ctx: Mocha.Context, reason: string): void {
  if (inCi()) throw new Error(`WebGPU tests cannot run in CI: ${reason}`)
  console.log(`      (skipped: ${reason})`)
  ctx.skip()
}
