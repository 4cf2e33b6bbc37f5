// Typed errors of the WebGPU backend, one class per condition (codes are stable; see docs/backend-webgpu.md).
import { LayerswarmError } from '../../core/contracts/index.ts'

/** No WebGPU at all: the `webgpu` package is missing, or no adapter exists (no driver). */
export class WebGpuUnavailableError extends LayerswarmError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_WEBGPU_UNAVAILABLE', message, options)
  }
}

/** Only a software adapter (llvmpipe, SwiftShader, WARP) exists and a hardware one was required. */
export class WebGpuSoftwareAdapterError extends LayerswarmError {
  constructor (readonly adapter: string) {
    super('ERR_WEBGPU_SOFTWARE_ONLY',
      `the only WebGPU adapter is a software rasterizer (${adapter}): far too slow to train on. ` +
      'Install your GPU\'s driver (Vulkan on Linux, Metal on macOS, D3D12 on Windows), or pass ' +
      '--allow-software-gpu (plugin option allowSoftwareGpu: true) to use it anyway for correctness runs')
  }
}

/** A tensor, dispatch or buffer exceeds what the device allows (e.g. maxStorageBufferBindingSize). */
export class WebGpuLimitError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_WEBGPU_LIMIT', message)
  }
}

/** The device reported an error (validation, out of memory) or was lost. */
export class WebGpuDeviceError extends LayerswarmError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_WEBGPU_DEVICE', message, options)
  }
}
