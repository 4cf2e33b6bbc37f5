// CPU ComputeBackend. Validates every call (ShapeError before memory is touched), then runs the
// kernel. Step-1 version: kernels run inline on the caller's thread.
import os from 'node:os'
import { ShapeError } from '../../core/errors.ts'
import type { AdamWParams, BackendInfo, ComputeBackend, DType, Tensor } from '../../core/contracts/index.ts'
import * as K from './kernels.ts'
import * as chk from './checks.ts'

export interface CpuBackendOptions {
  /** Worker threads for heavy kernels (default: available parallelism). */
  threads?: number
}

class CpuTensor implements Tensor {
  readonly shape: readonly number[]
  readonly dtype: DType
  readonly size: number
  data: Float32Array | Int32Array | null
  constructor (readonly owner: CpuBackend, shape: readonly number[], dtype: DType, data: Float32Array | Int32Array) {
    this.shape = Object.freeze([...shape])
    this.dtype = dtype
    this.size = data.length
    this.data = data
  }
}

export class CpuBackend implements ComputeBackend {
  readonly info: BackendInfo
  private disposed = false

  constructor (opts: CpuBackendOptions = {}) {
    const threads = opts.threads ?? os.availableParallelism()
    this.info = { name: 'cpu', device: `${os.cpus()[0]?.model ?? 'cpu'} (${threads} threads)`, threads }
  }

  // ---- memory ---------------------------------------------------------------------------------

  alloc (shape: readonly number[], dtype: DType = 'f32'): Tensor {
    this.alive()
    const n = chk.checkShapeArg(shape)
    if (dtype !== 'f32' && dtype !== 'i32') throw new ShapeError(`unknown dtype ${String(dtype)}`)
    return new CpuTensor(this, shape, dtype, dtype === 'f32' ? new Float32Array(n) : new Int32Array(n))
  }

  upload (data: Float32Array | Int32Array, shape: readonly number[]): Tensor {
    this.alive()
    const n = chk.checkShapeArg(shape)
    if (!(data instanceof Float32Array) && !(data instanceof Int32Array)) throw new ShapeError('upload: data must be a Float32Array or Int32Array')
    if (data.length !== n) throw new ShapeError(`upload: data has ${data.length} elements, shape ${chk.shapeOf(shape)} needs ${n}`)
    const copy = data instanceof Float32Array ? Float32Array.from(data) : Int32Array.from(data)
    return new CpuTensor(this, shape, data instanceof Float32Array ? 'f32' : 'i32', copy)
  }

  async download (t: Tensor): Promise<Float32Array | Int32Array> {
    const d = this.data(t, 't')
    return d instanceof Float32Array ? Float32Array.from(d) : Int32Array.from(d)
  }

  async write (t: Tensor, data: Float32Array | Int32Array): Promise<void> {
    const d = this.data(t, 't')
    if (data.length !== d.length) throw new ShapeError(`write: data has ${data.length} elements, tensor has ${d.length}`)
    if ((d instanceof Float32Array) !== (data instanceof Float32Array)) throw new ShapeError(`write: data type does not match tensor dtype ${t.dtype}`)
    d.set(data)
  }

  free (t: Tensor): void {
    this.data(t, 't')
    ;(t as CpuTensor).data = null
  }

  async dispose (): Promise<void> {
    this.disposed = true
  }

  // ---- utilities ------------------------------------------------------------------------------

  async fill (t: Tensor, value: number): Promise<void> {
    const d = this.data(t, 't')
    K.fill(d, value)
  }

  async copy (dst: Tensor, src: Tensor): Promise<void> {
    const d = this.data(dst, 'dst'); const s = this.data(src, 'src')
    chk.dtype('src', src, dst.dtype)
    chk.size('src', src, dst.size)
    K.copy(d, s)
  }

  async scale (t: Tensor, s: number): Promise<void> {
    const d = this.f32(t, 't')
    K.scale(d, s)
  }

  async accumulate (dst: Tensor, src: Tensor, alpha = 1): Promise<void> {
    const d = this.f32(dst, 'dst'); const s = this.f32(src, 'src')
    chk.size('src', src, dst.size)
    K.accumulate(d, s, alpha)
  }

  async sumSquares (t: Tensor): Promise<number> {
    return K.sumSquares(this.f32(t, 't'))
  }

  // ---- encoder --------------------------------------------------------------------------------

  private encoderDims (out: Tensor, inp: Tensor, wte: Tensor, wpe: Tensor): { B: number, T: number, C: number, V: number } {
    chk.rank('inp', inp, 2)
    chk.rank('wte', wte, 2)
    chk.rank('wpe', wpe, 2)
    const [B, T] = inp.shape
    const [V, C] = wte.shape
    if (wpe.shape[1] !== C) throw new ShapeError(`wpe: expected [maxT,${C}], got ${chk.shapeOf(wpe.shape)}`)
    if (T > wpe.shape[0]) throw new ShapeError(`inp: T=${T} exceeds wpe's maxT=${wpe.shape[0]}`)
    chk.dims('out/dout', out, [B, T, C])
    return { B, T, C, V }
  }

  async encoderForward (out: Tensor, inp: Tensor, wte: Tensor, wpe: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const ids = this.i32(inp, 'inp'); const we = this.f32(wte, 'wte'); const pe = this.f32(wpe, 'wpe')
    const { B, T, C, V } = this.encoderDims(out, inp, wte, wpe)
    chk.indicesInRange('inp', ids, 0, V)
    K.encoderForward(o, ids, we, pe, B, T, C)
  }

  async encoderBackward (dwte: Tensor, dwpe: Tensor, dout: Tensor, inp: Tensor): Promise<void> {
    const dwe = this.f32(dwte, 'dwte'); const dpe = this.f32(dwpe, 'dwpe'); const d = this.f32(dout, 'dout'); const ids = this.i32(inp, 'inp')
    const { B, T, C, V } = this.encoderDims(dout, inp, dwte, dwpe)
    chk.indicesInRange('inp', ids, 0, V)
    K.encoderBackward(dwe, dpe, d, ids, B, T, C)
  }

  // ---- layernorm ------------------------------------------------------------------------------

  private lnDims (inp: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, rstd: Tensor): { N: number, C: number } {
    const C = chk.lastDim(inp)
    if (C === 0) throw new ShapeError(`inp: last dim must be > 0, got ${chk.shapeOf(inp.shape)}`)
    const N = inp.size / C
    chk.size('weight', weight, C)
    chk.size('bias/dbias', bias, C)
    chk.size('mean', mean, N)
    chk.size('rstd', rstd, N)
    return { N, C }
  }

  async layernormForward (out: Tensor, mean: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, bias: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const m = this.f32(mean, 'mean'); const r = this.f32(rstd, 'rstd'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const b = this.f32(bias, 'bias')
    const { N, C } = this.lnDims(inp, weight, bias, mean, rstd)
    chk.size('out', out, inp.size)
    K.layernormForward(o, m, r, x, w, b, C, 0, N)
  }

  async layernormBackward (dinp: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const dw = this.f32(dweight, 'dweight'); const db = this.f32(dbias, 'dbias'); const d = this.f32(dout, 'dout')
    const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const m = this.f32(mean, 'mean'); const r = this.f32(rstd, 'rstd')
    const { N, C } = this.lnDims(inp, weight, dbias, mean, rstd)
    chk.size('dweight', dweight, C)
    chk.size('dinp', dinp, inp.size)
    chk.size('dout', dout, inp.size)
    K.layernormBackward(dx, dw, db, d, x, w, m, r, C, 0, N)
  }

  // ---- matmul ---------------------------------------------------------------------------------

  private mmDims (out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null): { N: number, C: number, OC: number } {
    chk.rank('weight', weight, 2)
    const [OC, C] = weight.shape
    if (chk.lastDim(inp) !== C) throw new ShapeError(`inp: last dim must be C=${C} (weight ${chk.shapeOf(weight.shape)}), got ${chk.shapeOf(inp.shape)}`)
    if (C === 0) throw new ShapeError('weight: C must be > 0')
    const N = inp.size / C
    if (chk.lastDim(out) !== OC) throw new ShapeError(`out/dout: last dim must be OC=${OC}, got ${chk.shapeOf(out.shape)}`)
    chk.size('out/dout', out, N * OC)
    if (bias !== null) chk.size('bias/dbias', bias, OC)
    return { N, C, OC }
  }

  async matmulForward (out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight'); const b = bias === null ? null : this.f32(bias, 'bias')
    const { N, C, OC } = this.mmDims(out, inp, weight, bias)
    K.matmulForward(o, x, w, b, C, OC, 0, N)
  }

  async matmulBackward (dinp: Tensor, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const dw = this.f32(dweight, 'dweight'); const db = dbias === null ? null : this.f32(dbias, 'dbias')
    const d = this.f32(dout, 'dout'); const x = this.f32(inp, 'inp'); const w = this.f32(weight, 'weight')
    const { N, C, OC } = this.mmDims(dout, inp, weight, dbias)
    chk.size('dinp', dinp, inp.size)
    chk.dims('dweight', dweight, weight.shape)
    K.matmulBackwardInput(dx, d, w, C, OC, 0, N)
    K.matmulBackwardWeight(dw, db, d, x, N, C, OC, 0, OC)
  }

  // ---- attention ------------------------------------------------------------------------------

  private attDims (out: Tensor, preatt: Tensor, att: Tensor, qkv: Tensor, NH: number): { B: number, T: number, C: number } {
    chk.positiveInt('NH', NH)
    chk.rank('qkv', qkv, 3)
    const [B, T, C3] = qkv.shape
    if (C3 % 3 !== 0) throw new ShapeError(`qkv: last dim must be 3C, got ${chk.shapeOf(qkv.shape)}`)
    const C = C3 / 3
    if (C % NH !== 0) throw new ShapeError(`C=${C} is not divisible by NH=${NH}`)
    chk.dims('out/dout', out, [B, T, C])
    chk.dims('preatt/dpreatt', preatt, [B, NH, T, T])
    chk.dims('att/datt', att, [B, NH, T, T])
    return { B, T, C }
  }

  async attentionForward (out: Tensor, preatt: Tensor, att: Tensor, qkv: Tensor, NH: number): Promise<void> {
    const o = this.f32(out, 'out'); const pa = this.f32(preatt, 'preatt'); const a = this.f32(att, 'att'); const q = this.f32(qkv, 'qkv')
    const { B, T, C } = this.attDims(out, preatt, att, qkv, NH)
    K.attentionForward(o, pa, a, q, B, T, C, NH, 0, B * NH)
  }

  async attentionBackward (dqkv: Tensor, dpreatt: Tensor, datt: Tensor, dout: Tensor, qkv: Tensor, att: Tensor, NH: number): Promise<void> {
    const dq = this.f32(dqkv, 'dqkv'); const dpa = this.f32(dpreatt, 'dpreatt'); const da = this.f32(datt, 'datt')
    const d = this.f32(dout, 'dout'); const q = this.f32(qkv, 'qkv'); const a = this.f32(att, 'att')
    const { B, T, C } = this.attDims(dout, dpreatt, datt, qkv, NH)
    chk.dims('att', att, datt.shape)
    chk.dims('dqkv', dqkv, qkv.shape)
    K.attentionBackward(dq, dpa, da, d, q, a, B, T, C, NH, 0, B * NH)
  }

  // ---- gelu, residual -------------------------------------------------------------------------

  async geluForward (out: Tensor, inp: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(inp, 'inp')
    chk.size('out', out, inp.size)
    K.geluForward(o, x, 0, x.length)
  }

  async geluBackward (dinp: Tensor, inp: Tensor, dout: Tensor): Promise<void> {
    const dx = this.f32(dinp, 'dinp'); const x = this.f32(inp, 'inp'); const d = this.f32(dout, 'dout')
    chk.size('dinp', dinp, inp.size)
    chk.size('dout', dout, inp.size)
    K.geluBackward(dx, x, d, 0, x.length)
  }

  async residualForward (out: Tensor, a: Tensor, b: Tensor): Promise<void> {
    const o = this.f32(out, 'out'); const x = this.f32(a, 'a'); const y = this.f32(b, 'b')
    chk.size('a', a, out.size)
    chk.size('b', b, out.size)
    K.residualForward(o, x, y, 0, o.length)
  }

  // ---- cross-entropy --------------------------------------------------------------------------

  private ceDims (probs: Tensor, logits: Tensor, targets: Tensor): { N: number, V: number } {
    const V = chk.lastDim(logits)
    if (V === 0) throw new ShapeError('logits: V must be > 0')
    const N = logits.size / V
    chk.size('probs', probs, logits.size)
    chk.size('targets', targets, N)
    return { N, V }
  }

  async crossEntropyForward (losses: Tensor, probs: Tensor, logits: Tensor, targets: Tensor): Promise<void> {
    const l = this.f32(losses, 'losses'); const p = this.f32(probs, 'probs'); const x = this.f32(logits, 'logits'); const tg = this.i32(targets, 'targets')
    const { N, V } = this.ceDims(probs, logits, targets)
    chk.size('losses', losses, N)
    chk.indicesInRange('targets', tg, -0x80000000, V)
    K.crossEntropyForward(l, p, x, tg, V, 0, N)
  }

  async crossEntropyBackward (dlogits: Tensor, probs: Tensor, targets: Tensor, dlossScale: number): Promise<void> {
    const dl = this.f32(dlogits, 'dlogits'); const p = this.f32(probs, 'probs'); const tg = this.i32(targets, 'targets')
    const { N, V } = this.ceDims(dlogits, probs, targets)
    chk.finiteNumber('dlossScale', dlossScale)
    chk.indicesInRange('targets', tg, -0x80000000, V)
    K.crossEntropyBackward(dl, p, tg, dlossScale, V, 0, N)
  }

  // ---- AdamW ----------------------------------------------------------------------------------

  async adamwUpdate (params: Tensor, grads: Tensor, m: Tensor, v: Tensor, hp: AdamWParams): Promise<void> {
    const p = this.f32(params, 'params'); const g = this.f32(grads, 'grads'); const mm = this.f32(m, 'm'); const vv = this.f32(v, 'v')
    chk.size('grads', grads, params.size)
    chk.size('m', m, params.size)
    chk.size('v', v, params.size)
    chk.positiveInt('hp.step', hp.step)
    K.adamwUpdate(p, g, mm, vv, hp, 0, p.length)
  }

  // ---- helpers --------------------------------------------------------------------------------

  private alive (): void {
    if (this.disposed) throw new ShapeError('backend is disposed')
  }

  private data (t: Tensor, name: string): Float32Array | Int32Array {
    this.alive()
    if (!(t instanceof CpuTensor) || t.owner !== this) throw new ShapeError(`${name}: tensor does not belong to this backend`)
    if (t.data === null) throw new ShapeError(`${name}: tensor was freed`)
    return t.data
  }

  private f32 (t: Tensor, name: string): Float32Array {
    const d = this.data(t, name)
    chk.dtype(name, t, 'f32')
    return d as Float32Array
  }

  private i32 (t: Tensor, name: string): Int32Array {
    const d = this.data(t, name)
    chk.dtype(name, t, 'i32')
    return d as Int32Array
  }
}

export async function createCpuBackend (options: CpuBackendOptions = {}): Promise<ComputeBackend> {
  return new CpuBackend(options)
}
