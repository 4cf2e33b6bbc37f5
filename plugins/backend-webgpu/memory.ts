/// <reference types="@webgpu/types" />
// Device memory of the WebGPU backend: the tensors (one storage buffer each; i32 tensors keep a host
// mirror), the scratch arena that holds one batch's temporaries (partial sums, f16 operand copies,
// host data, copies of aliased inputs), and the pool of MAP_READ staging buffers readbacks copy
// into. Nothing here records or submits work: queue.ts orders it, backend.ts decides what to allocate.
import { kernelChecks as chk } from '../../core/contracts/index.ts'
import type { DType, Tensor } from '../../core/contracts/index.ts'
import { WebGpuLimitError } from './errors.ts'

// WebGPU enum values (the GPUBufferUsage/GPUMapMode globals may be absent in Node)
export const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const

/** Storage offsets inside the scratch buffer are multiples of this (>= any minStorageBufferOffsetAlignment). */
export const ALIGN = 256
/** Writes larger than this go through a temporary buffer instead of the scratch arena. */
const SCRATCH_WRITE_MAX = 4 << 20

/** A binding: a whole tensor buffer or a region of the scratch arena. */
export interface Ref { readonly buffer: GPUBuffer, readonly offset: number, readonly size: number }

/** What the arena keeps per batch: its scratch high-water mark and the buffers to destroy once it is submitted. */
export interface BatchMemory {
  scratchUsed: number
  /** Buffers to destroy once the batch is submitted (freed tensors, outgrown scratch, temporaries). */
  readonly deferred: GPUBuffer[]
}

export class GpuTensor implements Tensor {
  readonly shape: readonly number[]
  /** null once freed. */
  buffer: GPUBuffer | null
  /** owner: the backend that made it (a tensor of another backend is refused). */
  constructor (readonly owner: object, shape: readonly number[], readonly dtype: DType, readonly size: number,
    buffer: GPUBuffer, readonly bytes: number, readonly host: Int32Array | null) {
    this.shape = Object.freeze([...shape])
    this.buffer = buffer
  }

  ref (): Ref { return { buffer: this.buffer as GPUBuffer, offset: 0, size: this.bytes } }
}

export class DeviceMemory {
  /** The largest buffer a dispatch may bind. */
  readonly maxBinding: number
  private scratch: GPUBuffer
  private readonly staging = new Map<number, GPUBuffer[]>()
  private closed = false

  constructor (private readonly device: GPUDevice) {
    this.maxBinding = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize)
    this.scratch = this.scratchBuffer(1 << 20)
  }

  /** A zero-filled tensor (WebGPU zero-initializes new buffers). n: its element count, checked. */
  alloc (owner: object, shape: readonly number[], dtype: DType, n: number): GpuTensor {
    const bytes = this.tensorBytes(n, shape)
    const buffer = this.device.createBuffer({ size: bytes, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST })
    return new GpuTensor(owner, shape, dtype, n, buffer, bytes, dtype === 'i32' ? new Int32Array(n) : null)
  }

  /** A tensor holding a copy of data (written through a mapped buffer: no queue round trip). */
  upload (owner: object, data: Float32Array | Int32Array, shape: readonly number[]): GpuTensor {
    const dtype: DType = data instanceof Float32Array ? 'f32' : 'i32'
    const bytes = this.tensorBytes(data.length, shape)
    const buffer = this.device.createBuffer({ size: bytes, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST, mappedAtCreation: true })
    new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    buffer.unmap()
    return new GpuTensor(owner, shape, dtype, data.length, buffer, bytes, dtype === 'i32' ? (data as Int32Array).slice() : null)
  }

  /** A fresh region of the scratch arena for this batch (regions are reused by later batches). */
  scratchRegion (b: BatchMemory, bytes: number): Ref {
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
  hostData (b: BatchMemory, bytes: Uint8Array): Ref {
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

  /** A MAP_READ buffer of at least `size` bytes, from the pool (sizes are powers of two, >= 256). */
  takeStaging (size: number): GPUBuffer {
    const cap = Math.max(256, 2 ** Math.ceil(Math.log2(size)))
    return this.staging.get(cap)?.pop() ?? this.device.createBuffer({ size: cap, usage: USAGE.MAP_READ | USAGE.COPY_DST })
  }

  /** Returns an unmapped staging buffer to the pool (destroyed once the memory is closed). */
  giveStaging (buf: GPUBuffer): void {
    if (this.closed) { buf.destroy(); return }
    const pool = this.staging.get(buf.size) ?? []
    pool.push(buf)
    this.staging.set(buf.size, pool)
  }

  /** Destroys the pooled staging buffers; the device's destruction frees the rest. */
  close (): void {
    this.closed = true
    for (const list of this.staging.values()) for (const s of list) s.destroy()
    this.staging.clear()
  }

  private tensorBytes (n: number, shape: readonly number[]): number {
    const bytes = Math.max(16, Math.ceil(n * 4 / 16) * 16)
    if (bytes > this.maxBinding) {
      throw new WebGpuLimitError(`tensor ${chk.shapeOf(shape)} needs ${bytes} bytes; this device binds at most ${this.maxBinding} bytes per buffer (maxStorageBufferBindingSize)`)
    }
    return bytes
  }

  private scratchBuffer (bytes: number): GPUBuffer {
    return this.device.createBuffer({ size: bytes, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST })
  }
}
