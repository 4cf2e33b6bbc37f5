/// <reference types="@webgpu/types" />
// The WebGPU backend's flash attention (online softmax, no [B,NH,T,T] buffers): argument checks
// (the shared kernelChecks, plus the head size the shaders' accumulators hold), then the dispatches of
// shaders/flash-attention.ts. The backend's methods forward here, so backend.ts stays small.
import { ShapeError } from '../../core/contracts/index.ts'
import type { Tensor } from '../../core/contracts/index.ts'
import { kernelChecks as chk } from '../../core/contracts/index.ts'
import type { GpuTensor } from './memory.ts'
import type { SubmitQueue } from './queue.ts'
import { grid1d } from './shaders/kernel.ts'
import * as fa from './shaders/flash-attention.ts'

export interface FlashOpsHost {
  readonly queue: SubmitQueue
  /** The backend's f32 tensor check (owner, freed, dtype); throws ShapeError. */
  f32: (t: Tensor, name: string) => GpuTensor
}

/** The contract's flash attention shapes, and the head size the shaders' accumulators hold. */
function flashDims (out: Tensor, lse: Tensor, qkv: Tensor, NH: number): { B: number, T: number, C: number } {
  const d = chk.flashAttentionDims(out, lse, qkv, NH)
  if (d.C / NH > fa.FLASH_MAX_HS) throw new ShapeError(`flash attention on webgpu: head size C/NH=${d.C / NH} is over ${fa.FLASH_MAX_HS}`)
  return d
}

export class FlashOps {
  constructor (private readonly h: FlashOpsHost) {}

  async forward (out: Tensor, lse: Tensor, qkv: Tensor, NH: number): Promise<void> {
    const o = this.h.f32(out, 'out'); const l = this.h.f32(lse, 'lse'); const q = this.h.f32(qkv, 'qkv')
    const { B, T, C } = flashDims(out, lse, qkv, NH)
    if (o === l) throw new ShapeError('out and lse must be different tensors')
    if (B * T * C === 0) return
    const queue = this.h.queue
    const b = queue.batch()
    queue.dispatch(fa.flashForward, [B * NH * T, T, C, NH, C / NH, 1 / Math.sqrt(C / NH)], [o.ref(), l.ref(), q.ref()], grid1d(B * NH * T, queue.maxDim))
    await queue.settle(b)
  }

  async backward (dqkv: Tensor, dout: Tensor, out: Tensor, qkv: Tensor, lse: Tensor, NH: number): Promise<void> {
    const dq = this.h.f32(dqkv, 'dqkv'); const d = this.h.f32(dout, 'dout'); const o = this.h.f32(out, 'out'); const q = this.h.f32(qkv, 'qkv'); const l = this.h.f32(lse, 'lse')
    const { B, T, C } = flashDims(dout, lse, qkv, NH)
    chk.dims('out', out, dout.shape)
    chk.dims('dqkv', dqkv, qkv.shape)
    if (B * T * C === 0) return
    const P = [B * NH * T, T, C, NH, C / NH, 1 / Math.sqrt(C / NH)]
    const refs = [dq.ref(), q.ref(), d.ref(), o.ref(), l.ref()]
    const queue = this.h.queue
    const b = queue.batch()
    queue.dispatch(fa.flashBackwardQ, P, refs, grid1d(B * NH * T, queue.maxDim))
    queue.dispatch(fa.flashBackwardKV, P, refs, grid1d(B * NH * T, queue.maxDim))
    await queue.settle(b)
  }
}
