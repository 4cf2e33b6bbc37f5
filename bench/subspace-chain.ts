// The subspace-constrained boundary (core/codecs/subspace.ts) trained end to end, beside
// CompressedChain (core/train/compressed-chain.ts) for the compression-quality bench. GptModel's
// stages run in sequence; at every boundary the sender sends z = (x - e) U through the run's codec
// and the wire frame path (encodeBoundary/decodeBoundary), the receiver rebuilds x = e + z U^T from
// the tokens and the embedding table; gradients cross back as g U, and the receiver adds the rest,
// (I - U U^T) g, to the token embeddings' gradient itself.
//
// The constraint: every block upstream of the last boundary writes into the stream only through
// span(U): its output projections (attention out, MLP down; gpt2: and their biases) are projected
// onto span(U) at init, their gradients before every update, and their values after it (AdamW's
// per-element step leaves the subspace). Blocks of the last stage are free: nothing crosses after them.
//
// In one process the receiver reads the embedding rows of stage 0 and writes the embeddings'
// gradient into stage 0; in a swarm each receiving stage would hold a copy of the embedding table
// (V x C: for llama-20m 8.0M of its 20M parameters) and its gradient would be summed with stage 0's.
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { isLlama, ModelConfigError, type ModelConfig } from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { blockParamNames, edgeParamNames, llamaBlockParamNames } from '../core/model/params.ts'
import { validateLrSchedule } from '../core/model/lr-schedule.ts'
import type { Stage } from '../core/model/stage.ts'
import { BoundarySubspace } from '../core/codecs/subspace.ts'
import type { BoundaryCodecs } from '../core/codecs/tensor-codecs.ts'
import type { StepOptions, StepResult } from '../core/model/optimizer.ts'
import { boundaryTraffic, crossBoundary, runChainTraining, type BoundaryTraffic, type ChainTrainOptions, type ChainTrainResult } from '../core/train/compressed-chain.ts'

export interface SubspaceChainOptions extends Omit<ChainTrainOptions, 'bottleneck'> {
  /** k: the subspace's dimension (values per token per boundary before the codec). */
  readonly k: number
  /** Seed of the fixed basis U (default 0). */
  readonly basisSeed?: number
}

/** Stream-writing projections of the stages before the last boundary: [name, cols] (W is [C, cols]). */
function constrainedParams (model: GptModel): Array<{ stage: Stage, name: string, cols: number }> {
  const out: Array<{ stage: Stage, name: string, cols: number }> = []
  for (const st of model.stages.slice(0, -1)) {
    for (let i = st.layout.range.firstBlock; i < st.layout.range.endBlock; i++) {
      const names = isLlama(model.config)
        ? [llamaBlockParamNames(i).ow, llamaBlockParamNames(i).downw]
        : [blockParamNames(i).attprojw, blockParamNames(i).attprojb, blockParamNames(i).fcprojw, blockParamNames(i).fcprojb]
      for (const name of names) {
        const spec = st.params.specs.find(s => s.name === name)
        if (spec == null) throw new ModelConfigError(`subspace: stage ${st.layout.range.index} has no parameter ${name}`)
        out.push({ stage: st, name, cols: spec.shape.length === 2 ? spec.shape[1] : 1 })
      }
    }
  }
  return out
}

/** A chain whose boundaries carry subspace coordinates; train with trainSubspaceChain. */
export class SubspaceChain {
  readonly model: GptModel
  readonly subspace: BoundarySubspace
  readonly traffic: BoundaryTraffic[]
  private readonly constrained: Array<{ stage: Stage, name: string, cols: number }>
  private readonly edge: ReturnType<typeof edgeParamNames>
  private tokens: Int32Array = new Int32Array(0)
  private BT: [number, number] = [0, 0]
  private embeddingCache: { wte: Float32Array, wpe: Float32Array | null } | null = null
  private microbatch = 0n

  constructor (private readonly backend: ComputeBackend, config: ModelConfig, opts: { stages: number, k: number, basisSeed?: number, seed: number, optimizer?: ChainTrainOptions['optimizer'], params?: ChainTrainOptions['params'], codecs: BoundaryCodecs }) {
    this.model = new GptModel(backend, config, { stages: opts.stages, bottleneck: 0, seed: opts.seed, optimizer: opts.optimizer, params: opts.params })
    this.subspace = new BoundarySubspace(config.dModel, opts.k, opts.basisSeed ?? 0)
    this.codecs = opts.codecs
    this.edge = edgeParamNames(isLlama(config))
    this.constrained = constrainedParams(this.model)
    this.traffic = boundaryTraffic(this.model.stages.length)
  }

  private readonly codecs: BoundaryCodecs

  /** Projects the constrained weights' values (init, and after every update) or gradients (before it). */
  async project (what: 'values' | 'grads'): Promise<void> {
    for (const p of this.constrained) {
      const t = what === 'values' ? p.stage.params.value(p.name) : p.stage.params.grad(p.name)
      const w = await this.backend.download(t) as Float32Array
      this.subspace.projectColumns(w, p.cols)
      await this.backend.write(t, w)
    }
    if (what === 'values') this.embeddingCache = null
  }

  /** e [B*T, C]: the embedding rows (+ positions, gpt2) of the latest tokens. */
  private async embeddings (): Promise<Float32Array> {
    const s0 = this.model.stages[0]
    if (this.embeddingCache == null) {
      this.embeddingCache = {
        wte: await this.backend.download(s0.params.value(this.edge.embed)) as Float32Array,
        wpe: this.edge.pos != null ? await this.backend.download(s0.params.value(this.edge.pos)) as Float32Array : null
      }
    }
    const { wte, wpe } = this.embeddingCache
    const C = this.model.config.dModel
    const [B, T] = this.BT
    const e = new Float32Array(B * T * C)
    for (let n = 0; n < B * T; n++) {
      e.set(wte.subarray(this.tokens[n] * C, (this.tokens[n] + 1) * C), n * C)
      if (wpe != null) { const t = n % T; for (let c = 0; c < C; c++) e[n * C + c] += wpe[t * C + c] }
    }
    return e
  }

  async forward (tokens: Int32Array, B: number, T: number, targets?: Int32Array): Promise<number | undefined> {
    const stages = this.model.stages
    this.microbatch++
    this.tokens = tokens
    this.BT = [B, T]
    const k = this.subspace.k
    let hidden: Float32Array | undefined
    let e: Float32Array | null = null
    for (let s = 0; s < stages.length; s++) {
      if (s > 0) {
        e ??= await this.embeddings()
        const z = this.subspace.encodeActivation(hidden as Float32Array, e)
        const zr = this.cross(s - 1, 'activation', z, [B, T, k], s)
        hidden = this.subspace.decodeActivation(zr, e)
      }
      const st = stages[s]
      const out = await st.forward({ B, T, tokens: s === 0 ? tokens : undefined, hidden: s === 0 ? undefined : hidden, targets: st.isLast ? targets : undefined })
      if (st.isLast) return out.loss
      hidden = out.hidden
    }
    return undefined
  }

  async backward (): Promise<void> {
    const stages = this.model.stages
    const [B, T] = this.BT
    const C = this.model.config.dModel
    // the receivers' direct embedding gradients, summed over boundaries (added once, below)
    let direct: Float32Array | null = null
    let dout: Float32Array | undefined
    for (let s = stages.length - 1; s >= 0; s--) {
      const dinput = await stages[s].backward(dout)
      if (s === 0) break
      const g = dinput as Float32Array
      const rest = this.subspace.residualGradient(g)
      if (direct == null) direct = rest
      else for (let i = 0; i < rest.length; i++) direct[i] += rest[i]
      const zg = this.cross(s - 1, 'activation-grad', this.subspace.encodeGradient(g), [B, T, this.subspace.k], s - 1)
      dout = this.subspace.decodeGradient(zg)
    }
    if (direct == null) return
    const s0 = this.model.stages[0]
    const gt = s0.params.grad(this.edge.embed)
    const gwte = await this.backend.download(gt) as Float32Array
    for (let n = 0; n < B * T; n++) {
      const row = this.tokens[n] * C
      for (let c = 0; c < C; c++) gwte[row + c] += direct[n * C + c]
    }
    await this.backend.write(gt, gwte)
    if (this.edge.pos != null) {
      const pt = s0.params.grad(this.edge.pos)
      const gwpe = await this.backend.download(pt) as Float32Array
      for (let n = 0; n < B * T; n++) { const t = n % T; for (let c = 0; c < C; c++) gwpe[t * C + c] += direct[n * C + c] }
      await this.backend.write(pt, gwpe)
    }
  }

  private cross (boundary: number, role: 'activation' | 'activation-grad', data: Float32Array, shape: number[], toStage: number): Float32Array {
    return crossBoundary(this.codecs, this.traffic[boundary], role, data, shape, { stage: toStage, microbatchId: this.microbatch })
  }

  async zeroGrad (): Promise<void> { await this.model.zeroGrad() }

  /** The constrained update: gradients projected onto span(U) before AdamW, values after it. */
  async update (opts: StepOptions): Promise<StepResult> {
    await this.project('grads')
    const r = await this.model.update(opts)
    await this.project('values')
    return r
  }

  dispose (): void { this.model.dispose() }
}

/** trainCompressedChain's loop and eval on a SubspaceChain: same batches, schedule and update rule. */
export async function trainSubspaceChain (opts: SubspaceChainOptions): Promise<ChainTrainResult> {
  const { config } = opts
  if (!Number.isSafeInteger(opts.steps) || opts.steps < 1) throw new ModelConfigError(`steps must be a positive integer, got ${opts.steps}`)
  if (!Number.isSafeInteger(opts.stages) || opts.stages < 2) throw new ModelConfigError(`a subspace chain needs at least 2 stages, got ${opts.stages}`)
  const schedule = validateLrSchedule(opts.schedule)
  const chain = new SubspaceChain(opts.backend, config, { stages: opts.stages, k: opts.k, basisSeed: opts.basisSeed, seed: opts.seed, optimizer: opts.optimizer, params: opts.params, codecs: opts.codecs })
  try {
    await chain.project('values')
    return await runChainTraining(chain, opts, { schedule, boundaryWidth: opts.k, params: chain.model.numel })
  } finally {
    chain.dispose()
  }
}
