// The one Node-only file of this backend: creates the `GPU` object through the `webgpu` package
// (Dawn for Node, prebuilt dawn.node: Vulkan on Linux, Metal on macOS, D3D12 on Windows) and says
// how to get a driver when there is no adapter. In a browser, pass `navigator.gpu` instead.
/// <reference types="@webgpu/types" />
import { WebGpuUnavailableError } from './errors.ts'

let gpu: Promise<GPU> | undefined

/** The process's Dawn GPU object (created once). */
export async function nodeGpu (): Promise<GPU> {
  gpu ??= (async () => {
    let mod: { create: (flags: string[]) => GPU }
    try {
      mod = await import('webgpu') as unknown as { create: (flags: string[]) => GPU }
    } catch (err) {
      throw new WebGpuUnavailableError(`the "webgpu" package (Dawn for Node) failed to load: ${(err as Error).message}; install it with \`npm install webgpu@0.6.2\``, { cause: err })
    }
    return mod.create([])
  })()
  try {
    return await gpu
  } catch (err) {
    gpu = undefined
    throw err
  }
}

/** How to get a WebGPU adapter on this platform (for the "no adapter" error). */
export function platformHint (platform: string = process.platform): string {
  switch (platform) {
    case 'linux':
      return 'no Vulkan driver/loader found: install libvulkan1 and a Vulkan driver: your GPU\'s (NVIDIA driver, ' +
        'mesa-vulkan-drivers for AMD/Intel), or for a CPU-only machine mesa-vulkan-drivers from Mesa >= 25 ' +
        '(Debian 12: `apt-get install -t bookworm-backports mesa-vulkan-drivers`) and pass --allow-software-gpu; ' +
        'check with `vulkaninfo --summary`'
    case 'darwin':
      return 'Dawn found no Metal device (macOS 11+ on a Mac with Metal support is required)'
    case 'win32':
      return 'Dawn found no D3D12 (or Vulkan) device: update the GPU driver (Windows 10 1903+)'
    default:
      return `Dawn has no backend for platform ${platform}`
  }
}
