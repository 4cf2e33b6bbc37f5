// A Stage: one contiguous piece of the GPT (see stage-split.ts) with its parameters, gradient
// buffers, activations of up to `keep` microbatches, and its own AdamW state. The pipeline moves host
// arrays between stages (they cross the network through codecs), so the boundary API is:
//   forward({B, T, tokens | hidden, targets?}) -> { hidden [B,T,W] } or, on the last stage, { loss }
//   backward(dout [B,T,W] | nothing on the last stage) -> dinput [B,T,W] (null on stage 0)
// where W is the boundary width: C, or k with a bottleneck. Without a key, backward uses the
// activations of the latest forward. With a key (a microbatch id), forward keeps that microbatch's
// activations in one of `keep` sets until backward(dout, key) uses them, so a stage with several
// microbatches in flight runs each forward once; when all sets are taken, the newest kept one is
// given up (the pipeline's backwards come oldest first: the newest waits longest) and its owner
// must forward again (`holds(key)` says which). Parameter gradients accumulate
// over backward calls until zeroGrad. Hidden inputs and output gradients are checked finite here
// too, for callers that do not come through the codecs adapter (GptModel, tests). The config's
// arch picks the layers: GPT-2's (layers.ts) or Llama's (llama-layers.ts), same boundary API.
// With config.recompute, the blocks share one set of activations: the forward keeps each block's
// output (the next block's input) and the backward reruns each block's forward before its backward
// (the last block's activations are still in place), trading one more forward for memory.
import type { ComputeBackend, Tensor } from '../contracts/backend.ts'
import { LayerswarmError, ShapeError } from '../errors.ts'
// the one NaN/Inf scan (a leaf module: errors and the frame header only)
import { assertFiniteF32 } from '../wire/finite.ts'
import {
  blockBackward, blockForward, bottleneckBackward, bottleneckForward, embeddingBackward, embeddingForward, headBackward,
  headForward, identityPart, lossForward,
  type BlockActivations, type BlockParams, type BlockScratch, type BottleneckProjection,
  type HeadActivations, type HeadParams, type Param
} from './layers.ts'
import {
  llamaBlockBackward, llamaBlockForward, llamaEmbeddingBackward, llamaEmbeddingForward, llamaHeadBackward, llamaHeadForward,
  type LlamaBlockActivations, type LlamaBlockParams, type LlamaBlockScratch, type LlamaDims, type LlamaHeadParams
} from './llama-layers.ts'
import { allocSet, allocShared, blockOutput, setTensors, sharedTensors, type Activations, type Shared } from './stage-activations.ts'
import { isLlama, kvHeadsOf, LLAMA_NORM_EPS, LLAMA_ROPE_THETA } from './config.ts'
import { allocKvExpansion, freeKvExpansion } from './gqa.ts'
import { AdamW, type AdamWOptions, type StepOptions, type StepResult } from './optimizer.ts'
import { blockParamNames, bottleneckParamNames, edgeParamNames, llamaBlockParamNames, ParameterSet, stageParamSpecs } from './params.ts'
import { boundaryWidth, isFirstStage, isLastStage, type StageLayout } from './stage-split.ts'

/** A stage method was called out of order (backward before forward, loss without targets, ...). */
export class StageStateError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_STAGE_STATE', message)
  }
}

export interface StageInput {
  readonly B: number
  readonly T: number
  /** Stage 0: token ids i32 [B,T], each in [0, V). */
  readonly tokens?: Int32Array
  /** Other stages: the previous stage's output f32 [B,T,W]. */
  readonly hidden?: Float32Array
  /** Last stage: next-token targets i32 [B,T]; < 0 = not counted. Without them only logits are computed. */
  readonly targets?: Int32Array
}

export interface StageOutput {
  /** Non-last stages: f32 [B,T,W] for the next stage. */
  readonly hidden?: Float32Array
  /** Last stage with targets: mean cross-entropy over counted targets (nats). */
  readonly loss?: number
  /** Last stage with targets: number of counted targets. */
  readonly count?: number
}

export interface StageOptions {
  /** Init seed (each tensor's values depend only on seed and name). Default 0. */
  readonly seed?: number
  /** Start from these values instead of the seeded init (e.g. a checkpoint). */
  readonly params?: ReadonlyMap<string, Float32Array>
  readonly optimizer?: Partial<AdamWOptions>
  /**
   * Every `hidden` and `dout` given to this stage was already checked finite where it entered the
   * node (the pipeline's codec adapter refuses non-finite values on decode): skip the second scan.
   */
  readonly inputsChecked?: boolean
  /** Activation sets kept for keyed forwards (one per microbatch in flight); default 1. */
  readonly keep?: number
}

export class Stage {
  readonly layout: StageLayout
  readonly params: ParameterSet
  readonly optimizer: AdamW
  private readonly blocks: BlockParams[] = []
  private readonly llamaBlocks: LlamaBlockParams[] = []
  /** Non-null for arch llama: the block kernels' hyperparameters. */
  private readonly llama: LlamaDims | null = null
  private readonly wte: Param | null = null
  private readonly wpe: Param | null = null
  private readonly up: BottleneckProjection | null = null
  private readonly down: BottleneckProjection | null = null
  private readonly head: HeadParams | null = null
  private readonly llamaHead: LlamaHeadParams | null = null
  private shared: Shared | null = null
  /** The set of the latest forward (keyed or not). */
  private acts: Activations | null = null
  /** Sets holding a keyed forward, oldest first. */
  private readonly kept = new Map<string, Activations>()
  /** Allocated sets holding nothing a backward waits for. */
  private readonly spare: Activations[] = []
  /** The set unkeyed forwards write into (each allocated set is kept, spare or this one). */
  private loose: Activations | null = null
  private allocated = 0
  private readonly keep: number
  /** Forwards run (keyed or not): what a test counts to see that a backward did not recompute. */
  forwards = 0

  constructor (private readonly backend: ComputeBackend, layout: StageLayout, private readonly opts: StageOptions = {}) {
    this.layout = layout
    this.keep = opts.keep ?? 1
    if (!Number.isSafeInteger(this.keep) || this.keep < 1) throw new ShapeError(`keep must be a positive integer, got ${String(opts.keep)}`)
    this.params = new ParameterSet(backend, stageParamSpecs(layout), opts.seed ?? 0, opts.params)
    this.optimizer = new AdamW(backend, this.params, opts.optimizer)
    const P = (name: string): Param => ({ w: this.params.value(name), g: this.params.grad(name) })
    const { range, bottleneck: k, config } = layout
    const C = config.dModel
    const edge = edgeParamNames(isLlama(config))
    if (isLlama(config)) {
      const kv = allocKvExpansion(backend, C, config.nHead, kvHeadsOf(config))
      this.llama = { NH: config.nHead, theta: config.ropeTheta ?? LLAMA_ROPE_THETA, eps: config.normEps ?? LLAMA_NORM_EPS, kv }
    }
    if (isFirstStage(layout)) {
      this.wte = P(edge.embed)
      if (edge.pos != null) this.wpe = P(edge.pos)
    } else if (k > 0) {
      const n = bottleneckParamNames(range.firstBlock, 'up')
      this.up = { w: P(n.w), b: P(n.b), eye: identityPart(backend, C, k), weff: backend.alloc([C, k]) }
    }
    for (let i = range.firstBlock; i < range.endBlock && this.llama != null; i++) {
      const n = llamaBlockParamNames(i)
      this.llamaBlocks.push({
        attnNorm: P(n.attnNorm), qkvw: P(n.qkvw), ow: P(n.ow), ffnNorm: P(n.ffnNorm), gateUpw: P(n.gateUpw), downw: P(n.downw)
      })
    }
    for (let i = range.firstBlock; i < range.endBlock && this.llama == null; i++) {
      const n = blockParamNames(i)
      this.blocks.push({
        ln1w: P(n.ln1w), ln1b: P(n.ln1b), qkvw: P(n.qkvw), qkvb: P(n.qkvb),
        attprojw: P(n.attprojw), attprojb: P(n.attprojb), ln2w: P(n.ln2w), ln2b: P(n.ln2b),
        fcw: P(n.fcw), fcb: P(n.fcb), fcprojw: P(n.fcprojw), fcprojb: P(n.fcprojb)
      })
    }
    if (isLastStage(layout) && this.llama != null) {
      this.llamaHead = { norm: P(edge.normW), lmHead: P(edge.head) }
    } else if (isLastStage(layout)) {
      this.head = { lnfw: P(edge.normW), lnfb: P(edge.normB as string), lmHead: P(edge.head) }
    } else if (k > 0) {
      const n = bottleneckParamNames(range.endBlock - 1, 'down')
      this.down = { w: P(n.w), b: P(n.b), eye: identityPart(backend, k, C), weff: backend.alloc([k, C]) }
    }
  }

  get isFirst (): boolean { return isFirstStage(this.layout) }
  get isLast (): boolean { return isLastStage(this.layout) }

  /** Channels of the hidden input (non-first stages) and output (non-last stages). */
  get boundaryWidth (): number { return boundaryWidth(this.layout) }

  /** Whether a keyed forward of `key` is kept for its backward. */
  holds (key: string): boolean {
    return this.kept.get(key)?.pending != null
  }

  /** Gives up every kept forward (the parameters changed: their activations no longer match them). */
  dropKept (): void {
    for (const a of this.kept.values()) { a.pending = null; this.spare.push(a) }
    this.kept.clear()
  }

  /** Forward of one microbatch; with `key`, its activations are kept for backward(dout, key). */
  async forward (input: StageInput, key?: string): Promise<StageOutput> {
    const { B, T } = input
    const { config } = this.layout
    if (!Number.isSafeInteger(B) || B < 1) throw new ShapeError(`B must be a positive integer, got ${B}`)
    if (!Number.isSafeInteger(T) || T < 1 || T > config.blockSize) throw new ShapeError(`T must be an integer in [1, ${config.blockSize}], got ${T}`)
    const sh = this.sharedFor(B, T)
    const a = this.claim(key)
    this.acts = a
    this.forwards++
    const be = this.backend

    if (this.isFirst) {
      const tokens = input.tokens
      if (tokens == null) throw new ShapeError('stage 0 needs tokens')
      checkIds('tokens', tokens, B * T, 0, config.vocabSize)
      await be.write(a.tokens as Tensor, tokens)
      if (this.llama != null) await llamaEmbeddingForward(be, this.wte as Param, sh.zeroPos as Tensor, a.input, a.tokens as Tensor)
      else await embeddingForward(be, this.wte as Param, this.wpe as Param, a.input, a.tokens as Tensor)
    } else {
      const hidden = input.hidden
      if (hidden == null) throw new ShapeError(`stage ${this.layout.range.index} needs hidden input`)
      if (hidden.length !== B * T * this.boundaryWidth) {
        throw new ShapeError(`hidden input: expected [${B},${T},${this.boundaryWidth}] (${B * T * this.boundaryWidth} values), got ${hidden.length}`)
      }
      if (this.opts.inputsChecked !== true) assertFiniteF32(hidden, 'hidden input')
      await be.write(a.input, hidden)
      if (this.up != null) await bottleneckForward(be, this.up, a.upOut as Tensor, a.input)
    }

    let x = a.upOut ?? a.input
    const nBlocks = this.layout.range.endBlock - this.layout.range.firstBlock
    for (let l = 0; l < nBlocks; l++) {
      await this.blockForward(a, l, x)
      if (a.recompute && l < nBlocks - 1) await be.copy(a.saved[l], a.blocks[0].residual3)
      x = blockOutput(a, l, nBlocks)
    }

    if (!this.isLast) {
      let out = x
      if (this.down != null) {
        await bottleneckForward(be, this.down, sh.downOut as Tensor, x)
        out = sh.downOut as Tensor
      }
      a.pending = { hasTargets: false, count: 0 }
      return { hidden: await be.download(out) as Float32Array }
    }

    const h = a.head as HeadActivations
    if (this.llama != null) await llamaHeadForward(be, this.llamaHead as LlamaHeadParams, h.lnf, h.lnfRstd, h.logits, x, this.llama.eps)
    else await headForward(be, this.head as HeadParams, h, x)
    if (input.targets == null) {
      a.pending = { hasTargets: false, count: 0 }
      return {}
    }
    const count = checkIds('targets', input.targets, B * T, -Infinity, config.vocabSize)
    await be.write(h.targets, input.targets)
    await lossForward(be, h)
    const losses = await be.download(h.losses) as Float32Array
    let sum = 0
    for (let i = 0; i < losses.length; i++) sum += losses[i]
    a.pending = { hasTargets: true, count }
    return { loss: count > 0 ? sum / count : 0, count }
  }

  /** Logits f32 [B,T,V] of the latest forward (last stage only). */
  async logits (): Promise<Float32Array> {
    if (!this.isLast) throw new StageStateError('logits exist only on the last stage')
    if (this.acts?.pending == null) throw new StageStateError('logits() before forward()')
    return await this.backend.download((this.acts.head as HeadActivations).logits) as Float32Array
  }

  /**
   * Backward of the latest forward, or with `key` of that key's kept forward (its set is then free
   * again). Last stage: no dout (the gradient of the mean loss); otherwise dout f32 [B,T,W].
   * Returns the gradient w.r.t. the hidden input, or null on stage 0.
   */
  async backward (dout?: Float32Array, key?: string): Promise<Float32Array | null> {
    const a = key != null ? this.kept.get(key) : this.acts
    const pending = a?.pending
    if (a == null || pending == null || this.shared == null) {
      throw new StageStateError(key != null ? `backward() of ${key}: no kept forward (never run, used, or given up: forward it again)` : 'backward() before forward()')
    }
    if (key != null) {
      this.kept.delete(key)
      this.spare.push(a)
    }
    try {
      return await this.backwardOf(a, this.shared, pending, dout)
    } finally {
      // a keyed set is used once; the unkeyed latest one stays (logits(), a second backward)
      if (key != null) a.pending = null
    }
  }

  private async backwardOf (a: Activations, sh: Shared, pending: { hasTargets: boolean, count: number }, dout: Float32Array | undefined): Promise<Float32Array | null> {
    const { B, T } = sh
    const NH = this.layout.config.nHead
    const be = this.backend
    const nBlocks = this.layout.range.endBlock - this.layout.range.firstBlock
    const last = blockOutput(a, nBlocks - 1, nBlocks)

    // gradient w.r.t. the last block's output into sh.dres
    await be.fill(sh.dres, 0)
    if (this.isLast) {
      if (!pending.hasTargets) throw new StageStateError('backward() on the last stage needs a forward with targets')
      if (dout != null) throw new ShapeError('the last stage takes no dout: it starts from the loss')
      const scale = pending.count > 0 ? 1 / pending.count : 0
      const h = a.head as HeadActivations
      if (this.llama == null) await headBackward(be, this.head as HeadParams, h, last, sh.dres, scale)
      else {
        await be.fill(h.dlogits, 0)
        await be.crossEntropyBackward(h.dlogits, h.probs, h.targets, scale)
        await llamaHeadBackward(be, this.llamaHead as LlamaHeadParams, h.lnf, h.lnfRstd, h.dlogits, h.dlnf, last, sh.dres)
      }
    } else {
      const W = this.boundaryWidth
      if (dout == null) throw new ShapeError(`stage ${this.layout.range.index} backward needs dout [${B},${T},${W}]`)
      if (dout.length !== B * T * W) throw new ShapeError(`dout: expected [${B},${T},${W}] (${B * T * W} values), got ${dout.length}`)
      if (this.opts.inputsChecked !== true) assertFiniteF32(dout, 'dout')
      if (this.down != null) {
        await be.write(sh.ddown as Tensor, dout)
        await bottleneckBackward(be, this.down, sh.dres, sh.ddown as Tensor, last)
      } else {
        await be.write(sh.dres, dout)
      }
    }

    for (let l = nBlocks - 1; l >= 0; l--) {
      const x = l > 0 ? blockOutput(a, l - 1, nBlocks) : (a.upOut ?? a.input)
      if (a.recompute && l < nBlocks - 1) await this.blockForward(a, l, x) // the shared set holds the last block's
      const acts = a.blocks[a.recompute ? 0 : l]
      if (this.llama != null) await llamaBlockBackward(be, this.llamaBlocks[l], acts as LlamaBlockActivations, sh.scratch as LlamaBlockScratch, x, sh.dres, this.llama)
      else await blockBackward(be, this.blocks[l], acts as BlockActivations, sh.scratch as BlockScratch, x, sh.dres, NH)
    }

    if (this.isFirst) {
      if (this.llama != null) await llamaEmbeddingBackward(be, this.wte as Param, sh.dposSink as Tensor, sh.dres, a.tokens as Tensor)
      else await embeddingBackward(be, this.wte as Param, this.wpe as Param, sh.dres, a.tokens as Tensor)
      return null
    }
    if (this.up != null) {
      await be.fill(sh.dinput as Tensor, 0)
      await bottleneckBackward(be, this.up, sh.dinput as Tensor, sh.dres, a.input)
      return await be.download(sh.dinput as Tensor) as Float32Array
    }
    return await be.download(sh.dres) as Float32Array
  }

  async zeroGrad (): Promise<void> {
    await this.params.zeroGrad()
  }

  /** Sum of squares of this stage's accumulated gradients. */
  async gradSumSquares (): Promise<number> {
    return await this.optimizer.gradSumSquares()
  }

  /** AdamW update of this stage's parameters from the accumulated gradients. */
  async update (opts: StepOptions): Promise<StepResult> {
    return await this.optimizer.update(opts)
  }

  /** Frees every backend tensor the stage holds. */
  dispose (): void {
    this.freeActivations()
    this.optimizer.free()
    this.params.free()
    freeKvExpansion(this.backend, this.llama?.kv ?? null)
    for (const p of [this.up, this.down]) {
      if (p == null) continue
      this.backend.free(p.eye)
      this.backend.free(p.weff)
    }
  }

  /** Block l's forward from x [B,T,C] into set a (its shared block set with recompute). */
  private async blockForward (a: Activations, l: number, x: Tensor): Promise<void> {
    const acts = a.blocks[a.recompute ? 0 : l]
    if (this.llama != null) await llamaBlockForward(this.backend, this.llamaBlocks[l], acts as LlamaBlockActivations, x, this.llama)
    else await blockForward(this.backend, this.blocks[l], acts as BlockActivations, x, this.layout.config.nHead)
  }

  /**
   * The set a forward writes into: `key`'s own if it has one (a repeated forward), else a spare one,
   * a new one while fewer than `keep` exist, else the newest kept set is given up (backwards come
   * oldest first, so the newest is the one needed last). Unkeyed forwards reuse the latest unkeyed set.
   */
  private claim (key: string | undefined): Activations {
    let a = key != null ? this.kept.get(key) : (this.loose ?? undefined)
    if (a == null) a = this.spare.pop()
    if (a == null && this.allocated < this.keep) {
      a = allocSet(this.backend, this.layout, (this.shared as Shared).B, (this.shared as Shared).T)
      this.allocated++
    }
    if (a == null && this.loose != null) a = this.loose
    if (a == null) {
      const newest = [...this.kept.keys()].pop() as string
      a = this.kept.get(newest) as Activations
      this.kept.delete(newest)
    }
    a.pending = null
    if (key != null) {
      if (this.loose === a) this.loose = null
      this.kept.delete(key)
      this.kept.set(key, a)
    } else {
      this.loose = a
    }
    return a
  }

  /** The shared buffers for [B,T]; another shape frees every set (their shapes no longer fit). */
  private sharedFor (B: number, T: number): Shared {
    if (this.shared != null && this.shared.B === B && this.shared.T === T) return this.shared
    this.freeActivations()
    this.shared = allocShared(this.backend, this.layout, B, T)
    return this.shared
  }

  private freeActivations (): void {
    const sets = new Set<Activations>([...this.kept.values(), ...this.spare, ...(this.loose != null ? [this.loose] : [])])
    const tensors = [...[...sets].flatMap(setTensors), ...(this.shared != null ? sharedTensors(this.shared) : [])]
    for (const t of tensors) if (t != null) this.backend.free(t)
    this.kept.clear()
    this.spare.length = 0
    this.loose = null
    this.acts = null
    this.shared = null
    this.allocated = 0
  }
}

/** Checks length and range [lo, hi) of integer ids; returns how many are >= 0. */
function checkIds (name: string, ids: Int32Array, n: number, lo: number, hi: number): number {
  if (!(ids instanceof Int32Array)) throw new ShapeError(`${name} must be an Int32Array`)
  if (ids.length !== n) throw new ShapeError(`${name}: expected ${n} ids, got ${ids.length}`)
  let count = 0
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i]
    if (v < lo || v >= hi) throw new ShapeError(`${name}[${i}] = ${v} is outside [${lo}, ${hi})`)
    if (v >= 0) count++
  }
  return count
}
