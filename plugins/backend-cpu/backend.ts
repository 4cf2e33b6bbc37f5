// CPU ComputeBackend. Tensors live in one shared WasmMemory (heap.ts). Every kernel call is
// validated at once on the caller's thread (ShapeError before any memory is touched), then queued;
// queued jobs run one at a time, in call order, split across worker threads (pool.ts) that run the
// WASM SIMD kernels (matmul, attention) and plain TypeScript kernels (the rest) on that memory. The
// caller's event loop only writes a job and waits on an atomic, so networking goes on meanwhile.
// Tiny jobs (under INLINE_WORK element-operations, microseconds) run on the caller's thread, where
// they cost less than waking the workers. threads: 0 runs every job inline (no workers; blocks).
import os from 'node:os'
import { ShapeError } from '../../core/contracts/index.ts'
import type { AdamWParams, BackendInfo, ComputeBackend, DType, Tensor } from '../../core/contracts/index.ts'
import { kernelChecks as chk } from '../../core/contracts/index.ts'
import { chunkCount, Executor, INLINE_WORK, jobWork, OP, PARAMS_LENGTH, SCRATCH, scratchElements } from './exec.ts'
import { Heap } from './heap.ts'
import { LLAMA_OP } from './llama-kernels.ts'
import { WorkerPool } from './pool.ts'
import { loadNativeKernels } from './native.ts'
import { createSharedMemory, instantiate, kernelModule, relaxedSimd } from './wasm.ts'
import type { WasmMemory } from './wasm.ts'

export interface CpuBackendOptions {
  /** Worker threads (default: available parallelism). 0: run kernels inline on the caller's thread. */
  threads?: number
  /** false: plain TypeScript kernels only, no WASM SIMD (the simple version; for comparison). */
  simd?: boolean
  /** false: the WASM GEMM without fused multiply-add (default: relaxed SIMD's FMA where the engine has it). */
  fma?: boolean
  /** false: never the native GEMM (default: native/gemm.c where it was built and the CPU has AVX2/FMA). */
  native?: boolean
}

class CpuTensor implements Tensor {
  readonly shape: readonly number[]
  readonly size: number
  /** Offset in float32/int32 elements into the shared memory; -1 once freed. */
  off: number
  constructor (readonly owner: CpuBackend, shape: readonly number[], readonly dtype: DType, size: number, off: number) {
    this.shape = Object.freeze([...shape])
    this.size = size
    this.off = off
  }
}

export class CpuBackend implements ComputeBackend {
  readonly info: BackendInfo
  private readonly heap: Heap
  private readonly params = new Float64Array(PARAMS_LENGTH)
  private readonly inlinePartials = new Float64Array(1)
  private tail: Promise<unknown> = Promise.resolve()
  private pending = 0
  private inlineJobs = 0
  private disposed = false
  private scratchOff = 0
  private scratchBytes = 0

  /** Use createCpuBackend(). */
  constructor (
    private readonly memory: WasmMemory,
    private readonly pool: WorkerPool | null,
    /** Runs tiny jobs (and, without a pool, every job) on this thread. */
    private readonly inline: Executor,
    threads: number,
    simd: boolean,
    /** What runs the kernels, for info.device (e.g. 'wasm simd128 + fma'). */
    kernels: string
  ) {
    this.heap = new Heap(memory)
    const cpu = os.cpus()[0]?.model?.trim() ?? 'cpu'
    const mode = pool === null ? 'inline' : `${threads} worker threads`
    this.info = { name: 'cpu', device: `${cpu} (${mode}, ${kernels})`, threads, simd }
  }

  // ---- memory ---------------------------------------------------------------------------------

  alloc (shape: readonly number[], dtype: DType = 'f32'): Tensor {
    this.alive()
    const n = chk.checkShapeArg(shape)
    if (dtype !== 'f32' && dtype !== 'i32') throw new ShapeError(`unknown dtype ${String(dtype)}`)
    const off = this.heap.alloc(n * 4)
    // a reused block is only handed out after the jobs that used it finished (see free)
    new Uint8Array(this.memory.buffer, off, n * 4).fill(0)
    return new CpuTensor(this, shape, dtype, n, off / 4)
  }

  upload (data: Float32Array | Int32Array, shape: readonly number[]): Tensor {
    this.alive()
    const n = chk.checkShapeArg(shape)
    if (!(data instanceof Float32Array) && !(data instanceof Int32Array)) throw new ShapeError('upload: data must be a Float32Array or Int32Array')
    if (data.length !== n) throw new ShapeError(`upload: data has ${data.length} elements, shape ${chk.shapeOf(shape)} needs ${n}`)
    const dtype: DType = data instanceof Float32Array ? 'f32' : 'i32'
    const off = this.heap.alloc(n * 4)
    this.view(dtype, off / 4, n).set(data)
    return new CpuTensor(this, shape, dtype, n, off / 4)
  }

  async download (t: Tensor): Promise<Float32Array | Int32Array> {
    const x = this.tensor(t, 't')
    const off = x.off // read now: the tensor may be freed before the queue gets here
    return await this.enqueue(() => this.view(x.dtype, off, x.size).slice())
  }

  async write (t: Tensor, data: Float32Array | Int32Array): Promise<void> {
    const x = this.tensor(t, 't')
    if (data.length !== x.size) throw new ShapeError(`write: data has ${data.length} elements, tensor has ${x.size}`)
    if ((x.dtype === 'f32') !== (data instanceof Float32Array)) throw new ShapeError(`write: data type does not match tensor dtype ${x.dtype}`)
    if (this.pending === 0) {
      this.view(x.dtype, x.off, x.size).set(data)
      return
    }
    const copy = data.slice() // the caller may reuse `data` before the queue reaches this write
    const off = x.off
    await this.enqueue(() => { this.view(x.dtype, off, x.size).set(copy) })
  }

  free (t: Tensor): void {
    const x = this.tensor(t, 't')
    const off = x.off
    x.off = -1
    // release after every job queued so far, which may still use this block
    void this.enqueue(() => { this.heap.release(off * 4, x.size * 4) })
  }

  async dispose (): Promise<void> {
    if (this.disposed) return
    this.disposed = true
    await this.tail
    await this.pool?.close()
  }

  // ---- utilities ------------------------------------------------------------------------------

  async fill (t: Tensor, value: number): Promise<void> {
    const x = this.tensor(t, 't')
    if (typeof value !== 'number') throw new ShapeError(`fill: value must be a number, got ${typeof value}`)
    await this.submit([OP.FILL, x.off, x.size, value, x.dtype === 'i32' ? 1 : 0])
  }

  async copy (dst: Tensor, src: Tensor): Promise<void> {
    const d = this.tensor(dst, 'dst'); const s = this.tensor(src, 'src')
    chk.dtype('src', src, dst.dtype)
    chk.size('src', src, dst.size)
    await this.submit([OP.COPY, d.off, s.off, d.size, d.dtype === 'i32' ? 1 : 0])
  }

  async scale (t: Tensor, s: number): Promise<void> {
    const x = this.f32(t, 't')
    await this.submit([OP.SCALE, x.off, x.size, s])
  }

  async accumulate (dst: Tensor, src: Tensor, alpha = 1): Promise<void> {
    const d = this.f32(dst, 'dst'); const s = this.f32(src, 'src')
    chk.size('src', src, dst.size)
    await this.submit([OP.ACCUMULATE, d.off, s.off, d.size, alpha])
  }

  async sumSquares (t: Tensor): Promise<number> {
    const x = this.f32(t, 't')
    return await this.submit([OP.SUM_SQUARES, x.off, x.size], partials => partials.reduce((a, v) => a + v, 0))
  }

  // ---- encoder --------------------------------------------------------------------------------


  async encoderForward (out: Tensor, inp: Tensor, wte: Tensor, wpe: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const ids = this.i32(inp, 'inp'); const we = this.f32(wte, 'wte'); const pe = this.f32(wpe, 'wpe')
    const { B, T, C, V, maxT } = chk.encoderDims(out, inp, wte, wpe)
    await this.submit([OP.ENCODER_FWD, o.off, ids.off, we.off, pe.off, B * T, T, C, V, maxT], undefined, [ids, 0, V, 'inp (token ids)'])
  }

  async encoderBackward (dwte: Tensor, dwpe: Tensor, dout: Tensor, inp: Tensor): Promise<void> {
    const dwe = this.f32(dwte, 'dwte'); const dpe = this.f32(dwpe, 'dwpe'); const d = this.f32(dout, 'dout'); const ids = this.i32(inp, 'inp')
    const { B, T, C, V, maxT } = chk.encoderDims(dout, inp, dwte, dwpe)
    await this.submit([OP.ENCODER_BWD, dwe.off, dpe.off, d.off, ids.off, B, T, C, V, maxT], undefined, [ids, 0, V, 'inp (token ids)'])
  }

  // ---- layernorm ------------------------------------------------------------------------------


  async layernormForward (out: Tensor, mean: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, bias: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const m = this.f32(mean, 'mean'); const r = this.f32(rstd, 'rstd'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const b = this.f32(bias, 'bias')
    const { N, C } = chk.layernormDims(inp, weight, bias, mean, rstd)
    chk.size('out', out, inp.size)
    await this.submit([OP.LAYERNORM_FWD, o.off, m.off, r.off, x.off, w.off, b.off, N, C])
  }

  async layernormBackward (dinp: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const dw = this.f32(dweight, 'dweight'); const db = this.f32(dbias, 'dbias'); const d = this.f32(dout, 'dout')
    const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const m = this.f32(mean, 'mean'); const r = this.f32(rstd, 'rstd')
    const { N, C } = chk.layernormDims(inp, weight, dbias, mean, rstd)
    chk.size('dweight', dweight, C)
    chk.size('dinp', dinp, inp.size)
    chk.size('dout', dout, inp.size)
    await this.submit([OP.LAYERNORM_BWD, dx.off, dw.off, db.off, d.off, x.off, w.off, m.off, r.off, N, C])
  }

  // ---- matmul ---------------------------------------------------------------------------------


  async matmulForward (out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const b = bias === null ? null : this.f32(bias, 'bias')
    const { N, C, OC } = chk.matmulDims(out, inp, weight, bias)
    await this.submit([OP.MATMUL_FWD, o.off, x.off, w.off, b === null ? -1 : b.off, N, C, OC])
  }

  async matmulBackward (dinp: Tensor, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const dw = this.f32(dweight, 'dweight'); const db = dbias === null ? null : this.f32(dbias, 'dbias')
    const d = this.f32(dout, 'dout'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight')
    const { N, C, OC } = chk.matmulDims(dout, inp, weight, dbias)
    chk.size('dinp', dinp, inp.size)
    chk.dims('dweight', dweight, weight.shape)
    await this.submit([OP.MATMUL_BWD, dx.off, dw.off, db === null ? -1 : db.off, d.off, x.off, w.off, N, C, OC])
  }

  // ---- attention ------------------------------------------------------------------------------


  async attentionForward (out: Tensor, preatt: Tensor, att: Tensor, qkv: Tensor, NH: number): Promise<void> {
    const o = this.f32(out, 'out'); const pa = this.f32(preatt, 'preatt'); const a = this.f32(att, 'att'); const q = this.f32(qkv, 'qkv')
    const { B, T, C } = chk.attentionDims(out, preatt, att, qkv, NH)
    await this.submit([OP.ATTENTION_FWD, o.off, pa.off, a.off, q.off, B, T, C, NH])
  }

  async attentionBackward (dqkv: Tensor, dpreatt: Tensor, datt: Tensor, dout: Tensor, qkv: Tensor, att: Tensor, NH: number): Promise<void> {
    const dq = this.f32(dqkv, 'dqkv'); const dpa = this.f32(dpreatt, 'dpreatt'); const da = this.f32(datt, 'datt')
    const d = this.f32(dout, 'dout'); const q = this.f32(qkv, 'qkv'); const a = this.f32(att, 'att')
    const { B, T, C } = chk.attentionDims(dout, dpreatt, datt, qkv, NH)
    chk.dims('att', att, datt.shape)
    chk.dims('dqkv', dqkv, qkv.shape)
    await this.submit([OP.ATTENTION_BWD, dq.off, dpa.off, da.off, d.off, q.off, a.off, B, T, C, NH])
  }

  async attentionFlashForward (out: Tensor, lse: Tensor, qkv: Tensor, NH: number): Promise<void> {
    const o = this.f32(out, 'out'); const l = this.f32(lse, 'lse'); const q = this.f32(qkv, 'qkv')
    const { B, T, C } = chk.flashAttentionDims(out, lse, qkv, NH)
    await this.submit([OP.FLASH_FWD, o.off, l.off, q.off, B, T, C, NH])
  }

  async attentionFlashBackward (dqkv: Tensor, dout: Tensor, out: Tensor, qkv: Tensor, lse: Tensor, NH: number): Promise<void> {
    const dq = this.f32(dqkv, 'dqkv'); const d = this.f32(dout, 'dout'); const o = this.f32(out, 'out'); const q = this.f32(qkv, 'qkv'); const l = this.f32(lse, 'lse')
    const { B, T, C } = chk.flashAttentionDims(dout, lse, qkv, NH)
    chk.dims('out', out, dout.shape)
    chk.dims('dqkv', dqkv, qkv.shape)
    await this.submit([OP.FLASH_BWD, dq.off, d.off, o.off, q.off, l.off, B, T, C, NH])
  }

  // ---- gelu, residual -------------------------------------------------------------------------

  async geluForward (out: Tensor, inp: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(inp, 'inp')
    chk.size('out', out, inp.size)
    await this.submit([OP.GELU_FWD, o.off, x.off, x.size])
  }

  async geluBackward (dinp: Tensor, inp: Tensor, dout: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const x = this.f32(inp, 'inp'); const d = this.f32(dout, 'dout')
    chk.size('dinp', dinp, inp.size)
    chk.size('dout', dout, inp.size)
    await this.submit([OP.GELU_BWD, dx.off, x.off, d.off, x.size])
  }

  async residualForward (out: Tensor, a: Tensor, b: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(a, 'a'); const y = this.f32(b, 'b')
    chk.size('a', a, out.size)
    chk.size('b', b, out.size)
    await this.submit([OP.RESIDUAL_FWD, o.off, x.off, y.off, o.size])
  }

  // ---- cross-entropy --------------------------------------------------------------------------


  async crossEntropyForward (losses: Tensor, probs: Tensor, logits: Tensor, targets: Tensor): Promise<void> {
    const l = this.f32(losses, 'losses'); const p = this.f32(probs, 'probs'); const x = this.f32(logits, 'logits'); const tg = this.i32(targets, 'targets')
    const { N, V } = chk.crossEntropyDims(probs, logits, targets)
    chk.size('losses', losses, N)
    await this.submit([OP.CROSSENTROPY_FWD, l.off, p.off, x.off, tg.off, N, V], undefined, [tg, -0x80000000, V, 'targets'])
  }

  async crossEntropyBackward (dlogits: Tensor, probs: Tensor, targets: Tensor, dlossScale: number): Promise<void> {
    const dl = this.f32(dlogits, 'dlogits'); const p = this.f32(probs, 'probs'); const tg = this.i32(targets, 'targets')
    const { N, V } = chk.crossEntropyDims(dlogits, probs, targets)
    chk.finiteNumber('dlossScale', dlossScale)
    await this.submit([OP.CROSSENTROPY_BWD, dl.off, p.off, tg.off, dlossScale, N, V], undefined, [tg, -0x80000000, V, 'targets'])
  }

  // ---- AdamW ----------------------------------------------------------------------------------

  async adamwUpdate (params: Tensor, grads: Tensor, m: Tensor, v: Tensor, hp: AdamWParams): Promise<void> {
    const p = this.f32(params, 'params'); const g = this.f32(grads, 'grads'); const mm = this.f32(m, 'm'); const vv = this.f32(v, 'v')
    chk.size('grads', grads, params.size)
    chk.size('m', m, params.size)
    chk.size('v', v, params.size)
    chk.positiveInt('hp.step', hp.step)
    for (const k of ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'gradScale'] as const) chk.finiteNumber(`hp.${k}`, hp[k])
    await this.submit([OP.ADAMW, p.off, g.off, mm.off, vv.off, p.size, hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weightDecay, hp.step, hp.gradScale])
  }

  // ---- Llama layers (llama-kernels.ts) --------------------------------------------------------

  async rmsnormForward (out: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, eps: number): Promise<void> {
    const o = this.f32(out, 'out'); const r = this.f32(rstd, 'rstd'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight')
    const { N, C } = chk.rmsnormDims(inp, weight, rstd, eps)
    chk.size('out', out, inp.size)
    await this.submit([LLAMA_OP.RMSNORM_FWD, o.off, r.off, x.off, w.off, N, C, eps])
  }

  async rmsnormBackward (dinp: Tensor, dweight: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, rstd: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const dw = this.f32(dweight, 'dweight'); const d = this.f32(dout, 'dout')
    const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const r = this.f32(rstd, 'rstd')
    const { N, C } = chk.rmsnormDims(inp, weight, rstd)
    chk.size('dweight', dweight, C)
    chk.size('dinp', dinp, inp.size)
    chk.size('dout', dout, inp.size)
    await this.submit([LLAMA_OP.RMSNORM_BWD, dx.off, dw.off, d.off, x.off, w.off, r.off, N, C])
  }

  async ropeForward (out: Tensor, inp: Tensor, NH: number, theta: number): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(inp, 'inp')
    const { B, T, C } = chk.ropeDims(out, inp, NH, theta)
    await this.submit([LLAMA_OP.ROPE_FWD, o.off, x.off, B * T, T, C, NH, theta])
  }

  async ropeBackward (dinp: Tensor, dout: Tensor, NH: number, theta: number): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const d = this.f32(dout, 'dout')
    const { B, T, C } = chk.ropeDims(dinp, dout, NH, theta)
    await this.submit([LLAMA_OP.ROPE_BWD, dx.off, d.off, B * T, T, C, NH, theta])
  }

  async swigluForward (out: Tensor, inp: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(inp, 'inp')
    const { N, H } = chk.swigluDims(out, inp)
    await this.submit([LLAMA_OP.SWIGLU_FWD, o.off, x.off, N, H])
  }

  async swigluBackward (dinp: Tensor, dout: Tensor, inp: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const d = this.f32(dout, 'dout'); const x = this.f32(inp, 'inp')
    const { N, H } = chk.swigluDims(dout, inp)
    chk.size('dinp', dinp, inp.size)
    await this.submit([LLAMA_OP.SWIGLU_BWD, dx.off, d.off, x.off, N, H])
  }

  // ---- queue and dispatch ---------------------------------------------------------------------

  /** Runs fn after every earlier queued job, in call order. */
  private async enqueue<T> (fn: () => T | Promise<T>): Promise<T> {
    this.pending++
    const p = this.tail.then(fn).finally(() => { this.pending-- })
    this.tail = p.catch(() => {})
    return await p
  }

  /**
   * Queues one kernel job. `range`: an i32 tensor whose values must lie in [lo, hi), checked when the
   * job's turn comes (earlier queued writes may change it) and before the kernel runs.
   */
  private async submit<T = void> (job: number[], result?: (partials: Float64Array) => T, range?: [CpuTensor, number, number, string]): Promise<T> {
    return await this.enqueue(async () => {
      if (range !== undefined) {
        const [t, lo, hi, name] = range
        const ok = await this.dispatch([OP.CHECK_RANGE, t.off, t.size, lo, hi], p => p.every(v => v === 0))
        if (!ok) chk.indicesInRange(name, this.view('i32', t.off, t.size) as Int32Array, lo, hi) // throws, naming the index
      }
      return await this.dispatch(job, result)
    })
  }

  private async dispatch<T> (job: number[], result?: (partials: Float64Array) => T): Promise<T> {
    const P = this.pool?.params ?? this.params
    const parts = this.pool?.parts ?? 1
    P.fill(0)
    P.set(job)
    const need = scratchElements(P, parts) * 4 * parts
    if (need > this.scratchBytes) {
      // no job is running now (we are its turn in the queue), so the old scratch can go
      if (this.scratchBytes > 0) this.heap.release(this.scratchOff, this.scratchBytes)
      this.scratchBytes = Math.max(need, this.scratchBytes * 2)
      this.scratchOff = this.heap.alloc(this.scratchBytes)
    }
    P[SCRATCH] = this.scratchOff / 4
    P[SCRATCH + 1] = scratchElements(P, parts)
    let partials: Float64Array
    if (this.pool !== null && jobWork(P) >= INLINE_WORK) {
      await this.pool.run(chunkCount(P, parts))
      partials = this.pool.partials
    } else {
      this.inlinePartials.fill(0)
      this.inline.runAll(P, parts, this.inlinePartials, ++this.inlineJobs)
      partials = this.inlinePartials
    }
    return (result === undefined ? undefined : result(partials)) as T
  }

  // ---- helpers --------------------------------------------------------------------------------

  private view (dtype: DType, off: number, n: number): Float32Array | Int32Array {
    return dtype === 'f32' ? new Float32Array(this.memory.buffer, off * 4, n) : new Int32Array(this.memory.buffer, off * 4, n)
  }

  private alive (): void {
    if (this.disposed) throw new ShapeError('backend is disposed')
  }

  private tensor (t: Tensor, name: string): CpuTensor {
    this.alive()
    if (!(t instanceof CpuTensor) || t.owner !== this) throw new ShapeError(`${name}: tensor does not belong to this backend`)
    if (t.off < 0) throw new ShapeError(`${name}: tensor was freed`)
    return t
  }

  private f32 (t: Tensor, name: string): CpuTensor {
    const x = this.tensor(t, name)
    chk.dtype(name, t, 'f32')
    return x
  }

  private i32 (t: Tensor, name: string): CpuTensor {
    const x = this.tensor(t, name)
    chk.dtype(name, t, 'i32')
    return x
  }
}

/** Creates the CPU backend: assembles the WASM kernels (once per process) and starts the workers. */
export async function createCpuBackend (options: CpuBackendOptions = {}): Promise<ComputeBackend> {
  const threads = options.threads ?? os.availableParallelism()
  if (!Number.isInteger(threads) || threads < 0 || threads > 256) throw new ShapeError(`threads must be an integer in [0, 256], got ${String(threads)}`)
  const simd = options.simd ?? true
  const fma = simd && (options.fma ?? true) && relaxedSimd()
  const module = simd ? await kernelModule(fma) : null
  const memory = createSharedMemory()
  const native = simd && (options.native ?? true) ? loadNativeKernels() : null
  const inline = new Executor(memory, module === null ? null : instantiate(module, memory), native)
  const pool = threads === 0 ? null : await WorkerPool.create(threads, memory, module, native !== null)
  const gemm = native === null ? '' : ` + native ${native.isa() ?? ''} gemm+attention+gelu+xent`
  return new CpuBackend(memory, pool, inline, threads, simd, simd ? `wasm simd128${fma ? ' + fma' : ''}${gemm}` : 'js')
}
