/// <reference types="@webgpu/types" />
// The submission queue of the WebGPU backend: how kernel calls become GPU work and when their
// promises resolve.
//
// A kernel call, once validated (backend.ts), is recorded into the open *batch*: one command
// encoder, one compute pass per dispatch, the dispatches' parameters packed into a uniform arena
// written once at submit. The batch is submitted at the end of the current microtask run (or when a
// readback needs it, or when the arena is full), so kernels called back to back without awaiting
// share one submit. A kernel's promise resolves when its batch has completed on the GPU
// (queue.onSubmittedWorkDone), so awaiting a kernel means its outputs are ready, as the contract
// says; the event loop is free meanwhile. A call whose dispatches filled its batch goes on in the
// next one, and awaits that newest batch (batches finish in order). Completion 'queue' resolves
// kernels once queued instead and submits once per event-loop turn (far fewer GPU round trips per
// training step; see WebGpuBackendOptions.completion). Readbacks copy into a MAP_READ staging
// buffer (memory.ts) and await mapAsync.
//
// Device errors: each batch runs inside validation and out-of-memory error scopes; a scope's error,
// a lost device or an uncaptured error fails the batch's promise with WebGpuDeviceError.
import { ShapeError } from '../../core/contracts/index.ts'
import type { Logger } from '../../core/contracts/index.ts'
import { WebGpuDeviceError, WebGpuLimitError } from './errors.ts'
import type { BatchMemory, DeviceMemory, Ref } from './memory.ts'
import { USAGE } from './memory.ts'
import { PARAM_SLOT, wgsl } from './shaders/kernel.ts'
import type { KernelDef } from './shaders/kernel.ts'

const MAP_READ = 0x1
const STAGE_COMPUTE = 0x4

/** Dispatches per batch (the uniform arena holds one 256-byte parameter slot each). */
export const SLOTS = 256

/** Runs fn after the current event-loop turn (setImmediate in Node; a zero timeout elsewhere). */
const afterTurn: (fn: () => void) => void = typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
  ? fn => { (globalThis as unknown as { setImmediate: (f: () => void) => void }).setImmediate(fn) }
  : fn => { setTimeout(fn, 0) }

export interface Batch extends BatchMemory {
  readonly encoder: GPUCommandEncoder
  readonly params: ArrayBuffer
  readonly view: DataView
  slots: number
  /** f16 scale slots taken (matmul-ops.ts). */
  scaleSlots: number
  readonly done: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

interface Pipeline { readonly pipeline: GPUComputePipeline, readonly layout: GPUBindGroupLayout, readonly def: KernelDef }

export class SubmitQueue {
  /** maxComputeWorkgroupsPerDimension of the device. */
  readonly maxDim: number
  /** Why the device was lost (`reason: message`), or null. */
  lost: string | null = null
  private readonly arena: GPUBuffer
  private readonly pipelines = new Map<string, Pipeline>()
  private readonly hostParams = new ArrayBuffer(SLOTS * PARAM_SLOT)
  private readonly hostView = new DataView(this.hostParams)
  private cur: Batch | null = null
  /** The batch submitted last: a call whose work spilled over into it awaits it (the queue runs in order). */
  private lastSubmitted: Batch | null = null
  private last: Promise<void> = Promise.resolve()
  private closed = false
  private uncaptured: string | null = null
  /** completion 'queue': the first failure of a batch no caller awaited, thrown at the next readback. */
  private queuedError: unknown = null

  constructor (private readonly device: GPUDevice, private readonly memory: DeviceMemory,
    private readonly completion: 'kernel' | 'queue', logger?: Logger) {
    this.maxDim = device.limits.maxComputeWorkgroupsPerDimension
    this.arena = device.createBuffer({ size: SLOTS * PARAM_SLOT, usage: USAGE.UNIFORM | USAGE.COPY_DST })
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      const msg = ev.error?.message ?? String(ev)
      this.uncaptured ??= msg
      logger?.error('WebGPU device error', { error: msg })
    }
    void device.lost.then(info => {
      if (this.closed) return
      this.lost = `${info.reason}: ${info.message}`
      logger?.error('WebGPU device lost', { reason: info.reason, message: info.message })
    })
  }

  /** The open batch, opened (with its flush scheduled after the current microtasks) if none. */
  batch (): Batch {
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

  /** What a kernel call that opened its work in batch b awaits: its batch's completion ('kernel'), or nothing ('queue'). */
  async settle (b: Batch): Promise<void> {
    // a call that filled its batch went on in the next one: await the newest (batches finish in order)
    const last = this.cur ?? this.lastSubmitted ?? b
    if (this.completion === 'kernel') return await last.done
    last.done.catch((err: unknown) => { this.queuedError ??= err })
  }

  /** Submits the open batch; its promise settles when the GPU has finished it. */
  flush (): void {
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

  /** Submits what is open and waits for everything submitted; a device loss after this is not an error. */
  async close (): Promise<void> {
    this.flush()
    await this.last.catch(() => {})
    this.closed = true
  }

  /** Destroys buf once no recorded work can use it (a buffer in the open batch must outlive its submit). */
  destroyAfterUse (buf: GPUBuffer): void {
    if (this.cur !== null) this.cur.deferred.push(buf)
    else buf.destroy() // submitted work keeps it alive itself
  }

  /** Records one dispatch into the open batch (a full batch is submitted first). refs follow def.bindings' order. */
  dispatch (def: KernelDef, params: readonly number[], refs: readonly Ref[], grid: readonly [number, number]): void {
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
      const copy = this.memory.scratchRegion(b, r.size)
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

  /** Copies `ref` to the host after everything queued so far. */
  async readback (ref: Ref): Promise<ArrayBuffer> {
    const b = this.batch()
    const size = Math.ceil(ref.size / 4) * 4
    const staging = this.memory.takeStaging(size)
    b.encoder.copyBufferToBuffer(ref.buffer, ref.offset, staging, 0, size)
    this.flush()
    try {
      await Promise.all([b.done, staging.mapAsync(MAP_READ, 0, size)])
      if (this.queuedError !== null) { const err = this.queuedError; this.queuedError = null; throw err }
      const out = staging.getMappedRange(0, size).slice(0)
      staging.unmap()
      this.memory.giveStaging(staging)
      return out
    } catch (err) {
      staging.destroy()
      throw err
    }
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
}
