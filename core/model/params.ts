// Parameter layout: names, shapes, init and weight-decay class of every tensor a stage owns, and
// the ParameterSet that holds them (values + gradient buffers) on a backend.
//
// Names follow Hugging Face GPT-2 (GPT2LMHeadModel without the `transformer.` prefix), plus
// `lm_head.weight` (untied) and the optional bottleneck projections. Orientation: every matmul
// weight is stored [OC, C] (out, in), as the backend's matmul takes it; HF's Conv1D stores
// c_attn/c_proj/c_fc as [C, OC], so importing HF weights means transposing those four.
//
// llama (see llamaBlockParamNames) takes HF LlamaForCausalLM's names without the `model.` prefix,
// with q|k|v fused into one qkv_proj [3C, C] and gate|up into one gate_up_proj [2H, C] (Phi-3's
// names for the same fusion); no biases, no position table, RMSNorm weights only. With grouped-query
// attention qkv_proj is [C + 2 Ckv, C]: q's C rows, then NKV K heads, then NKV V heads (Ckv = NKV hd).
//
// Init is GPT-2's: weights N(0, 0.02), residual output projections (attn.c_proj, mlp.c_proj,
// bottleneck_up) N(0, 0.02/sqrt(2L)), biases 0, LayerNorm weight 1. Each tensor draws from its own
// stream seeded by (seed, name), so a stage's init does not depend on how the model was split.
import type { ComputeBackend, Tensor } from '../contracts/backend.ts'
import { ShapeError } from '../errors.ts'
import { ffnHiddenOf, isLlama, kvHeadsOf } from './config.ts'
import { Prng } from './prng.ts'
import { isFirstStage, isLastStage, type StageLayout } from './stage-split.ts'

export type ParamInit =
  | { readonly kind: 'normal', readonly std: number }
  | { readonly kind: 'zeros' }
  | { readonly kind: 'ones' }

export interface ParamSpec {
  readonly name: string
  readonly shape: readonly number[]
  readonly init: ParamInit
  /** AdamW weight decay applies (matrices and embeddings; never biases or LayerNorm). */
  readonly decay: boolean
}

const INIT_STD = 0.02

/** Names of block i's tensors, in the order blockSpecs lists them. */
export function blockParamNames (i: number): BlockParamNames {
  const h = `h.${i}`
  return {
    ln1w: `${h}.ln_1.weight`,
    ln1b: `${h}.ln_1.bias`,
    qkvw: `${h}.attn.c_attn.weight`,
    qkvb: `${h}.attn.c_attn.bias`,
    attprojw: `${h}.attn.c_proj.weight`,
    attprojb: `${h}.attn.c_proj.bias`,
    ln2w: `${h}.ln_2.weight`,
    ln2b: `${h}.ln_2.bias`,
    fcw: `${h}.mlp.c_fc.weight`,
    fcb: `${h}.mlp.c_fc.bias`,
    fcprojw: `${h}.mlp.c_proj.weight`,
    fcprojb: `${h}.mlp.c_proj.bias`
  }
}

export interface BlockParamNames {
  ln1w: string, ln1b: string, qkvw: string, qkvb: string, attprojw: string, attprojb: string
  ln2w: string, ln2b: string, fcw: string, fcb: string, fcprojw: string, fcprojb: string
}

/** Names of llama block i's tensors, in the order stageParamSpecs lists them. */
export function llamaBlockParamNames (i: number): LlamaBlockParamNames {
  const l = `layers.${i}`
  return {
    attnNorm: `${l}.input_layernorm.weight`,
    qkvw: `${l}.self_attn.qkv_proj.weight`,
    ow: `${l}.self_attn.o_proj.weight`,
    ffnNorm: `${l}.post_attention_layernorm.weight`,
    gateUpw: `${l}.mlp.gate_up_proj.weight`,
    downw: `${l}.mlp.down_proj.weight`
  }
}

export interface LlamaBlockParamNames {
  attnNorm: string, qkvw: string, ow: string, ffnNorm: string, gateUpw: string, downw: string
}

/** Names of the embedding, final norm and head tensors of either architecture. */
export function edgeParamNames (llama: boolean): { embed: string, pos: string | null, normW: string, normB: string | null, head: string } {
  return llama
    ? { embed: 'embed_tokens.weight', pos: null, normW: 'norm.weight', normB: null, head: 'lm_head.weight' }
    : { embed: 'wte.weight', pos: 'wpe.weight', normW: 'ln_f.weight', normB: 'ln_f.bias', head: 'lm_head.weight' }
}

/** Bottleneck projection names: `down` sits on a stage's last block, `up` on the next stage's first. */
export function bottleneckParamNames (block: number, dir: 'down' | 'up'): { w: string, b: string } {
  return { w: `h.${block}.bottleneck_${dir}.weight`, b: `h.${block}.bottleneck_${dir}.bias` }
}

/** Every tensor a stage owns, in a fixed order (checkpoints and flattened averaging use it). */
export function stageParamSpecs (layout: StageLayout): ParamSpec[] {
  const { config: c, range, bottleneck: k } = layout
  const C = c.dModel
  const V = c.vocabSize
  const residStd = INIT_STD / Math.sqrt(2 * c.nLayer)
  const normal = (std: number): ParamInit => ({ kind: 'normal', std })
  const zeros: ParamInit = { kind: 'zeros' }
  const ones: ParamInit = { kind: 'ones' }
  const specs: ParamSpec[] = []
  const add = (name: string, shape: number[], init: ParamInit, decay: boolean): void => {
    specs.push(Object.freeze({ name, shape: Object.freeze(shape), init, decay }))
  }

  const llama = isLlama(c)
  const edge = edgeParamNames(llama)
  if (isFirstStage(layout)) {
    add(edge.embed, [V, C], normal(INIT_STD), true)
    if (edge.pos != null) add(edge.pos, [c.blockSize, C], normal(INIT_STD), true)
  } else if (k > 0) {
    const up = bottleneckParamNames(range.firstBlock, 'up')
    add(up.w, [C, k], normal(residStd), true)
    add(up.b, [C], zeros, false)
  }
  for (let i = range.firstBlock; i < range.endBlock && llama; i++) {
    const n = llamaBlockParamNames(i)
    const H = ffnHiddenOf(c)
    add(n.attnNorm, [C], ones, false)
    add(n.qkvw, [C + 2 * kvHeadsOf(c) * (C / c.nHead), C], normal(INIT_STD), true)
    add(n.ow, [C, C], normal(residStd), true)
    add(n.ffnNorm, [C], ones, false)
    add(n.gateUpw, [2 * H, C], normal(INIT_STD), true)
    add(n.downw, [C, H], normal(residStd), true)
  }
  for (let i = range.firstBlock; i < range.endBlock && !llama; i++) {
    const n = blockParamNames(i)
    add(n.ln1w, [C], ones, false)
    add(n.ln1b, [C], zeros, false)
    add(n.qkvw, [3 * C, C], normal(INIT_STD), true)
    add(n.qkvb, [3 * C], zeros, false)
    add(n.attprojw, [C, C], normal(residStd), true)
    add(n.attprojb, [C], zeros, false)
    add(n.ln2w, [C], ones, false)
    add(n.ln2b, [C], zeros, false)
    add(n.fcw, [4 * C, C], normal(INIT_STD), true)
    add(n.fcb, [4 * C], zeros, false)
    add(n.fcprojw, [C, 4 * C], normal(residStd), true)
    add(n.fcprojb, [C], zeros, false)
  }
  if (isLastStage(layout)) {
    add(edge.normW, [C], ones, false)
    if (edge.normB != null) add(edge.normB, [C], zeros, false)
    add(edge.head, [V, C], normal(INIT_STD), true)
  } else if (k > 0) {
    const down = bottleneckParamNames(range.endBlock - 1, 'down')
    add(down.w, [k, C], normal(INIT_STD), true)
    add(down.b, [k], zeros, false)
  }
  return specs
}

export function numel (shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

/** Deterministic initial values of one tensor: a function of (seed, name) only. */
export function initialValues (spec: ParamSpec, seed: number): Float32Array {
  const out = new Float32Array(numel(spec.shape))
  switch (spec.init.kind) {
    case 'zeros': break
    case 'ones': out.fill(1); break
    case 'normal': {
      const rng = new Prng(`${seed >>> 0}:${spec.name}`)
      const std = spec.init.std
      for (let i = 0; i < out.length; i++) out[i] = rng.normal() * std
      break
    }
  }
  return out
}

/**
 * A stage's parameters and their gradient buffers on one backend. Gradients accumulate across
 * backward calls (microbatches) until zeroGrad.
 */
export class ParameterSet {
  readonly specs: readonly ParamSpec[]
  private readonly values = new Map<string, Tensor>()
  private readonly grads = new Map<string, Tensor>()
  /** Calls of load(): the one way values change besides the optimizer (a stage keeps forwards until either). */
  writes = 0

  /** Uploads `initial` (name -> values) or, where a name is missing, the seeded init. */
  constructor (private readonly backend: ComputeBackend, specs: readonly ParamSpec[], seed: number, initial?: ReadonlyMap<string, Float32Array>) {
    this.specs = specs
    for (const s of specs) {
      const given = initial?.get(s.name)
      if (given != null && given.length !== numel(s.shape)) {
        throw new ShapeError(`parameter ${s.name}: expected ${numel(s.shape)} values, got ${given.length}`)
      }
      this.values.set(s.name, backend.upload(given ?? initialValues(s, seed), s.shape))
      this.grads.set(s.name, backend.alloc(s.shape))
    }
  }

  /** Number of scalar parameters. */
  get numel (): number {
    return this.specs.reduce((a, s) => a + numel(s.shape), 0)
  }

  has (name: string): boolean { return this.values.has(name) }

  value (name: string): Tensor {
    const t = this.values.get(name)
    if (t == null) throw new ShapeError(`no parameter named ${name} in this stage`)
    return t
  }

  grad (name: string): Tensor {
    const t = this.grads.get(name)
    if (t == null) throw new ShapeError(`no parameter named ${name} in this stage`)
    return t
  }

  async zeroGrad (): Promise<void> {
    for (const g of this.grads.values()) await this.backend.fill(g, 0)
  }

  /** Host copies of the values (checkpoints, averaging, tests). */
  async download (): Promise<Map<string, Float32Array>> {
    return await this.downloadMap(this.values)
  }

  /** Host copies of the accumulated gradients. */
  async downloadGrads (): Promise<Map<string, Float32Array>> {
    return await this.downloadMap(this.grads)
  }

  /** Overwrites values from host arrays; every parameter must be present with the right size. */
  async load (data: ReadonlyMap<string, Float32Array>): Promise<void> {
    for (const s of this.specs) {
      const d = data.get(s.name)
      if (d == null) throw new ShapeError(`missing parameter ${s.name}`)
      if (d.length !== numel(s.shape)) throw new ShapeError(`parameter ${s.name}: expected ${numel(s.shape)} values, got ${d.length}`)
    }
    this.writes++
    for (const s of this.specs) await this.backend.write(this.value(s.name), data.get(s.name) as Float32Array)
  }

  free (): void {
    for (const t of this.values.values()) this.backend.free(t)
    for (const t of this.grads.values()) this.backend.free(t)
    this.values.clear()
    this.grads.clear()
  }

  private async downloadMap (m: Map<string, Tensor>): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>()
    for (const s of this.specs) out.set(s.name, await this.backend.download(m.get(s.name) as Tensor) as Float32Array)
    return out
  }
}
