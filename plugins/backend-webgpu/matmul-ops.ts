/// <reference types="@webgpu/types" />
// Matmul recording of the WebGPU backend: picks the kernel variant for a layout, tile and precision
// (shaders/matmul.ts), checks the workgroup grid against the device, and with f16 precision stages
// each operand as a power-of-two-scaled f16 copy first (absmax + toHalf, shaders/half.ts). The scale
// slots are atomicMax targets, kept in their own buffer so no dispatch reads and writes one buffer.
import { kernelChecks as chk } from '../../core/contracts/index.ts'
import type { Tensor } from '../../core/contracts/index.ts'
import { WebGpuLimitError } from './errors.ts'
import { ALIGN, USAGE } from './memory.ts'
import type { DeviceMemory, GpuTensor, Ref } from './memory.ts'
import { SLOTS } from './queue.ts'
import type { Batch, SubmitQueue } from './queue.ts'
import { grid1d } from './shaders/kernel.ts'
import { matmulGrid, matmulKernel, matmulVec4 } from './shaders/matmul.ts'
import type { MatmulLayout, MatmulPrecision, MatmulTile } from './shaders/matmul.ts'
import { ABSMAX_MAX_GROUPS, ABSMAX_WG, absmax, toHalf } from './shaders/half.ts'

/** f16 scale slots per batch (one per staged operand; a slot is ALIGN bytes, for binding offsets). */
const SCALE_SLOTS = 128

/** A matmul operand; `half`: its f16 copy and scale slot (f16 precision only). */
export interface Operand { readonly ref: Ref, readonly half?: { readonly h: Ref, readonly slot: Ref } }

export class MatmulOps {
  /** Bound where a matmul has no bias (a binding must name some buffer). */
  private readonly dummy: GPUBuffer
  private scales: GPUBuffer | null = null

  constructor (private readonly device: GPUDevice, private readonly queue: SubmitQueue, private readonly memory: DeviceMemory,
    private readonly tile: MatmulTile, private readonly precision: MatmulPrecision) {
    this.dummy = device.createBuffer({ size: 16, usage: USAGE.STORAGE })
  }

  /** The shared argument checks, and every matmul of a forward/backward call fitting the device's grid. */
  dims (out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null): { N: number, C: number, OC: number } {
    const { N, C, OC } = chk.matmulDims(out, inp, weight, bias)
    const maxDim = this.queue.maxDim
    for (const [M, NN] of [[N, OC], [N, C], [OC, C]]) {
      const [gx, gy] = matmulGrid(M, NN, this.tile)
      if (gx > maxDim || gy > maxDim) throw new WebGpuLimitError(`matmul ${M}x${NN} needs ${gx}x${gy} workgroups; the device allows ${maxDim} per dimension (use a larger tile)`)
    }
    return { N, C, OC }
  }

  /**
   * Opens a batch with room for a whole matmul call: f16 copies live in scratch regions of one batch,
   * and a flush in between would hand their bytes to the next batch's temporaries.
   */
  batch (): Batch {
    const b = this.queue.batch()
    if (this.precision === 'f16' && (b.slots + 16 > SLOTS || b.scaleSlots + 3 > SCALE_SLOTS)) {
      this.queue.flush()
      return this.queue.batch()
    }
    return b
  }

  /** A matmul operand: the f32 tensor, and its f16 copy when the precision is f16. */
  operand (t: GpuTensor): Operand {
    const ref = t.ref()
    if (this.precision === 'f32' || t.size === 0) return { ref }
    return { ref, half: this.half(ref, t.size) }
  }

  /**
   * out[M,N] (+)= A B per layout (shaders/matmul.ts). With f16 precision, a and b are f16 operands
   * staged by operand() (pass the same staged operand to several matmuls to convert it once).
   */
  record (layout: MatmulLayout, out: Ref, a: Operand, b: Operand, bias: Ref | null, M: number, N: number, K: number, acc: boolean): void {
    if (M === 0 || N === 0) return
    const vec = matmulVec4(layout, M, N, K, this.tile)
    const def = matmulKernel(layout, vec, this.tile, this.precision)
    const dummy = { buffer: this.dummy, offset: 0, size: 16 }
    const params = [M, N, K, acc ? 1 : 0, bias === null ? 0 : 1]
    if (this.precision === 'f32') {
      this.queue.dispatch(def, params, [out, a.ref, b.ref, bias ?? dummy], matmulGrid(M, N, this.tile))
      return
    }
    if (a.half === undefined || b.half === undefined) throw new Error('f16 matmul: operands were not staged')
    this.queue.dispatch(def, params, [out, a.half.h, b.half.h, bias ?? dummy, a.half.slot, b.half.slot], matmulGrid(M, N, this.tile))
  }

  /** Records absmax + toHalf for n f32 values at x: the f16 copy and its scale slot. */
  private half (x: Ref, n: number): { h: Ref, slot: Ref } {
    const b = this.queue.batch()
    this.scales ??= this.device.createBuffer({ size: SCALE_SLOTS * ALIGN, usage: USAGE.STORAGE | USAGE.COPY_DST })
    const slot = { buffer: this.scales, offset: b.scaleSlots++ * ALIGN, size: 16 }
    b.encoder.clearBuffer(slot.buffer, slot.offset, slot.size)
    const groups = Math.min(ABSMAX_MAX_GROUPS, Math.ceil(n / ABSMAX_WG))
    this.queue.dispatch(absmax, [n, groups * ABSMAX_WG], [slot, x], [groups, 1])
    const n4 = Math.ceil(n / 4)
    const h = this.memory.scratchRegion(b, n4 * 8)
    this.queue.dispatch(toHalf, [n4, n], [h, x, slot], grid1d(n4, this.queue.maxDim))
    return { h, slot }
  }
}
