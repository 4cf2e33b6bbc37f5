// Shape and dtype checks for ComputeBackend kernels: a small shared utility that backend plugins use
// (like core/errors.ts), so every backend rejects the same bad arguments with the same ShapeError
// naming the argument, before any memory is touched or any GPU work is encoded.
import { ShapeError } from './errors.ts'
import type { DType, Tensor } from './contracts/index.ts'

export function shapeOf (shape: readonly number[]): string {
  return `[${shape.join(',')}]`
}

export function checkShapeArg (shape: readonly number[]): number {
  if (!Array.isArray(shape) || shape.length === 0) throw new ShapeError(`shape must be a non-empty array, got ${String(shape)}`)
  let size = 1
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`shape ${shapeOf(shape)} has a dimension that is not a non-negative integer`)
    size *= d
  }
  if (size > 0x7fffffff) throw new ShapeError(`shape ${shapeOf(shape)} has too many elements (${size})`)
  return size
}

export function dtype (name: string, t: Tensor, want: DType): void {
  if (t.dtype !== want) throw new ShapeError(`${name}: expected dtype ${want}, got ${t.dtype}`)
}

export function rank (name: string, t: Tensor, r: number): void {
  if (t.shape.length !== r) throw new ShapeError(`${name}: expected rank ${r}, got shape ${shapeOf(t.shape)}`)
}

export function size (name: string, t: Tensor, n: number): void {
  if (t.size !== n) throw new ShapeError(`${name}: expected ${n} elements, got shape ${shapeOf(t.shape)} (${t.size})`)
}

export function dims (name: string, t: Tensor, want: readonly number[]): void {
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
    throw new ShapeError(`${name}: expected shape ${shapeOf(want)}, got ${shapeOf(t.shape)}`)
  }
}

export function lastDim (t: Tensor): number {
  return t.shape[t.shape.length - 1]
}

export function finiteNumber (name: string, x: number): void {
  if (typeof x !== 'number' || Number.isNaN(x)) throw new ShapeError(`${name} must be a number, got ${String(x)}`)
}

export function positiveInt (name: string, x: number): void {
  if (!Number.isInteger(x) || x <= 0) throw new ShapeError(`${name} must be a positive integer, got ${String(x)}`)
}

/** Every index in ids must lie in [lo, hi); the check reads host memory before any kernel runs. */
export function indicesInRange (name: string, ids: Int32Array, lo: number, hi: number): void {
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i]
    if (v < lo || v >= hi) throw new ShapeError(`${name}[${i}] = ${v} is outside [${lo}, ${hi})`)
  }
}

// ---- per-kernel dimensions: check a kernel's arguments against each other, return its sizes ----

export function encoderDims (out: Tensor, inp: Tensor, wte: Tensor, wpe: Tensor): { B: number, T: number, C: number, V: number, maxT: number } {
  rank('inp', inp, 2)
  rank('wte/dwte', wte, 2)
  rank('wpe/dwpe', wpe, 2)
  const [B, T] = inp.shape
  const [V, C] = wte.shape
  const maxT = wpe.shape[0]
  if (wpe.shape[1] !== C) throw new ShapeError(`wpe/dwpe: expected [maxT,${C}], got ${shapeOf(wpe.shape)}`)
  if (T > maxT) throw new ShapeError(`inp: T=${T} exceeds wpe's maxT=${maxT}`)
  dims('out/dout', out, [B, T, C])
  return { B, T, C, V, maxT }
}

export function layernormDims (inp: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, rstd: Tensor): { N: number, C: number } {
  const C = lastDim(inp)
  if (C === 0) throw new ShapeError(`inp: last dim must be > 0, got ${shapeOf(inp.shape)}`)
  const N = inp.size / C
  size('weight', weight, C)
  size('bias/dbias', bias, C)
  size('mean', mean, N)
  size('rstd', rstd, N)
  return { N, C }
}

export function matmulDims (out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null): { N: number, C: number, OC: number } {
  rank('weight', weight, 2)
  const [OC, C] = weight.shape
  if (C === 0) throw new ShapeError('weight: C must be > 0')
  if (lastDim(inp) !== C) throw new ShapeError(`inp: last dim must be C=${C} (weight ${shapeOf(weight.shape)}), got ${shapeOf(inp.shape)}`)
  const N = inp.size / C
  if (lastDim(out) !== OC) throw new ShapeError(`out/dout: last dim must be OC=${OC}, got ${shapeOf(out.shape)}`)
  size('out/dout', out, N * OC)
  if (bias !== null) size('bias/dbias', bias, OC)
  return { N, C, OC }
}

/** qkv [B,T,3C] with C divisible by NH: both attention kernels' input. */
function qkvDims (qkv: Tensor, NH: number): { B: number, T: number, C: number } {
  positiveInt('NH', NH)
  rank('qkv', qkv, 3)
  const [B, T, C3] = qkv.shape
  if (C3 % 3 !== 0) throw new ShapeError(`qkv: last dim must be 3C, got ${shapeOf(qkv.shape)}`)
  const C = C3 / 3
  if (C % NH !== 0) throw new ShapeError(`C=${C} is not divisible by NH=${NH}`)
  return { B, T, C }
}

export function attentionDims (out: Tensor, preatt: Tensor, att: Tensor, qkv: Tensor, NH: number): { B: number, T: number, C: number } {
  const { B, T, C } = qkvDims(qkv, NH)
  dims('out/dout', out, [B, T, C])
  dims('preatt/dpreatt', preatt, [B, NH, T, T])
  dims('att/datt', att, [B, NH, T, T])
  return { B, T, C }
}

/** Flash attention: qkv [B,T,3C], out/dout [B,T,C], lse [B,NH,T]. */
export function flashAttentionDims (out: Tensor, lse: Tensor, qkv: Tensor, NH: number): { B: number, T: number, C: number } {
  const { B, T, C } = qkvDims(qkv, NH)
  dims('out/dout', out, [B, T, C])
  dims('lse', lse, [B, NH, T])
  return { B, T, C }
}

export function crossEntropyDims (probs: Tensor, logits: Tensor, targets: Tensor): { N: number, V: number } {
  const V = lastDim(logits)
  if (V === 0) throw new ShapeError('logits: V must be > 0')
  const N = logits.size / V
  size('probs/dlogits', probs, logits.size)
  size('targets', targets, N)
  return { N, V }
}

// ---- Llama layers ----

/** eps of RMSNorm: finite, >= 0. */
export function rmsnormDims (inp: Tensor, weight: Tensor, rstd: Tensor, eps?: number): { N: number, C: number } {
  const C = lastDim(inp)
  if (C === 0) throw new ShapeError(`inp: last dim must be > 0, got ${shapeOf(inp.shape)}`)
  const N = inp.size / C
  size('weight', weight, C)
  size('rstd', rstd, N)
  if (eps !== undefined && !(typeof eps === 'number' && Number.isFinite(eps) && eps >= 0)) throw new ShapeError(`eps must be a finite number >= 0, got ${String(eps)}`)
  return { N, C }
}

/** qkv [B,T,3C] with C = NH * HS, HS even; theta finite and > 0; out/dout the same shape. */
export function ropeDims (out: Tensor, inp: Tensor, NH: number, theta: number): { B: number, T: number, C: number } {
  positiveInt('NH', NH)
  if (!(typeof theta === 'number' && Number.isFinite(theta) && theta > 0)) throw new ShapeError(`theta must be a finite number > 0, got ${String(theta)}`)
  rank('inp/dout', inp, 3)
  const [B, T, C3] = inp.shape
  if (C3 % 3 !== 0) throw new ShapeError(`inp/dout: last dim must be 3C, got ${shapeOf(inp.shape)}`)
  const C = C3 / 3
  if (C % NH !== 0) throw new ShapeError(`C=${C} is not divisible by NH=${NH}`)
  if ((C / NH) % 2 !== 0) throw new ShapeError(`head size C/NH=${C / NH} must be even for rotary embeddings`)
  dims('out/dinp', out, inp.shape)
  return { B, T, C }
}

/** inp [..., 2H] -> out [..., H], H > 0. */
export function swigluDims (out: Tensor, inp: Tensor): { N: number, H: number } {
  const H2 = lastDim(inp)
  if (H2 === 0 || H2 % 2 !== 0) throw new ShapeError(`inp/dinp: last dim must be 2H > 0, got ${shapeOf(inp.shape)}`)
  const H = H2 / 2
  const N = inp.size / H2
  if (lastDim(out) !== H) throw new ShapeError(`out/dout: last dim must be H=${H}, got ${shapeOf(out.shape)}`)
  size('out/dout', out, N * H)
  return { N, H }
}
