// AdamW over one ParameterSet, on the backend: first and second moments per tensor, global-norm
// gradient clipping (norm from the backend's sumSquares), and a skipped step when the gradient
// is not finite. Weight decay is decoupled and applies only to tensors whose spec says `decay`
// (matrices and embeddings; biases and LayerNorm gains/offsets are not decayed).
import type { ComputeBackend, Tensor } from '../contracts/backend.ts'
import { ModelConfigError } from './config.ts'
import { numel, type ParameterSet } from './params.ts'
import { ShapeError } from '../errors.ts'

export interface AdamWOptions {
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  /** Clip the global gradient norm to this; 0 = no clipping. */
  readonly gradClip: number
}

export const DEFAULT_ADAMW: AdamWOptions = Object.freeze({ beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradClip: 1.0 })

export interface StepOptions {
  lr: number
  /** Multiplies the accumulated gradients, e.g. 1/microbatches. Default 1. */
  gradScale?: number
  /**
   * Sum of squares of the (unscaled) gradients to clip against, when the norm spans more than
   * this parameter set (several stages in one process). Default: this set's own.
   */
  gradSumSquares?: number
}

export interface StepResult {
  /** False when the gradient was not finite and nothing changed. */
  applied: boolean
  /** Global L2 norm of the scaled gradient, before clipping (NaN/Infinity when skipped). */
  gradNorm: number
  /** Factor applied by clipping (1 = not clipped). */
  clipScale: number
}

export interface AdamWState {
  /** Updates applied so far (AdamW's t, for bias correction). */
  step: number
  m: Map<string, Float32Array>
  v: Map<string, Float32Array>
}

export class AdamW {
  readonly options: AdamWOptions
  /** Updates applied so far. */
  step = 0
  private readonly m = new Map<string, Tensor>()
  private readonly v = new Map<string, Tensor>()

  constructor (private readonly backend: ComputeBackend, private readonly params: ParameterSet, options: Partial<AdamWOptions> = {}) {
    this.options = validateAdamW({ ...DEFAULT_ADAMW, ...options })
    for (const s of params.specs) {
      this.m.set(s.name, backend.alloc(s.shape))
      this.v.set(s.name, backend.alloc(s.shape))
    }
  }

  /** Sum of squares of this set's accumulated gradients (float64, non-finite if any is). */
  async gradSumSquares (): Promise<number> {
    let s = 0
    for (const spec of this.params.specs) s += await this.backend.sumSquares(this.params.grad(spec.name))
    return s
  }

  /** One AdamW update from the accumulated gradients; skipped (applied: false) if they are non-finite. */
  async update (opts: StepOptions): Promise<StepResult> {
    const gradScale = opts.gradScale ?? 1
    if (!(Number.isFinite(opts.lr) && opts.lr >= 0)) throw new ModelConfigError(`learning rate must be a non-negative number, got ${opts.lr}`)
    const sumSq = opts.gradSumSquares ?? await this.gradSumSquares()
    const gradNorm = Math.sqrt(sumSq) * Math.abs(gradScale)
    if (!Number.isFinite(gradNorm)) return { applied: false, gradNorm, clipScale: 1 }
    const clip = this.options.gradClip
    const clipScale = clip > 0 && gradNorm > clip ? clip / gradNorm : 1
    this.step++
    for (const spec of this.params.specs) {
      await this.backend.adamwUpdate(this.params.value(spec.name), this.params.grad(spec.name),
        this.m.get(spec.name) as Tensor, this.v.get(spec.name) as Tensor, {
          lr: opts.lr,
          beta1: this.options.beta1,
          beta2: this.options.beta2,
          eps: this.options.eps,
          weightDecay: spec.decay ? this.options.weightDecay : 0,
          step: this.step,
          gradScale: gradScale * clipScale
        })
    }
    return { applied: true, gradNorm, clipScale }
  }

  async exportState (): Promise<AdamWState> {
    const m = new Map<string, Float32Array>()
    const v = new Map<string, Float32Array>()
    for (const s of this.params.specs) {
      m.set(s.name, await this.backend.download(this.m.get(s.name) as Tensor) as Float32Array)
      v.set(s.name, await this.backend.download(this.v.get(s.name) as Tensor) as Float32Array)
    }
    return { step: this.step, m, v }
  }

  async importState (state: AdamWState): Promise<void> {
    if (!Number.isSafeInteger(state.step) || state.step < 0) throw new ShapeError(`optimizer step must be a non-negative integer, got ${state.step}`)
    for (const s of this.params.specs) {
      for (const [which, src] of [['m', state.m], ['v', state.v]] as const) {
        const d = src.get(s.name)
        if (d == null) throw new ShapeError(`optimizer state: missing ${which} for ${s.name}`)
        if (d.length !== numel(s.shape)) throw new ShapeError(`optimizer state: ${which} for ${s.name} has ${d.length} values, expected ${numel(s.shape)}`)
      }
    }
    for (const s of this.params.specs) {
      await this.backend.write(this.m.get(s.name) as Tensor, state.m.get(s.name) as Float32Array)
      await this.backend.write(this.v.get(s.name) as Tensor, state.v.get(s.name) as Float32Array)
    }
    this.step = state.step
  }

  free (): void {
    for (const t of this.m.values()) this.backend.free(t)
    for (const t of this.v.values()) this.backend.free(t)
    this.m.clear()
    this.v.clear()
  }
}

export function validateAdamW (o: AdamWOptions): AdamWOptions {
  const bad = (msg: string): never => { throw new ModelConfigError(`AdamW: ${msg}`) }
  if (!(o.beta1 >= 0 && o.beta1 < 1)) bad(`beta1 must be in [0, 1), got ${o.beta1}`)
  if (!(o.beta2 >= 0 && o.beta2 < 1)) bad(`beta2 must be in [0, 1), got ${o.beta2}`)
  if (!(o.eps > 0 && Number.isFinite(o.eps))) bad(`eps must be a positive number, got ${o.eps}`)
  if (!(o.weightDecay >= 0 && Number.isFinite(o.weightDecay))) bad(`weightDecay must be a non-negative number, got ${o.weightDecay}`)
  if (!(o.gradClip >= 0 && Number.isFinite(o.gradClip))) bad(`gradClip must be a non-negative number, got ${o.gradClip}`)
  return Object.freeze({ ...o })
}
