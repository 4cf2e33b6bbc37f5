// The whole GPT in one process: every stage of a split run in sequence, passing host arrays as
// the pipeline would. With one stage (the default) this is the plain single-process model; with
// several it is the reference the distributed pipeline must match. Either architecture (config.arch:
// gpt2 or llama): each Stage picks its layers from the config.
import type { ComputeBackend } from '../contracts/backend.ts'
import type { ModelConfig } from './config.ts'
import type { AdamWOptions, AdamWState, StepOptions, StepResult } from './optimizer.ts'
import { Stage, StageStateError } from './stage.ts'
import { stageLayouts } from './stage-split.ts'

export interface GptOptions {
  /** S: number of stages (default 1). */
  readonly stages?: number
  /** k: bottleneck width at stage boundaries; 0 = off (default). */
  readonly bottleneck?: number
  readonly seed?: number
  /** Initial values by parameter name (a checkpoint); missing names get the seeded init. */
  readonly params?: ReadonlyMap<string, Float32Array>
  readonly optimizer?: Partial<AdamWOptions>
}

export class GptModel {
  readonly config: ModelConfig
  readonly stages: readonly Stage[]

  constructor (backend: ComputeBackend, config: ModelConfig, opts: GptOptions = {}) {
    this.config = config
    this.stages = stageLayouts(config, opts.stages ?? 1, opts.bottleneck ?? 0)
      .map(layout => new Stage(backend, layout, { seed: opts.seed, params: opts.params, optimizer: opts.optimizer }))
  }

  /** Number of scalar parameters over all stages. */
  get numel (): number {
    return this.stages.reduce((n, s) => n + s.params.numel, 0)
  }

  /**
   * tokens i32 [B,T] through every stage. With targets i32 [B,T], returns the mean cross-entropy;
   * without, only logits are computed (see logits()).
   */
  async forward (tokens: Int32Array, B: number, T: number, targets?: Int32Array): Promise<number | undefined> {
    let hidden: Float32Array | undefined
    for (const stage of this.stages) {
      const out = await stage.forward({
        B,
        T,
        tokens: stage.isFirst ? tokens : undefined,
        hidden: stage.isFirst ? undefined : hidden,
        targets: stage.isLast ? targets : undefined
      })
      hidden = out.hidden
      if (stage.isLast) return out.loss
    }
    throw new StageStateError('model has no last stage')
  }

  /** Accumulates the gradient of the latest forward's mean loss into every stage. */
  async backward (): Promise<void> {
    let dout: Float32Array | undefined
    for (let s = this.stages.length - 1; s >= 0; s--) {
      dout = (await this.stages[s].backward(dout)) ?? undefined
    }
  }

  /** Logits f32 [B,T,V] of the latest forward. */
  async logits (): Promise<Float32Array> {
    return await this.stages[this.stages.length - 1].logits()
  }

  async zeroGrad (): Promise<void> {
    for (const s of this.stages) await s.zeroGrad()
  }

  /** One AdamW step on every stage, clipping by the norm over all stages' gradients. */
  async update (opts: StepOptions): Promise<StepResult> {
    let sumSq = 0
    for (const s of this.stages) sumSq += await s.gradSumSquares()
    let result: StepResult = { applied: false, gradNorm: NaN, clipScale: 1 }
    for (const s of this.stages) result = await s.update({ ...opts, gradSumSquares: sumSq })
    return result
  }

  /** AdamW updates applied so far (the same on every stage). */
  get optimizerStep (): number {
    return this.stages[0].optimizer.step
  }

  /** Every parameter by name, in stage order. */
  async downloadParams (): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>()
    for (const s of this.stages) for (const [k, v] of await s.params.download()) out.set(k, v)
    return out
  }

  async downloadGrads (): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>()
    for (const s of this.stages) for (const [k, v] of await s.params.downloadGrads()) out.set(k, v)
    return out
  }

  async loadParams (data: ReadonlyMap<string, Float32Array>): Promise<void> {
    for (const s of this.stages) await s.params.load(data)
  }

  async exportOptimizer (): Promise<AdamWState> {
    const out: AdamWState = { step: this.optimizerStep, m: new Map(), v: new Map() }
    for (const s of this.stages) {
      const st = await s.optimizer.exportState()
      for (const [k, v] of st.m) out.m.set(k, v)
      for (const [k, v] of st.v) out.v.set(k, v)
    }
    return out
  }

  async importOptimizer (state: AdamWState): Promise<void> {
    for (const s of this.stages) await s.optimizer.importState(state)
  }

  dispose (): void {
    for (const s of this.stages) s.dispose()
  }
}
