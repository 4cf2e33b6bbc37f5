/// <reference types="@webgpu/types" />
// Adapter choice and device creation, on any `GPU` object (Dawn for Node, or `navigator.gpu` in a
// browser). A hardware adapter by default; a software one (llvmpipe/lavapipe, SwiftShader, WARP)
// only when allowed. The device gets the adapter's maxima for the limits a training step needs.
import { WebGpuSoftwareAdapterError, WebGpuUnavailableError } from './errors.ts'

export interface AdapterOptions {
  /** Accept a software adapter (correctness runs, CI). Default false. */
  allowSoftwareGpu?: boolean
  powerPreference?: 'high-performance' | 'low-power'
  /** Request the 'shader-f16' feature (only where the adapter has it). */
  f16?: boolean
  /** Words for the "no adapter" message: how to get a driver on this platform. */
  platformHint?: string
}

/** What the node logs and reports about its adapter. */
export interface AdapterSummary {
  vendor: string
  architecture: string
  device: string
  description: string
  software: boolean
  features: string[]
  limits: Record<string, number>
}

/** Limits requested at the adapter's maxima (defaults are far smaller, e.g. 128 MiB bindings). */
export const LIMITS_OF_INTEREST = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupsPerDimension',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage'
] as const

const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|software|microsoft basic render|\bwarp\b/i

export function isSoftwareAdapter (adapter: GPUAdapter): boolean {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean }
  const legacy = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter
  if (info?.isFallbackAdapter === true || legacy === true) return true
  if (info?.architecture === 'software') return true
  return SOFTWARE_NAMES.test(`${info?.vendor ?? ''} ${info?.device ?? ''} ${info?.description ?? ''}`)
}

export function summarize (adapter: GPUAdapter, limits: GPUSupportedLimits): AdapterSummary {
  const info = adapter.info
  const lim: Record<string, number> = {}
  for (const k of LIMITS_OF_INTEREST) lim[k] = Number((limits as unknown as Record<string, number>)[k])
  return {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    device: info?.device ?? '',
    description: info?.description ?? '',
    software: isSoftwareAdapter(adapter),
    features: [...adapter.features].sort(),
    limits: lim
  }
}

/** Requests an adapter per the options and a device with the maxima of LIMITS_OF_INTEREST. */
export async function openDevice (gpu: GPU | undefined, opts: AdapterOptions = {}): Promise<{ adapter: GPUAdapter, device: GPUDevice, summary: AdapterSummary }> {
  const hint = opts.platformHint ?? 'this environment exposes no WebGPU (navigator.gpu is missing)'
  if (gpu === undefined || gpu === null) throw new WebGpuUnavailableError(`WebGPU is not available: ${hint}`)
  const adapter = await gpu.requestAdapter(opts.powerPreference !== undefined ? { powerPreference: opts.powerPreference } : {})
  if (adapter === null) throw new WebGpuUnavailableError(`no WebGPU adapter found: ${hint}`)
  if (isSoftwareAdapter(adapter) && opts.allowSoftwareGpu !== true) {
    const i = adapter.info
    throw new WebGpuSoftwareAdapterError([i?.vendor, i?.device, i?.description].filter(s => s !== undefined && s !== '').join(', ') || 'unnamed software adapter')
  }
  const requiredLimits: Record<string, number> = {}
  for (const k of LIMITS_OF_INTEREST) {
    const v = (adapter.limits as unknown as Record<string, number | undefined>)[k]
    if (typeof v === 'number') requiredLimits[k] = v
  }
  const requiredFeatures: GPUFeatureName[] = []
  if (opts.f16 === true) {
    if (!adapter.features.has('shader-f16')) {
      const i = adapter.info
      const name = [i?.vendor, i?.device, i?.description].filter(s => s !== undefined && s !== '').join(', ') || 'this adapter'
      throw new WebGpuUnavailableError(`f16 was requested but ${name} lacks the shader-f16 feature: run without the f16 option (f32 matmuls)`)
    }
    requiredFeatures.push('shader-f16')
  }
  let device: GPUDevice
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures })
  } catch (err) {
    throw new WebGpuUnavailableError(`the WebGPU adapter refused a device: ${(err as Error).message}`, { cause: err })
  }
  return { adapter, device, summary: summarize(adapter, device.limits) }
}
