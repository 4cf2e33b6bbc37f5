/// <reference types="@webgpu/types" />
// The WebGPU backend's Llama layers (RMSNorm, rotary embeddings, SwiGLU): argument checks (the
// shared kernelChecks, so a bad call throws ShapeError before anything is encoded), then the
// dispatches of shaders/llama.ts. The backend's methods forward here, so backend.ts stays small.
import { ShapeError } from '../../core/contracts/index.ts'
import type { Tensor } from '../../core/contracts/index.ts'
import { kernelChecks as chk } from '../../core/contracts/index.ts'
import type { DeviceMemory, GpuTensor, Ref } from './memory.ts'
import type { SubmitQueue } from './queue.ts'
import { grid1d } from './shaders/kernel.ts'
import type { KernelDef } from './shaders/kernel.ts'
import { COLSUM_ROWS } from './shaders/reduce.ts'
import * as L from './shaders/llama.ts'

export interface LlamaOpsHost {
  readonly queue: SubmitQueue
  readonly memory: DeviceMemory
  /** The backend's f32 tensor check (owner, freed, dtype); throws ShapeError. */
  f32: (t: Tensor, name: string) => GpuTensor
  /** dst[k] += sum over r < rows of src[r*ld + off + k], k < K (the backend's colsum). */
  colsum: (dst: Ref, src: Ref, rows: number, K: number, ld: number, off: number) => void
}

export class LlamaOps {
  /** cos/sin tables by (T, half, theta), float64 angles rounded once to f32. */
  private readonly tables = new Map<string, Float32Array>()

  constructor (private readonly h: LlamaOpsHost) {}

  async rmsnormForward (out: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, eps: number): Promise<void> {
    const o = this.h.f32(out, 'out'); const r = this.h.f32(rstd, 'rstd'); const x = this.h.f32(inp, 'inp'); const w = this.h.f32(weight, 'weight')
    const { N, C } = chk.rmsnormDims(inp, weight, rstd, eps)
    chk.size('out', out, inp.size)
    if (o === r) throw new ShapeError('out and rstd must be different tensors')
    await this.one(L.rmsnormForward, N, [N, C, eps], [o.ref(), r.ref(), x.ref(), w.ref()])
  }

  async rmsnormBackward (dinp: Tensor, dweight: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, rstd: Tensor): Promise<void> {
    const dx = this.h.f32(dinp, 'dinp'); const dw = this.h.f32(dweight, 'dweight'); const d = this.h.f32(dout, 'dout')
    const x = this.h.f32(inp, 'inp'); const w = this.h.f32(weight, 'weight'); const r = this.h.f32(rstd, 'rstd')
    const { N, C } = chk.rmsnormDims(inp, weight, rstd)
    chk.size('dweight', dweight, C)
    chk.size('dinp', dinp, inp.size)
    chk.size('dout', dout, inp.size)
    if (dx === dw) throw new ShapeError('dinp and dweight must be different tensors')
    if (N === 0) return
    const { queue, memory } = this.h
    const b = queue.batch()
    queue.dispatch(L.rmsnormBackwardInput, [N, C], [dx.ref(), d.ref(), x.ref(), w.ref(), r.ref()], grid1d(N, queue.maxDim))
    const J = Math.ceil(N / COLSUM_ROWS)
    const part = memory.scratchRegion(b, J * C * 4)
    queue.dispatch(L.rmsnormBackwardWeight, [J * C, N, C, COLSUM_ROWS], [part, d.ref(), x.ref(), r.ref()], grid1d(J * C, queue.maxDim))
    this.h.colsum(dw.ref(), part, J, C, C, 0)
    await queue.settle(b)
  }

  async ropeForward (out: Tensor, inp: Tensor, NH: number, theta: number): Promise<void> {
    const o = this.h.f32(out, 'out'); const x = this.h.f32(inp, 'inp')
    const { B, T, C } = chk.ropeDims(out, inp, NH, theta)
    await this.rope(o, x, B * T, T, C, NH, theta, false) // in place: the queue reads a copy of inp
  }

  async ropeBackward (dinp: Tensor, dout: Tensor, NH: number, theta: number): Promise<void> {
    const dx = this.h.f32(dinp, 'dinp'); const d = this.h.f32(dout, 'dout')
    const { B, T, C } = chk.ropeDims(dinp, dout, NH, theta)
    await this.rope(dx, d, B * T, T, C, NH, theta, true)
  }

  async swigluForward (out: Tensor, inp: Tensor): Promise<void> {
    const o = this.h.f32(out, 'out'); const x = this.h.f32(inp, 'inp')
    const { N, H } = chk.swigluDims(out, inp)
    await this.one(L.swigluForward, N * H, [N * H, H], [o.ref(), x.ref()])
  }

  async swigluBackward (dinp: Tensor, dout: Tensor, inp: Tensor): Promise<void> {
    const dx = this.h.f32(dinp, 'dinp'); const d = this.h.f32(dout, 'dout'); const x = this.h.f32(inp, 'inp')
    const { N, H } = chk.swigluDims(dout, inp)
    chk.size('dinp', dinp, inp.size)
    await this.one(L.swigluBackward, N * H, [N * H, H], [dx.ref(), d.ref(), x.ref()])
  }

  private async rope (o: GpuTensor, x: GpuTensor, N: number, T: number, C: number, NH: number, theta: number, backward: boolean): Promise<void> {
    if (N === 0) return
    const half = C / NH / 2
    const { queue, memory } = this.h
    const b = queue.batch()
    const tab = this.table(T, half, theta)
    const tabRef = memory.hostData(b, new Uint8Array(tab.buffer, tab.byteOffset, tab.byteLength))
    const n = N * 2 * C
    queue.dispatch(L.rope, [n, C, T, half, backward ? -1 : 1, backward ? 1 : 0], [o.ref(), x.ref(), tabRef], grid1d(n, queue.maxDim))
    await queue.settle(b)
  }

  /** [T, half, 2] interleaved cos/sin of t * theta^(-2k/HS), computed in float64. */
  private table (T: number, half: number, theta: number): Float32Array {
    const key = `${T},${half},${theta}`
    let tab = this.tables.get(key)
    if (tab === undefined) {
      tab = new Float32Array(Math.max(4, T * half * 2))
      for (let t = 0; t < T; t++) {
        for (let k = 0; k < half; k++) {
          const a = t * Math.pow(theta, -2 * k / (2 * half))
          tab[2 * (t * half + k)] = Math.cos(a)
          tab[2 * (t * half + k) + 1] = Math.sin(a)
        }
      }
      if (this.tables.size >= 16) this.tables.clear() // a few (T, HS, theta) per run; bound the host memory
      this.tables.set(key, tab)
    }
    return tab
  }

  private async one (def: KernelDef, n: number, params: readonly number[], refs: readonly Ref[]): Promise<void> {
    if (n === 0) return
    const b = this.h.queue.batch()
    this.h.queue.dispatch(def, params, refs, grid1d(n, this.h.queue.maxDim))
    await this.h.queue.settle(b)
  }
}
