/// <reference types="@webgpu/types" />
// WebGPU ComputeBackend, the kernel facade: each method checks its arguments (the shared
// kernelChecks, plus this device's limits) so a bad call throws ShapeError before anything is
// encoded, then records its WGSL dispatches (shaders/) and awaits them. Runs on any GPUDevice (Dawn
// for Node through node-gpu.ts, or a browser's navigator.gpu): nothing here is Node-only.
// The parts it stands on:
//   queue.ts       the submission queue: batches of dispatches, when a kernel's promise resolves
//                  (option completion), readbacks, device errors;
//   memory.ts      device memory: tensors, the per-batch scratch arena, staging buffers;
//   matmul-ops.ts  matmul recording: kernel variant per layout and tile, f16 operand staging.
//
// i32 tensors (token ids, targets) keep a host mirror: kernels never write them, so the mirror is
// exact and gives host-side range checks (ShapeError naming the bad index, before any writing) and
// the token -> positions lists of the encoder backward, without a GPU round trip.
import { ShapeError } from '../../core/contracts/index.ts'
import type { AdamWParams, BackendInfo, ComputeBackend, DType, Logger, Tensor } from '../../core/contracts/index.ts'
import { kernelChecks as chk } from '../../core/contracts/index.ts'
import { WebGpuDeviceError, WebGpuUnavailableError } from './errors.ts'
import type { AdapterSummary } from './adapter.ts'
import { DeviceMemory, GpuTensor } from './memory.ts'
import type { Ref } from './memory.ts'
import { SubmitQueue } from './queue.ts'
import { MatmulOps } from './matmul-ops.ts'
import { LlamaOps } from './llama-ops.ts'
import { FlashOps } from './flash-ops.ts'
import { grid1d } from './shaders/kernel.ts'
import type { KernelDef } from './shaders/kernel.ts'
import * as ew from './shaders/elementwise.ts'
import { colsum, COLSUM_ROWS, SUMSQ_MAX_GROUPS, SUMSQ_WG, sumSquares as sumSquaresKernel } from './shaders/reduce.ts'
import { layernormBackwardInput, layernormBackwardParams, layernormForward } from './shaders/layernorm.ts'
import { crossEntropyForward } from './shaders/crossentropy.ts'
import * as att from './shaders/attention.ts'
import { DEFAULT_MATMUL_TILE } from './shaders/matmul.ts'
import type { MatmulPrecision, MatmulTile } from './shaders/matmul.ts'

export interface WebGpuBackendOptions {
  /** Matmul register tile (tune per GPU; default 8x8 threads, 4x4 outputs each). */
  matmulTile?: MatmulTile
  /** Receives device errors that belong to no kernel call. */
  logger?: Logger
  /**
   * When a kernel's promise resolves. 'kernel' (default): when the GPU has finished it, as the
   * contract says (one GPU round trip per awaited kernel). 'queue': as soon as it is queued; every
   * later call still sees its outputs (one queue), readbacks wait for the GPU, and a device error
   * surfaces at the next readback. Awaited kernels then share one submit per event-loop turn, so a
   * training step costs a few round trips instead of one per kernel. Timings need 'kernel'.
   */
  completion?: 'kernel' | 'queue'
  /**
   * Matmul arithmetic. 'f32' (default). 'f16': operands staged as power-of-two-scaled f16, f16
   * products, f32 accumulation (the device needs 'shader-f16'; shaders/half.ts). Everything else,
   * tensors included, stays f32.
   */
  matmulPrecision?: MatmulPrecision
}

export class WebGpuBackend implements ComputeBackend {
  readonly info: BackendInfo
  private readonly memory: DeviceMemory
  private readonly queue: SubmitQueue
  private readonly mm: MatmulOps
  private readonly llama: LlamaOps
  private readonly flash: FlashOps
  private disposed = false

  /** Use createWebGpuBackend() (plugin index) or construct on a device you opened with openDevice(). */
  constructor (private readonly device: GPUDevice, readonly adapter: AdapterSummary, private readonly options: WebGpuBackendOptions = {}) {
    const tile = options.matmulTile ?? DEFAULT_MATMUL_TILE
    const completion = options.completion ?? 'kernel'
    const precision = options.matmulPrecision ?? 'f32'
    if (precision === 'f16' && !device.features.has('shader-f16')) {
      throw new WebGpuUnavailableError('matmul precision f16 needs a device opened with the shader-f16 feature')
    }
    const a = adapter
    const name = [a.vendor, a.device || a.description].filter(s => s !== '').join(' ') || 'unknown adapter'
    this.info = {
      name: 'webgpu',
      device: `${name} (${[a.architecture, a.software && a.architecture !== 'software' ? 'software' : ''].filter(s => s !== '').join(', ') || 'unknown architecture'}; WebGPU)`,
      software: a.software,
      adapter: a,
      matmulTile: tile,
      matmulPrecision: precision,
      completion
    }
    this.memory = new DeviceMemory(device)
    this.queue = new SubmitQueue(device, this.memory, completion, options.logger)
    this.mm = new MatmulOps(device, this.queue, this.memory, tile, precision)
    this.flash = new FlashOps({ queue: this.queue, f32: (t, n) => this.f32(t, n) })
    this.llama = new LlamaOps({ queue: this.queue, memory: this.memory, f32: (t, n) => this.f32(t, n), colsum: (...a) => { this.colsum(...a) } })
  }

  // ---- memory ---------------------------------------------------------------------------------

  alloc (shape: readonly number[], dtype: DType = 'f32'): Tensor {
    this.alive()
    const n = chk.checkShapeArg(shape)
    if (dtype !== 'f32' && dtype !== 'i32') throw new ShapeError(`unknown dtype ${String(dtype)}`)
    return this.memory.alloc(this, shape, dtype, n)
  }

  upload (data: Float32Array | Int32Array, shape: readonly number[]): Tensor {
    this.alive()
    const n = chk.checkShapeArg(shape)
    if (!(data instanceof Float32Array) && !(data instanceof Int32Array)) throw new ShapeError('upload: data must be a Float32Array or Int32Array')
    if (data.length !== n) throw new ShapeError(`upload: data has ${data.length} elements, shape ${chk.shapeOf(shape)} needs ${n}`)
    return this.memory.upload(this, data, shape)
  }

  async download (t: Tensor): Promise<Float32Array | Int32Array> {
    const x = this.tensor(t, 't')
    if (x.size === 0) return x.dtype === 'f32' ? new Float32Array(0) : new Int32Array(0)
    const bytes = await this.queue.readback({ buffer: x.buffer as GPUBuffer, offset: 0, size: x.size * 4 })
    return x.dtype === 'f32' ? new Float32Array(bytes) : new Int32Array(bytes)
  }

  async write (t: Tensor, data: Float32Array | Int32Array): Promise<void> {
    const x = this.tensor(t, 't')
    if (data.length !== x.size) throw new ShapeError(`write: data has ${data.length} elements, tensor has ${x.size}`)
    if ((x.dtype === 'f32') !== (data instanceof Float32Array)) throw new ShapeError(`write: data type does not match tensor dtype ${x.dtype}`)
    if (x.size === 0) return
    x.host?.set(data)
    const b = this.queue.batch()
    const src = this.memory.hostData(b, new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    b.encoder.copyBufferToBuffer(src.buffer, src.offset, x.buffer as GPUBuffer, 0, x.size * 4)
    await this.queue.settle(b)
  }

  free (t: Tensor): void {
    const x = this.tensor(t, 't')
    const buf = x.buffer as GPUBuffer
    x.buffer = null
    this.queue.destroyAfterUse(buf)
  }

  async dispose (): Promise<void> {
    if (this.disposed) return
    await this.queue.close()
    this.disposed = true
    this.memory.close()
    this.device.destroy()
  }

  // ---- utilities ------------------------------------------------------------------------------

  async fill (t: Tensor, value: number): Promise<void> {
    const x = this.tensor(t, 't')
    if (typeof value !== 'number') throw new ShapeError(`fill: value must be a number, got ${typeof value}`)
    let bits: number
    if (x.dtype === 'i32') {
      const v = value | 0
      x.host?.fill(v)
      bits = v >>> 0
    } else {
      bits = new Uint32Array(Float32Array.of(value).buffer)[0]
    }
    await this.elementwise(ew.fill, x.size, [bits], [x.ref()])
  }

  async copy (dst: Tensor, src: Tensor): Promise<void> {
    const d = this.tensor(dst, 'dst'); const s = this.tensor(src, 'src')
    chk.dtype('src', src, dst.dtype)
    chk.size('src', src, dst.size)
    if (d === s || d.size === 0) return
    if (d.host !== null && s.host !== null) d.host.set(s.host)
    const b = this.queue.batch()
    b.encoder.copyBufferToBuffer(s.buffer as GPUBuffer, 0, d.buffer as GPUBuffer, 0, d.size * 4)
    await this.queue.settle(b)
  }

  async scale (t: Tensor, s: number): Promise<void> {
    const x = this.f32(t, 't')
    await this.elementwise(ew.scale, x.size, [s], [x.ref()])
  }

  async accumulate (dst: Tensor, src: Tensor, alpha = 1): Promise<void> {
    const d = this.f32(dst, 'dst'); const s = this.f32(src, 'src')
    chk.size('src', src, dst.size)
    await this.elementwise(ew.accumulate, d.size, [alpha], [d.ref(), s.ref()])
  }

  async sumSquares (t: Tensor): Promise<number> {
    const x = this.f32(t, 't')
    if (x.size === 0) return 0
    const groups = Math.min(SUMSQ_MAX_GROUPS, Math.ceil(x.size / SUMSQ_WG))
    const b = this.queue.batch()
    const partials = this.memory.scratchRegion(b, groups * 12)
    this.queue.dispatch(sumSquaresKernel, [x.size, groups * SUMSQ_WG], [partials, x.ref()], [groups, 1])
    const p = new Float32Array(await this.queue.readback({ ...partials, size: groups * 12 }))
    let sum = 0
    let flags = 0
    for (let g = 0; g < groups; g++) {
      const sc = p[3 * g]
      sum += sc * sc * p[3 * g + 1]
      flags |= p[3 * g + 2]
    }
    if ((flags & 1) !== 0) return NaN
    if ((flags & 2) !== 0) return Infinity
    return sum
  }

  // ---- encoder --------------------------------------------------------------------------------

  async encoderForward (out: Tensor, inp: Tensor, wte: Tensor, wpe: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const ids = this.i32(inp, 'inp'); const we = this.f32(wte, 'wte'); const pe = this.f32(wpe, 'wpe')
    const { T, C, V } = chk.encoderDims(out, inp, wte, wpe)
    chk.indicesInRange('inp (token ids)', ids.host as Int32Array, 0, V)
    await this.elementwise(ew.encoderForward, o.size, [T, C], [o.ref(), ids.ref(), we.ref(), pe.ref()])
  }

  async encoderBackward (dwte: Tensor, dwpe: Tensor, dout: Tensor, inp: Tensor): Promise<void> {
    const dwe = this.f32(dwte, 'dwte'); const dpe = this.f32(dwpe, 'dwpe'); const d = this.f32(dout, 'dout'); const ids = this.i32(inp, 'inp')
    const { B, T, C, V } = chk.encoderDims(dout, inp, dwte, dwpe)
    const host = ids.host as Int32Array
    chk.indicesInRange('inp (token ids)', host, 0, V)
    this.distinct(['dwte', dwe], ['dwpe', dpe])
    if (d.size === 0) return
    // token -> positions, grouped by token, positions ascending (a fixed summation order)
    const order = Array.from({ length: host.length }, (_, i) => i).sort((a, b) => host[a] - host[b] || a - b)
    const uniq: number[] = []
    const offs: number[] = []
    order.forEach((pos, k) => { if (k === 0 || host[pos] !== host[order[k - 1]]) { uniq.push(host[pos]); offs.push(k) } })
    offs.push(order.length)
    const U = uniq.length
    const csr = Int32Array.from([...uniq, ...offs, ...order])
    const b = this.queue.batch()
    const csrRef = this.memory.hostData(b, new Uint8Array(csr.buffer))
    this.queue.dispatch(ew.encoderBackwardWte, [U * C, C, U], [dwe.ref(), d.ref(), csrRef], grid1d(U * C, this.queue.maxDim))
    this.colsum(dpe.ref(), d.ref(), B, T * C, T * C, 0)
    await this.queue.settle(b)
  }

  // ---- layernorm ------------------------------------------------------------------------------

  async layernormForward (out: Tensor, mean: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, bias: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const m = this.f32(mean, 'mean'); const r = this.f32(rstd, 'rstd'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const b = this.f32(bias, 'bias')
    const { N, C } = chk.layernormDims(inp, weight, bias, mean, rstd)
    chk.size('out', out, inp.size)
    this.distinct(['out', o], ['mean', m], ['rstd', r])
    await this.elementwise(layernormForward, N, [C], [o.ref(), m.ref(), r.ref(), x.ref(), w.ref(), b.ref()])
  }

  async layernormBackward (dinp: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const dw = this.f32(dweight, 'dweight'); const db = this.f32(dbias, 'dbias'); const d = this.f32(dout, 'dout')
    const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const m = this.f32(mean, 'mean'); const r = this.f32(rstd, 'rstd')
    const { N, C } = chk.layernormDims(inp, weight, dbias, mean, rstd)
    chk.size('dweight', dweight, C)
    chk.size('dinp', dinp, inp.size)
    chk.size('dout', dout, inp.size)
    this.distinct(['dinp', dx], ['dweight', dw], ['dbias', db])
    if (N === 0) return
    const b = this.queue.batch()
    this.queue.dispatch(layernormBackwardInput, [N, C], [dx.ref(), d.ref(), x.ref(), w.ref(), m.ref(), r.ref()], grid1d(N, this.queue.maxDim))
    const J = Math.ceil(N / COLSUM_ROWS)
    const part = this.memory.scratchRegion(b, J * 2 * C * 4)
    this.queue.dispatch(layernormBackwardParams, [J * C, N, C, COLSUM_ROWS], [part, d.ref(), x.ref(), m.ref(), r.ref()], grid1d(J * C, this.queue.maxDim))
    this.colsum(dw.ref(), part, J, C, 2 * C, 0)
    this.colsum(db.ref(), part, J, C, 2 * C, C)
    await this.queue.settle(b)
  }

  // ---- matmul ---------------------------------------------------------------------------------

  async matmulForward (out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const b = bias === null ? null : this.f32(bias, 'bias')
    const { N, C, OC } = this.mm.dims(out, inp, weight, bias)
    if (o.size === 0) return
    const batch = this.mm.batch()
    this.mm.record('nt', o.ref(), this.mm.operand(x), this.mm.operand(w), b?.ref() ?? null, N, OC, C, false)
    await this.queue.settle(batch)
  }

  async matmulBackward (dinp: Tensor, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const dw = this.f32(dweight, 'dweight'); const db = dbias === null ? null : this.f32(dbias, 'dbias')
    const d = this.f32(dout, 'dout'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight')
    const { N, C, OC } = this.mm.dims(dout, inp, weight, dbias)
    chk.size('dinp', dinp, inp.size)
    chk.dims('dweight', dweight, weight.shape)
    this.distinct(['dinp', dx], ['dweight', dw], ...(db === null ? [] : [['dbias', db] as [string, GpuTensor]]))
    if (N === 0) return
    const batch = this.mm.batch()
    const od = this.mm.operand(d)
    this.mm.record('nn', dx.ref(), od, this.mm.operand(w), null, N, C, OC, true) // dinp[N,C] += dout[N,OC] @ W[OC,C]
    this.mm.record('tn', dw.ref(), od, this.mm.operand(x), null, OC, C, N, true) // dW[OC,C] += dout^T @ inp[N,C]
    if (db !== null) this.colsum(db.ref(), d.ref(), N, OC, OC, 0)
    await this.queue.settle(batch)
  }

  // ---- attention ------------------------------------------------------------------------------

  async attentionForward (out: Tensor, preatt: Tensor, att_: Tensor, qkv: Tensor, NH: number): Promise<void> {
    const o = this.f32(out, 'out'); const pa = this.f32(preatt, 'preatt'); const a = this.f32(att_, 'att'); const q = this.f32(qkv, 'qkv')
    const { B, T, C } = chk.attentionDims(out, preatt, att_, qkv, NH)
    this.distinct(['out', o], ['preatt', pa], ['att', a])
    if (B * T * C === 0) return
    const P = (n: number): number[] => [n, T, C, NH, C / NH, 1 / Math.sqrt(C / NH)]
    const b = this.queue.batch()
    this.queue.dispatch(att.attentionScores, P(B * NH * T * T), [pa.ref(), q.ref()], grid1d(B * NH * T * T, this.queue.maxDim))
    this.queue.dispatch(att.attentionSoftmax, P(B * NH * T), [a.ref(), pa.ref()], grid1d(B * NH * T, this.queue.maxDim))
    this.queue.dispatch(att.attentionValues, P(B * T * C), [o.ref(), a.ref(), q.ref()], grid1d(B * T * C, this.queue.maxDim))
    await this.queue.settle(b)
  }

  async attentionBackward (dqkv: Tensor, dpreatt: Tensor, datt: Tensor, dout: Tensor, qkv: Tensor, att_: Tensor, NH: number): Promise<void> {
    const dq = this.f32(dqkv, 'dqkv'); const dpa = this.f32(dpreatt, 'dpreatt'); const da = this.f32(datt, 'datt')
    const d = this.f32(dout, 'dout'); const q = this.f32(qkv, 'qkv'); const a = this.f32(att_, 'att')
    const { B, T, C } = chk.attentionDims(dout, dpreatt, datt, qkv, NH)
    chk.dims('att', att_, datt.shape)
    chk.dims('dqkv', dqkv, qkv.shape)
    this.distinct(['dqkv', dq], ['dpreatt', dpa], ['datt', da])
    if (B * T * C === 0) return
    const P = (n: number): number[] => [n, T, C, NH, C / NH, 1 / Math.sqrt(C / NH)]
    const b = this.queue.batch()
    this.queue.dispatch(att.attentionBackwardAtt, P(B * NH * T * T), [da.ref(), q.ref(), d.ref()], grid1d(B * NH * T * T, this.queue.maxDim))
    this.queue.dispatch(att.attentionBackwardSoftmax, P(B * NH * T), [dpa.ref(), a.ref(), da.ref()], grid1d(B * NH * T, this.queue.maxDim))
    this.queue.dispatch(att.attentionBackwardQkv, P(B * T * 3 * C), [dq.ref(), q.ref(), a.ref(), dpa.ref(), d.ref()], grid1d(B * T * 3 * C, this.queue.maxDim))
    await this.queue.settle(b)
  }

  async attentionFlashForward (out: Tensor, lse: Tensor, qkv: Tensor, NH: number): Promise<void> { await this.flash.forward(out, lse, qkv, NH) }
  async attentionFlashBackward (dqkv: Tensor, dout: Tensor, out: Tensor, qkv: Tensor, lse: Tensor, NH: number): Promise<void> { await this.flash.backward(dqkv, dout, out, qkv, lse, NH) }

  // ---- gelu, residual -------------------------------------------------------------------------

  async geluForward (out: Tensor, inp: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(inp, 'inp')
    chk.size('out', out, inp.size)
    await this.elementwise(ew.geluForward, x.size, [], [o.ref(), x.ref()])
  }

  async geluBackward (dinp: Tensor, inp: Tensor, dout: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const x = this.f32(inp, 'inp'); const d = this.f32(dout, 'dout')
    chk.size('dinp', dinp, inp.size)
    chk.size('dout', dout, inp.size)
    await this.elementwise(ew.geluBackward, x.size, [], [dx.ref(), x.ref(), d.ref()])
  }

  async residualForward (out: Tensor, a: Tensor, b: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(a, 'a'); const y = this.f32(b, 'b')
    chk.size('a', a, out.size)
    chk.size('b', b, out.size)
    await this.elementwise(ew.residual, o.size, [], [o.ref(), x.ref(), y.ref()])
  }

  // ---- cross-entropy --------------------------------------------------------------------------

  async crossEntropyForward (losses: Tensor, probs: Tensor, logits: Tensor, targets: Tensor): Promise<void> {
    const l = this.f32(losses, 'losses'); const p = this.f32(probs, 'probs'); const x = this.f32(logits, 'logits'); const tg = this.i32(targets, 'targets')
    const { N, V } = chk.crossEntropyDims(probs, logits, targets)
    chk.size('losses', losses, N)
    chk.indicesInRange('targets', tg.host as Int32Array, -0x80000000, V)
    this.distinct(['losses', l], ['probs', p])
    await this.elementwise(crossEntropyForward, N, [V], [l.ref(), p.ref(), x.ref(), tg.ref()])
  }

  async crossEntropyBackward (dlogits: Tensor, probs: Tensor, targets: Tensor, dlossScale: number): Promise<void> {
    const dl = this.f32(dlogits, 'dlogits'); const p = this.f32(probs, 'probs'); const tg = this.i32(targets, 'targets')
    const { V } = chk.crossEntropyDims(dlogits, probs, targets)
    chk.finiteNumber('dlossScale', dlossScale)
    chk.indicesInRange('targets', tg.host as Int32Array, -0x80000000, V)
    await this.elementwise(ew.crossEntropyBackward, dl.size, [V, dlossScale], [dl.ref(), p.ref(), tg.ref()])
  }

  // ---- AdamW ----------------------------------------------------------------------------------

  async adamwUpdate (params: Tensor, grads: Tensor, m: Tensor, v: Tensor, hp: AdamWParams): Promise<void> {
    const p = this.f32(params, 'params'); const g = this.f32(grads, 'grads'); const mm = this.f32(m, 'm'); const vv = this.f32(v, 'v')
    chk.size('grads', grads, params.size)
    chk.size('m', m, params.size)
    chk.size('v', v, params.size)
    chk.positiveInt('hp.step', hp.step)
    for (const k of ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'gradScale'] as const) chk.finiteNumber(`hp.${k}`, hp[k])
    this.distinct(['params', p], ['m', mm], ['v', vv])
    const bc1 = 1 - hp.beta1 ** hp.step
    const bc2 = 1 - hp.beta2 ** hp.step
    await this.elementwise(ew.adamw, p.size, [hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weightDecay, bc1, bc2, hp.gradScale, 1 - hp.beta1, 1 - hp.beta2],
      [p.ref(), g.ref(), mm.ref(), vv.ref()])
  }

  // ---- Llama layers (llama-ops.ts) ------------------------------------------------------------
  async rmsnormForward (out: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, eps: number): Promise<void> { await this.llama.rmsnormForward(out, rstd, inp, weight, eps) }
  async rmsnormBackward (dinp: Tensor, dweight: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, rstd: Tensor): Promise<void> { await this.llama.rmsnormBackward(dinp, dweight, dout, inp, weight, rstd) }
  async ropeForward (out: Tensor, inp: Tensor, NH: number, theta: number): Promise<void> { await this.llama.ropeForward(out, inp, NH, theta) }
  async ropeBackward (dinp: Tensor, dout: Tensor, NH: number, theta: number): Promise<void> { await this.llama.ropeBackward(dinp, dout, NH, theta) }
  async swigluForward (out: Tensor, inp: Tensor): Promise<void> { await this.llama.swigluForward(out, inp) }
  async swigluBackward (dinp: Tensor, dout: Tensor, inp: Tensor): Promise<void> { await this.llama.swigluBackward(dinp, dout, inp) }

  // ---- recording helpers --------------------------------------------------------------------

  /** One elementwise/per-row kernel over n threads; resolves when it completed. */
  private async elementwise (def: KernelDef, n: number, params: readonly number[], refs: readonly Ref[]): Promise<void> {
    if (n === 0) return
    const b = this.queue.batch()
    this.queue.dispatch(def, [n, ...params], refs, grid1d(n, this.queue.maxDim))
    await this.queue.settle(b)
  }

  /** dst[k] += sum over r < rows of src[r*ld + off + k], k < K; chunked passes for long columns. */
  private colsum (dst: Ref, src: Ref, rows: number, K: number, ld: number, off: number): void {
    if (K === 0 || rows === 0) return
    let cur = src; let n = rows; let stride = ld; let o = off
    while (n > COLSUM_ROWS) {
      const J = Math.ceil(n / COLSUM_ROWS)
      const part = this.memory.scratchRegion(this.queue.batch(), J * K * 4)
      this.queue.dispatch(colsum, [J * K, K, n, stride, o, COLSUM_ROWS, 0], [part, cur], grid1d(J * K, this.queue.maxDim))
      cur = part; n = J; stride = K; o = 0
    }
    this.queue.dispatch(colsum, [K, K, n, stride, o, COLSUM_ROWS, 1], [dst, cur], grid1d(K, this.queue.maxDim))
  }

  // ---- argument helpers ---------------------------------------------------------------------

  private distinct (...ts: Array<[string, GpuTensor]>): void {
    for (let i = 0; i < ts.length; i++) {
      for (let j = i + 1; j < ts.length; j++) {
        if (ts[i][1] === ts[j][1]) throw new ShapeError(`${ts[i][0]} and ${ts[j][0]} must be different tensors`)
      }
    }
  }

  private alive (): void {
    if (this.disposed) throw new ShapeError('backend is disposed')
    if (this.queue.lost !== null) throw new WebGpuDeviceError(`WebGPU device lost (${this.queue.lost})`)
  }

  private tensor (t: Tensor, name: string): GpuTensor {
    this.alive()
    if (!(t instanceof GpuTensor) || t.owner !== this) throw new ShapeError(`${name}: tensor does not belong to this backend`)
    if (t.buffer === null) throw new ShapeError(`${name}: tensor was freed`)
    return t
  }

  private f32 (t: Tensor, name: string): GpuTensor {
    const x = this.tensor(t, name)
    chk.dtype(name, t, 'f32')
    return x
  }

  private i32 (t: Tensor, name: string): GpuTensor {
    const x = this.tensor(t, name)
    chk.dtype(name, t, 'i32')
    return x
  }
}