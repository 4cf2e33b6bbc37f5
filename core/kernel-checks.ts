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
