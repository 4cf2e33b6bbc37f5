/// <reference types="@webgpu/types" />
// WebGPU ComputeBackend: tensors are GPU storage buffers; kernels are the WGSL compute shaders of
// shaders/. Runs on any GPUDevice (Dawn for Node through node-gpu.ts, or a browser's navigator.gpu):
// nothing in this file is Node-only.
//
// Queue and completion. Each kernel call is validated at once (ShapeError before anything is
// encoded), then recorded into the open *batch*: one command encoder, one compute pass per dispatch,
// the dispatches' parameters packed into a uniform arena written once at submit. The batch is
// submitted at the end of the current microtask run (or when a readback needs it, or when the arena
// is full), so kernels called back to back without awaiting share one submit. A kernel's promise
// resolves when its batch has completed on the GPU (queue.onSubmittedWorkDone), so awaiting a kernel
// means its outputs are ready, as the contract says; the event loop is free meanwhile. Option
// completion: 'queue' resolves kernels once queued instead and submits once per event-loop turn
// (far fewer GPU round trips per training step; see WebGpuBackendOptions.completion).
// Readbacks (download, sumSquares) copy into a MAP_READ staging buffer and await mapAsync.
//
// i32 tensors (token ids, targets) keep a host mirror: kernels never write them, so the mirror is
// exact and gives host-side range checks (ShapeError naming the bad index, before any writing) and
// the token -> positions lists of the encoder backward, without a GPU round trip.
import { ShapeError } from '../../core/contracts/index.ts'
import type { AdamWParams, BackendInfo, ComputeBackend, DType, Logger, Tensor } from '../../core/contracts/index.ts'
import { kernelChecks as chk } from '../../core/contracts/index.ts'
import { WebGpuDeviceError, WebGpuLimitError, WebGpuUnavailableError } from './errors.ts'
import type { AdapterSummary } from './adapter.ts'
import { grid1d, PARAM_SLOT, wgsl } from './shaders/kernel.ts'
import type { KernelDef } from './shaders/kernel.ts'
import * as ew from './shaders/elementwise.ts'
import { colsum, COLSUM_ROWS, SUMSQ_MAX_GROUPS, SUMSQ_WG, sumSquares as sumSquaresKernel } from './shaders/reduce.ts'
import { layernormBackwardInput, layernormBackwardParams, layernormForward } from './shaders/layernorm.ts'
import { crossEntropyForward } from './shaders/crossentropy.ts'
import * as att from './shaders/attention.ts'
import { DEFAULT_MATMUL_TILE, matmulGrid, matmulKernel, matmulVec4 } from './shaders/matmul.ts'
import type { MatmulLayout, MatmulPrecision, MatmulTile } from './shaders/matmul.ts'
import { ABSMAX_MAX_GROUPS, ABSMAX_WG, absmax, toHalf } from './shaders/half.ts'

// WebGPU enum values (the GPUBufferUsage/GPUMapMode/GPUShaderStage globals may be absent in Node)
const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const
const MAP_READ = 0x1
const STAGE_COMPUTE = 0x4

/** Runs fn after the current event-loop turn (setImmediate in Node; a zero timeout elsewhere). */
const afterTurn: (fn: () => void) => void = typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
  ? fn => { (globalThis as unknown as { setImmediate: (f: () => void) => void }).setImmediate(fn) }
  : fn => { setTimeout(fn, 0) }

/** Dispatches per batch (the uniform arena holds one 256-byte parameter slot each). */
const SLOTS = 256
/** Storage offsets inside the scratch buffer are multiples of this (>= any minStorageBufferOffsetAlignment). */
const ALIGN = 256
/** f16 scale slots per batch (one per staged operand; a slot is ALIGN bytes, for binding offsets). */
const SCALE_SLOTS = 128
/** Writes larger than this go through a temporary buffer instead of the scratch arena. */
const SCRATCH_WRITE_MAX = 4 << 20

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

/** A binding: a whole tensor buffer or a region of the scratch arena. */
interface Ref { readonly buffer: GPUBuffer, readonly offset: number, readonly size: number }

/** A matmul operand; `half`: its f16 copy and scale slot (f16 precision only). */
interface Operand { readonly ref: Ref, readonly half?: { readonly h: Ref, readonly slot: Ref } }

class GpuTensor implements Tensor {
  readonly shape: readonly number[]
  /** null once freed. */
  buffer: GPUBuffer | null
  constructor (readonly owner: WebGpuBackend, shape: readonly number[], readonly dtype: DType, readonly size: number,
    buffer: GPUBuffer, readonly bytes: number, readonly host: Int32Array | null) {
    this.shape = Object.freeze([...shape])
    this.buffer = buffer
  }

  ref (): Ref { return { buffer: this.buffer as GPUBuffer, offset: 0, size: this.bytes } }
}

interface Batch {
  readonly encoder: GPUCommandEncoder
  readonly params: ArrayBuffer
  readonly view: DataView
  slots: number
  scratchUsed: number
  scaleSlots: number
  /** Buffers to destroy once the batch is submitted (freed tensors, outgrown scratch, temporaries). */
  readonly deferred: GPUBuffer[]
  readonly done: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

interface Pipeline { readonly pipeline: GPUComputePipeline, readonly layout: GPUBindGroupLayout, readonly def: KernelDef }

export class WebGpuBackend implements ComputeBackend {
  readonly info: BackendInfo
  private readonly tile: MatmulTile
  private readonly maxDim: number
  private readonly maxBinding: number
  private readonly pipelines = new Map<string, Pipeline>()
  private readonly arena: GPUBuffer
  private readonly dummy: GPUBuffer
  private scratch: GPUBuffer
  /** f16 scale slots (atomicMax targets): kept apart from scratch so no dispatch reads and writes one buffer. */
  private scales: GPUBuffer | null = null
  private readonly precision: MatmulPrecision
  /** The batch submitted last: a call whose work spilled over into it awaits it (the queue runs in order). */
  private lastSubmitted: Batch | null = null
  private readonly staging = new Map<number, GPUBuffer[]>()
  private readonly hostParams = new ArrayBuffer(SLOTS * PARAM_SLOT)
  private readonly hostView = new DataView(this.hostParams)
  private cur: Batch | null = null
  private last: Promise<void> = Promise.resolve()
  private disposed = false
  private lost: string | null = null
  private uncaptured: string | null = null
  /** completion 'queue': the first failure of a batch no caller awaited, thrown at the next readback. */
  private queuedError: unknown = null
  private readonly completion: 'kernel' | 'queue'

  /** Use createWebGpuBackend() (plugin index) or construct on a device you opened with openDevice(). */
  constructor (private readonly device: GPUDevice, readonly adapter: AdapterSummary, private readonly options: WebGpuBackendOptions = {}) {
    this.tile = options.matmulTile ?? DEFAULT_MATMUL_TILE
    this.completion = options.completion ?? 'kernel'
    this.precision = options.matmulPrecision ?? 'f32'
    if (this.precision === 'f16' && !device.features.has('shader-f16')) {
      throw new WebGpuUnavailableError('matmul precision f16 needs a device opened with the shader-f16 feature')
    }
    this.maxDim = device.limits.maxComputeWorkgroupsPerDimension
    this.maxBinding = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize)
    const a = adapter
    const name = [a.vendor, a.device || a.description].filter(s => s !== '').join(' ') || 'unknown adapter'
    this.info = {
      name: 'webgpu',
      device: `${name} (${[a.architecture, a.software && a.architecture !== 'software' ? 'software' : ''].filter(s => s !== '').join(', ') || 'unknown architecture'}; WebGPU)`,
      software: a.software,
      adapter: a,
      matmulTile: this.tile,
      matmulPrecision: this.precision,
      completion: this.completion
    }
    this.arena = device.createBuffer({ size: SLOTS * PARAM_SLOT, usage: USAGE.UNIFORM | USAGE.COPY_DST })
    this.dummy = device.createBuffer({ size: 16, usage: USAGE.STORAGE })
    this.scratch = this.scratchBuffer(1 << 20)
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      const msg = ev.error?.message ?? String(ev)
      this.uncaptured ??= msg
      options.logger?.error('WebGPU device error', { error: msg })
    }
    void device.lost.then(info => {
      if (this.disposed) return
      this.lost = `${info.reason}: ${info.message}`
      options.logger?.error('WebGPU device lost', { reason: info.reason, message: info.message })
    })
  }

  // ---- memory ---------------------------------------------------------------------------------

  alloc (shape: readonly number[], dtype: DType = 'f32'): Tensor {
    this.alive()
    const n = chk.checkShapeArg(shape)
    if (dtype !== 'f32' && dtype !== 'i32') throw new ShapeError(`unknown dtype ${String(dtype)}`)
    const bytes = this.tensorBytes(n, shape)
    // WebGPU zero-initializes new buffers
    const buffer = this.device.createBuffer({ size: bytes, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST })
    return new GpuTensor(this, shape, dtype, n, buffer, bytes, dtype === 'i32' ? new Int32Array(n) : null)
  }

  upload (data: Float32Array | Int32Array, shape: readonly number[]): Tensor {
    this.alive()
    const n = chk.checkShapeArg(shape)
    if (!(data instanceof Float32Array) && !(data instanceof Int32Array)) throw new ShapeError('upload: data must be a Float32Array or Int32Array')
    if (data.length !== n) throw new ShapeError(`upload: data has ${data.length} elements, shape ${chk.shapeOf(shape)} needs ${n}`)
    const dtype: DType = data instanceof Float32Array ? 'f32' : 'i32'
    const bytes = this.tensorBytes(n, shape)
    const buffer = this.device.createBuffer({ size: bytes, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST, mappedAtCreation: true })
    new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    buffer.unmap()
    return new GpuTensor(this, shape, dtype, n, buffer, bytes, dtype === 'i32' ? (data as Int32Array).slice() : null)
  }

  async download (t: Tensor): Promise<Float32Array | Int32Array> {
    const x = this.tensor(t, 't')
    if (x.size === 0) return x.dtype === 'f32' ? new Float32Array(0) : new Int32Array(0)
    const bytes = await this.readback({ buffer: x.buffer as GPUBuffer, offset: 0, size: x.size * 4 })
    return x.dtype === 'f32' ? new Float32Array(bytes) : new Int32Array(bytes)
  }

  async write (t: Tensor, data: Float32Array | Int32Array): Promise<void> {
    const x = this.tensor(t, 't')
    if (data.length !== x.size) throw new ShapeError(`write: data has ${data.length} elements, tensor has ${x.size}`)
    if ((x.dtype === 'f32') !== (data instanceof Float32Array)) throw new ShapeError(`write: data type does not match tensor dtype ${x.dtype}`)
    if (x.size === 0) return
    x.host?.set(data)
    const b = this.batch()
    const src = this.hostData(b, new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    b.encoder.copyBufferToBuffer(src.buffer, src.offset, x.buffer as GPUBuffer, 0, x.size * 4)
    await this.settle(b)
  }

  free (t: Tensor): void {
    const x = this.tensor(t, 't')
    const buf = x.buffer as GPUBuffer
    x.buffer = null
    // a buffer recorded in the open batch must outlive its submit; submitted work keeps it alive itself
    if (this.cur !== null) this.cur.deferred.push(buf)
    else buf.destroy()
  }

  async dispose (): Promise<void> {
    if (this.disposed) return
    this.flush()
    await this.last.catch(() => {})
    this.disposed = true
    for (const list of this.staging.values()) for (const s of list) s.destroy()
    this.staging.clear()
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
    const b = this.batch()
    b.encoder.copyBufferToBuffer(s.buffer as GPUBuffer, 0, d.buffer as GPUBuffer, 0, d.size * 4)
    await this.settle(b)
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
    const b = this.batch()
    const partials = this.scratchRegion(b, groups * 12)
    this.dispatch(sumSquaresKernel, [x.size, groups * SUMSQ_WG], [partials, x.ref()], [groups, 1])
    const p = new Float32Array(await this.readback({ ...partials, size: groups * 12 }))
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
    const b = this.batch()
    const csrRef = this.hostData(b, new Uint8Array(csr.buffer))
    this.dispatch(ew.encoderBackwardWte, [U * C, C, U], [dwe.ref(), d.ref(), csrRef], grid1d(U * C, this.maxDim))
    this.colsum(dpe.ref(), d.ref(), B, T * C, T * C, 0)
    await this.settle(b)
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
    const b = this.batch()
    this.dispatch(layernormBackwardInput, [N, C], [dx.ref(), d.ref(), x.ref(), w.ref(), m.ref(), r.ref()], grid1d(N, this.maxDim))
    const J = Math.ceil(N / COLSUM_ROWS)
    const part = this.scratchRegion(b, J * 2 * C * 4)
    this.dispatch(layernormBackwardParams, [J * C, N, C, COLSUM_ROWS], [part, d.ref(), x.ref(), m.ref(), r.ref()], grid1d(J * C, this.maxDim))
    this.colsum(dw.ref(), part, J, C, 2 * C, 0)
    this.colsum(db.ref(), part, J, C, 2 * C, C)
    await this.settle(b)
  }

  // ---- matmul ---------------------------------------------------------------------------------

  private mmDims (out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null): { N: number, C: number, OC: number } {
    const { N, C, OC } = chk.matmulDims(out, inp, weight, bias)
    for (const [M, NN] of [[N, OC], [N, C], [OC, C]]) {
      const [gx, gy] = matmulGrid(M, NN, this.tile)
      if (gx > this.maxDim || gy > this.maxDim) throw new WebGpuLimitError(`matmul ${M}x${NN} needs ${gx}x${gy} workgroups; the device allows ${this.maxDim} per dimension (use a larger tile)`)
    }
    return { N, C, OC }
  }

  async matmulForward (out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const b = bias === null ? null : this.f32(bias, 'bias')
    const { N, C, OC } = this.mmDims(out, inp, weight, bias)
    if (o.size === 0) return
    const batch = this.matmulBatch()
    this.matmul('nt', o.ref(), this.operand(x), this.operand(w), b?.ref() ?? null, N, OC, C, false)
    await this.settle(batch)
  }

  async matmulBackward (dinp: Tensor, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const dw = this.f32(dweight, 'dweight'); const db = dbias === null ? null : this.f32(dbias, 'dbias')
    const d = this.f32(dout, 'dout'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight')
    const { N, C, OC } = this.mmDims(dout, inp, weight, dbias)
    chk.size('dinp', dinp, inp.size)
    chk.dims('dweight', dweight, weight.shape)
    this.distinct(['dinp', dx], ['dweight', dw], ...(db === null ? [] : [['dbias', db] as [string, GpuTensor]]))
    if (N === 0) return
    const batch = this.matmulBatch()
    const od = this.operand(d)
    this.matmul('nn', dx.ref(), od, this.operand(w), null, N, C, OC, true) // dinp[N,C] += dout[N,OC] @ W[OC,C]
    this.matmul('tn', dw.ref(), od, this.operand(x), null, OC, C, N, true) // dW[OC,C] += dout^T @ inp[N,C]
    if (db !== null) this.colsum(db.ref(), d.ref(), N, OC, OC, 0)
    await this.settle(batch)
  }

  /**
   * out[M,N] (+)= A B per layout (shaders/matmul.ts). With f16 precision, a and b are f16 operands
   * staged by half() (pass the same staged operand to several matmuls to convert it once).
   */
  private matmul (layout: MatmulLayout, out: Ref, a: Operand, b: Operand, bias: Ref | null, M: number, N: number, K: number, acc: boolean): void {
    if (M === 0 || N === 0) return
    const vec = matmulVec4(layout, M, N, K, this.tile)
    const def = matmulKernel(layout, vec, this.tile, this.precision)
    const dummy = { buffer: this.dummy, offset: 0, size: 16 }
    const params = [M, N, K, acc ? 1 : 0, bias === null ? 0 : 1]
    if (this.precision === 'f32') {
      this.dispatch(def, params, [out, a.ref, b.ref, bias ?? dummy], matmulGrid(M, N, this.tile))
      return
    }
    if (a.half === undefined || b.half === undefined) throw new Error('f16 matmul: operands were not staged')
    this.dispatch(def, params, [out, a.half.h, b.half.h, bias ?? dummy, a.half.slot, b.half.slot], matmulGrid(M, N, this.tile))
  }

  /** A matmul operand: the f32 tensor, and its f16 copy when the precision is f16. */
  private operand (t: GpuTensor): Operand {
    const ref = t.ref()
    if (this.precision === 'f32' || t.size === 0) return { ref }
    return { ref, half: this.half(ref, t.size) }
  }

  /**
   * Opens a batch with room for a whole matmul call: f16 copies live in scratch regions of one batch,
   * and a flush in between would hand their bytes to the next batch's temporaries.
   */
  private matmulBatch (): Batch {
    const b = this.batch()
    if (this.precision === 'f16' && (b.slots + 16 > SLOTS || b.scaleSlots + 3 > SCALE_SLOTS)) {
      this.flush()
      return this.batch()
    }
    return b
  }

  /** Records absmax + toHalf for n f32 values at x: the f16 copy and its scale slot. */
  private half (x: Ref, n: number): { h: Ref, slot: Ref } {
    const b = this.batch()
    this.scales ??= this.device.createBuffer({ size: SCALE_SLOTS * ALIGN, usage: USAGE.STORAGE | USAGE.COPY_DST })
    const slot = { buffer: this.scales, offset: b.scaleSlots++ * ALIGN, size: 16 }
    b.encoder.clearBuffer(slot.buffer, slot.offset, slot.size)
    const groups = Math.min(ABSMAX_MAX_GROUPS, Math.ceil(n / ABSMAX_WG))
    this.dispatch(absmax, [n, groups * ABSMAX_WG], [slot, x], [groups, 1])
    const n4 = Math.ceil(n / 4)
    const h = this.scratchRegion(b, n4 * 8)
    this.dispatch(toHalf, [n4, n], [h, x, slot], grid1d(n4, this.maxDim))
    return { h, slot }
  }

  // ---- attention ------------------------------------------------------------------------------


  async attentionForward (out: Tensor, preatt: Tensor, att_: Tensor, qkv: Tensor, NH: number): Promise<void> {
    const o = this.f32(out, 'out'); const pa = this.f32(preatt, 'preatt'); const a = this.f32(att_, 'att'); const q = this.f32(qkv, 'qkv')
    const { B, T, C } = chk.attentionDims(out, preatt, att_, qkv, NH)
    this.distinct(['out', o], ['preatt', pa], ['att', a])
    if (B * T * C === 0) return
    const P = (n: number): number[] => [n, T, C, NH, C / NH, 1 / Math.sqrt(C / NH)]
    const b = this.batch()
    this.dispatch(att.attentionScores, P(B * NH * T * T), [pa.ref(), q.ref()], grid1d(B * NH * T * T, this.maxDim))
    this.dispatch(att.attentionSoftmax, P(B * NH * T), [a.ref(), pa.ref()], grid1d(B * NH * T, this.maxDim))
    this.dispatch(att.attentionValues, P(B * T * C), [o.ref(), a.ref(), q.ref()], grid1d(B * T * C, this.maxDim))
    await this.settle(b)
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
    const b = this.batch()
    this.dispatch(att.attentionBackwardAtt, P(B * NH * T * T), [da.ref(), q.ref(), d.ref()], grid1d(B * NH * T * T, this.maxDim))
    this.dispatch(att.attentionBackwardSoftmax, P(B * NH * T), [dpa.ref(), a.ref(), da.ref()], grid1d(B * NH * T, this.maxDim))
    this.dispatch(att.attentionBackwardQkv, P(B * T * 3 * C), [dq.ref(), q.ref(), a.ref(), dpa.ref(), d.ref()], grid1d(B * T * 3 * C, this.maxDim))
    await this.settle(b)
  }

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

  // ---- batches, dispatch, readback --------------------------------------------------------------

  /** The open batch, opened (with its flush scheduled after the current microtasks) if none. */
  private batch (): Batch {
    if (this.cur !== null) return this.cur
    let resolve!: () => void
    let reject!: (err: unknown) => void
    const done = new Promise<void>((res, rej) => { resolve = res; reject = rej })
    done.catch(() => {}) // observed by callers; never an unhandled rejection here
    // one host arena serves every batch: writeBuffer copies it at submit, before the next batch opens
    const b: Batch = { encoder: this.device.createCommandEncoder(), params: this.hostParams, view: this.hostView, slots: 0, scratchUsed: 0, scaleSlots: 0, deferred: [], done, resolve, reject }
    this.device.pushErrorScope('out-of-memory')
    this.device.pushErrorScope('validation')
    this.cur = b
    // 'kernel': submit once the calls made in this microtask run are recorded; 'queue': once this
    // event-loop turn's calls are (awaited kernels resolve at once, so a whole step records here)
    const later = this.completion === 'queue' ? afterTurn : queueMicrotask
    later(() => { if (this.cur === b) this.flush() })
    return b
  }

  /** What a kernel call awaits: its batch's completion ('kernel'), or nothing ('queue'). */
  private async settle (b: Batch): Promise<void> {
    // a call that filled its batch went on in the next one: await the newest (batches finish in order)
    const last = this.cur ?? this.lastSubmitted ?? b
    if (this.completion === 'kernel') return await last.done
    last.done.catch((err: unknown) => { this.queuedError ??= err })
  }

  /** Submits the open batch; its promise settles when the GPU has finished it. */
  private flush (): void {
    const b = this.cur
    if (b === null) return
    this.cur = null
    this.lastSubmitted = b
    if (b.slots > 0) this.device.queue.writeBuffer(this.arena, 0, b.params, 0, b.slots * PARAM_SLOT)
    this.device.queue.submit([b.encoder.finish()])
    for (const buf of b.deferred) buf.destroy()
    const validation = this.device.popErrorScope()
    const oom = this.device.popErrorScope()
    const finished = Promise.all([this.device.queue.onSubmittedWorkDone(), validation, oom]).then(([, v, o]) => {
      const err = v ?? o
      if (err !== null) throw new WebGpuDeviceError(`WebGPU ${v !== null ? 'validation' : 'out-of-memory'} error: ${err.message}`)
      if (this.lost !== null) throw new WebGpuDeviceError(`WebGPU device lost (${this.lost})`)
      if (this.uncaptured !== null) throw new WebGpuDeviceError(`WebGPU device error: ${this.uncaptured}`)
    })
    finished.then(b.resolve, b.reject)
    this.last = finished.catch(() => {})
  }

  /** Records one dispatch into the open batch. refs follow def.bindings' order. */
  private dispatch (def: KernelDef, params: readonly number[], refs: readonly Ref[], grid: readonly [number, number]): void {
    if (refs.length !== def.bindings.length) throw new Error(`kernel ${def.key}: ${refs.length} bindings given, ${def.bindings.length} declared`)
    if (grid[0] > this.maxDim || grid[1] > this.maxDim) throw new WebGpuLimitError(`kernel ${def.key}: ${grid[0]}x${grid[1]} workgroups exceed the device's ${this.maxDim} per dimension`)
    const pl = this.pipeline(def)
    let b = this.batch()
    if (b.slots === SLOTS) { this.flush(); b = this.batch() }
    const slot = b.slots++
    def.params.forEach(([, type], i) => {
      const off = slot * PARAM_SLOT + 4 * i
      const v = params[i] ?? 0
      if (type === 'f32') b.view.setFloat32(off, v, true)
      else if (type === 'i32') b.view.setInt32(off, v, true)
      else b.view.setUint32(off, v, true)
    })
    // A buffer both written and read by one dispatch is invalid in WebGPU: read a scratch copy instead.
    const written = new Set<GPUBuffer>()
    def.bindings.forEach((bd, i) => {
      if (bd.access !== 'read_write') return
      if (written.has(refs[i].buffer)) throw new ShapeError(`kernel ${def.key}: two outputs are the same tensor`)
      written.add(refs[i].buffer)
    })
    const bound = refs.map((r, i) => {
      if (def.bindings[i].access === 'read_write' || !written.has(r.buffer)) return r
      const copy = this.scratchRegion(b, r.size)
      b.encoder.copyBufferToBuffer(r.buffer, r.offset, copy.buffer, copy.offset, r.size)
      return copy
    })
    const group = this.device.createBindGroup({
      layout: pl.layout,
      entries: [
        { binding: 0, resource: { buffer: this.arena, offset: slot * PARAM_SLOT, size: PARAM_SLOT } },
        ...bound.map((r, i) => ({ binding: i + 1, resource: { buffer: r.buffer, offset: r.offset, size: r.size } }))
      ]
    })
    const pass = b.encoder.beginComputePass()
    pass.setPipeline(pl.pipeline)
    pass.setBindGroup(0, group)
    pass.dispatchWorkgroups(grid[0], grid[1])
    pass.end()
  }

  /** One elementwise/per-row kernel over n threads; resolves when it completed. */
  private async elementwise (def: KernelDef, n: number, params: readonly number[], refs: readonly Ref[]): Promise<void> {
    if (n === 0) return
    const b = this.batch()
    this.dispatch(def, [n, ...params], refs, grid1d(n, this.maxDim))
    await this.settle(b)
  }

  /** dst[k] += sum over r < rows of src[r*ld + off + k], k < K; chunked passes for long columns. */
  private colsum (dst: Ref, src: Ref, rows: number, K: number, ld: number, off: number): void {
    if (K === 0 || rows === 0) return
    let cur = src; let n = rows; let stride = ld; let o = off
    while (n > COLSUM_ROWS) {
      const J = Math.ceil(n / COLSUM_ROWS)
      const part = this.scratchRegion(this.batch(), J * K * 4)
      this.dispatch(colsum, [J * K, K, n, stride, o, COLSUM_ROWS, 0], [part, cur], grid1d(J * K, this.maxDim))
      cur = part; n = J; stride = K; o = 0
    }
    this.dispatch(colsum, [K, K, n, stride, o, COLSUM_ROWS, 1], [dst, cur], grid1d(K, this.maxDim))
  }

  /** Copies `ref` to the host after everything queued so far. */
  private async readback (ref: Ref): Promise<ArrayBuffer> {
    const b = this.batch()
    const size = Math.ceil(ref.size / 4) * 4
    const cap = Math.max(256, 2 ** Math.ceil(Math.log2(size)))
    const pool = this.staging.get(cap) ?? []
    const staging = pool.pop() ?? this.device.createBuffer({ size: cap, usage: USAGE.MAP_READ | USAGE.COPY_DST })
    b.encoder.copyBufferToBuffer(ref.buffer, ref.offset, staging, 0, size)
    this.flush()
    try {
      await Promise.all([b.done, staging.mapAsync(MAP_READ, 0, size)])
      if (this.queuedError !== null) { const err = this.queuedError; this.queuedError = null; throw err }
      const out = staging.getMappedRange(0, size).slice(0)
      staging.unmap()
      if (!this.disposed) { pool.push(staging); this.staging.set(cap, pool) } else staging.destroy()
      return out
    } catch (err) {
      staging.destroy()
      throw err
    }
  }

  /** A fresh region of the scratch arena for this batch (regions are reused by later batches). */
  private scratchRegion (b: Batch, bytes: number): Ref {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16)
    if (size > this.maxBinding) throw new WebGpuLimitError(`a temporary of ${size} bytes exceeds the device's maxStorageBufferBindingSize (${this.maxBinding})`)
    if (b.scratchUsed + size > this.scratch.size) {
      b.deferred.push(this.scratch)
      const grow = Math.min(this.maxBinding, Math.max(size, 2 * this.scratch.size))
      this.scratch = this.scratchBuffer(Math.ceil(grow / ALIGN) * ALIGN)
      b.scratchUsed = 0
    }
    const ref = { buffer: this.scratch, offset: b.scratchUsed, size }
    b.scratchUsed += Math.ceil(size / ALIGN) * ALIGN
    return ref
  }

  /** Host bytes placed on the device for this batch (ordered before the batch's commands). */
  private hostData (b: Batch, bytes: Uint8Array): Ref {
    if (bytes.byteLength > SCRATCH_WRITE_MAX) {
      const size = Math.ceil(bytes.byteLength / 16) * 16
      const buf = this.device.createBuffer({ size, usage: USAGE.STORAGE | USAGE.COPY_SRC, mappedAtCreation: true })
      new Uint8Array(buf.getMappedRange()).set(bytes)
      buf.unmap()
      b.deferred.push(buf)
      return { buffer: buf, offset: 0, size }
    }
    const ref = this.scratchRegion(b, bytes.byteLength)
    // queue writes land before the batch's submit and after every earlier submit: the region is ours
    this.device.queue.writeBuffer(ref.buffer, ref.offset, bytes.buffer, bytes.byteOffset, Math.ceil(bytes.byteLength / 4) * 4)
    return { ...ref, size: Math.max(16, Math.ceil(bytes.byteLength / 4) * 4) }
  }

  private scratchBuffer (bytes: number): GPUBuffer {
    return this.device.createBuffer({ size: bytes, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST })
  }

  private pipeline (def: KernelDef): Pipeline {
    const cached = this.pipelines.get(def.key)
    if (cached !== undefined) return cached
    const layout = this.device.createBindGroupLayout({
      label: def.key,
      entries: [
        { binding: 0, visibility: STAGE_COMPUTE, buffer: { type: 'uniform' } },
        ...def.bindings.map((bd, i) => ({ binding: i + 1, visibility: STAGE_COMPUTE, buffer: { type: bd.access === 'read' ? 'read-only-storage' as const : 'storage' as const } }))
      ]
    })
    const module = this.device.createShaderModule({ label: def.key, code: wgsl(def) })
    const pipeline = this.device.createComputePipeline({
      label: def.key,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' }
    })
    const pl = { pipeline, layout, def }
    this.pipelines.set(def.key, pl)
    return pl
  }

  // ---- helpers --------------------------------------------------------------------------------

  private tensorBytes (n: number, shape: readonly number[]): number {
    const bytes = Math.max(16, Math.ceil(n * 4 / 16) * 16)
    if (bytes > this.maxBinding) {
      throw new WebGpuLimitError(`tensor ${chk.shapeOf(shape)} needs ${bytes} bytes; this device binds at most ${this.maxBinding} bytes per buffer (maxStorageBufferBindingSize)`)
    }
    return bytes
  }

  private distinct (...ts: Array<[string, GpuTensor]>): void {
    for (let i = 0; i < ts.length; i++) {
      for (let j = i + 1; j < ts.length; j++) {
        if (ts[i][1] === ts[j][1]) throw new ShapeError(`${ts[i][0]} and ${ts[j][0]} must be different tensors`)
      }
    }
  }

  private alive (): void {
    if (this.disposed) throw new ShapeError('backend is disposed')
    if (this.lost !== null) throw new WebGpuDeviceError(`WebGPU device lost (${this.lost})`)
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
