// Model configuration: the architecture hyperparameters, named presets, JSON loading and
// validation. Two architectures, both with an UNTIED LM head (the embedding on stage 0 and the head
// on the last stage can live on different nodes):
//   gpt2 (the default; `arch` absent): learned token + position embeddings, pre-LayerNorm blocks,
//        causal multi-head attention, 4x GELU MLP with biases, final LayerNorm.
//   llama: token embedding only, pre-RMSNorm blocks, rotary position embeddings on q and k,
//        SwiGLU MLP of width ffnHidden, no biases, final RMSNorm; optional grouped-query attention
//        (nKvHead K/V heads shared by groups of nHead / nKvHead query heads).
import { ConfigError } from '../errors.ts'

export interface ModelConfig {
  /** V: vocabulary size (token ids are 0..V-1). */
  readonly vocabSize: number
  /** maxT: context length; the position embedding has this many rows. */
  readonly blockSize: number
  /** L: number of transformer blocks. */
  readonly nLayer: number
  /** NH: attention heads; must divide dModel. */
  readonly nHead: number
  /** C: model width (residual stream channels). */
  readonly dModel: number
  /**
   * Architecture; absent means gpt2 (validation drops an explicit 'gpt2', so every GPT-2 config
   * and the run ids hashed from it stay what they were before llama existed).
   */
  readonly arch?: ModelArch
  /** llama only: H, the SwiGLU hidden width (validation fills in defaultFfnHidden(C)). */
  readonly ffnHidden?: number
  /** llama only: RoPE base (validation fills in 10000). */
  readonly ropeTheta?: number
  /** llama only: RMSNorm epsilon (validation fills in 1e-5). */
  readonly normEps?: number
  /**
   * Attention kernels: 'full' (absent, the default; validation drops an explicit 'full' so run ids
   * stay as before) keeps [B,NH,T,T] buffers, 'flash' keeps only [B,NH,T] (layers.ts AttentionMode).
   */
  readonly attention?: 'flash' | 'full'
  /**
   * llama only: NKV, the K/V heads of grouped-query attention (divides nHead; each group of
   * nHead / nKvHead query heads shares one K/V head). Absent means nHead (multi-head attention):
   * validation drops an explicit nKvHead equal to nHead, so MHA configs and their run ids stay.
   */
  readonly nKvHead?: number
  /**
   * Activation recomputation: each block keeps only its input from the forward pass and reruns
   * its forward during backward (same kernels, same inputs: bit-identical gradients) for about
   * one more forward of compute. Absent means off (validation drops an explicit false).
   */
  readonly recompute?: true
}

export type ModelArch = 'gpt2' | 'llama'

/** Llama defaults validation fills in. */
export const LLAMA_ROPE_THETA = 10000
export const LLAMA_NORM_EPS = 1e-5

/** The Llama rule for the SwiGLU width: 2/3 of 4C, rounded up to a multiple of 64. */
export function defaultFfnHidden (dModel: number): number {
  return Math.ceil(Math.floor(8 * dModel / 3) / 64) * 64
}

export function isLlama (c: ModelConfig): boolean {
  return c.arch === 'llama'
}

/** NKV: the K/V heads of a config (nKvHead, or nHead: multi-head attention). */
export function kvHeadsOf (c: ModelConfig): number {
  return c.nKvHead ?? c.nHead
}

/** H of a llama config (its ffnHidden, or the default rule for an unvalidated object). */
export function ffnHiddenOf (c: ModelConfig): number {
  return c.ffnHidden ?? defaultFfnHidden(c.dModel)
}

/** A model config field is invalid (not a positive integer, nHead not dividing dModel, ...). */
export class ModelConfigError extends ConfigError {}

/**
 * Byte-level vocabulary of core/data's byte tokenizer: 256 byte values, end-of-text being byte 0.
 * A config for the GPT-2 BPE tokenizer uses 50257.
 */
export const BYTE_VOCAB_SIZE = 256
/** The GPT-2 BPE tokenizer's vocabulary (50,000 merges + 256 bytes + end-of-text). */
export const GPT2_VOCAB_SIZE = 50257

export const MODEL_PRESETS: Readonly<Record<string, ModelConfig>> = Object.freeze({
  /** ~0.9M parameters: tests and the few-minute CPU reference run. */
  tiny: Object.freeze({ vocabSize: BYTE_VOCAB_SIZE, blockSize: 64, nLayer: 4, nHead: 4, dModel: 128 }),
  /** ~4.9M parameters. */
  small: Object.freeze({ vocabSize: BYTE_VOCAB_SIZE, blockSize: 128, nLayer: 6, nHead: 8, dModel: 256 }),
  /** ~30.7M parameters (25.7M of them the two BPE embeddings): GPT-2's vocabulary and context, 6 narrow blocks. */
  'gpt2-30m': Object.freeze({ vocabSize: GPT2_VOCAB_SIZE, blockSize: 1024, nLayer: 6, nHead: 4, dModel: 256 }),
  /**
   * GPT-2 small's shape (12 layers, 12 heads, 768 wide, context 1024, BPE vocabulary): 163.0M
   * parameters here, GPT-2's 124.4M plus the untied LM head (V x C = 38.6M).
   */
  'gpt2-124m': Object.freeze({ vocabSize: GPT2_VOCAB_SIZE, blockSize: 1024, nLayer: 12, nHead: 12, dModel: 768 }),
  /** 19,895,520 parameters (16.1M of them the two BPE embeddings): 12 blocks 160 wide, 5 heads of 32, SwiGLU 448. */
  'llama-20m': llamaPreset(12, 5, 160),
  /** 59,840,640 parameters: 12 blocks 384 wide, 6 heads of 64, SwiGLU 1024. */
  'llama-60m': llamaPreset(12, 6, 384),
  /** 123,818,880 parameters (GPT-2 small's size; 64.3M in the two embeddings): 12 blocks 640 wide, 10 heads of 64, SwiGLU 1728. */
  'llama-125m': llamaPreset(12, 10, 640),
  /** 115,954,560 parameters: llama-125m with grouped-query attention, 2 K/V heads for its 10 query heads (groups of 5). */
  'llama-125m-gqa': Object.freeze({ ...llamaPreset(12, 10, 640), nKvHead: 2 })
})

/** A llama preset: BPE vocabulary, context 1024, the default SwiGLU width, head dim C / NH. */
function llamaPreset (nLayer: number, nHead: number, dModel: number): ModelConfig {
  return Object.freeze({
    arch: 'llama',
    vocabSize: GPT2_VOCAB_SIZE,
    blockSize: 1024,
    nLayer,
    nHead,
    dModel,
    ffnHidden: defaultFfnHidden(dModel),
    ropeTheta: LLAMA_ROPE_THETA,
    normEps: LLAMA_NORM_EPS
  })
}

const FIELDS = ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'dModel'] as const
const LLAMA_FIELDS = ['ffnHidden', 'ropeTheta', 'normEps'] as const
/** `tiedHead` is accepted only as false: the head is always untied (stage 0 and the last stage differ). */
const KNOWN = [...FIELDS, 'arch', ...LLAMA_FIELDS, 'nKvHead', 'tiedHead', 'attention', 'recompute']

/**
 * Checks every field and returns a frozen, normalized copy: gpt2 configs carry exactly the five
 * shape fields (no `arch`; `attention` only when 'flash', `recompute` only when true), llama configs
 * every llama field with its default filled in (but `nKvHead` only when below nHead). Throws
 * ModelConfigError naming the bad field.
 */
export function validateModelConfig (input: unknown): ModelConfig {
  if (input == null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ModelConfigError('model config must be an object')
  }
  const obj = input as Record<string, unknown>
  for (const key of Object.keys(obj)) {
    if (!KNOWN.includes(key)) {
      throw new ModelConfigError(`model config: unknown field "${key}" (expected ${KNOWN.join(', ')})`)
    }
  }
  const arch = obj.arch ?? 'gpt2'
  if (arch !== 'gpt2' && arch !== 'llama') {
    throw new ModelConfigError(`model config: arch must be "gpt2" or "llama", got ${JSON.stringify(obj.arch)}`)
  }
  for (const f of FIELDS) {
    const v = obj[f]
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new ModelConfigError(`model config: ${f} must be a positive integer, got ${JSON.stringify(v)}`)
    }
  }
  if (obj.tiedHead !== undefined && obj.tiedHead !== false) {
    throw new ModelConfigError(`model config: tiedHead must be false (the LM head is untied: the embedding and the head live on different stages), got ${JSON.stringify(obj.tiedHead)}`)
  }
  const cfg = obj as unknown as ModelConfig
  if (cfg.dModel % cfg.nHead !== 0) {
    throw new ModelConfigError(`model config: nHead (${cfg.nHead}) must divide dModel (${cfg.dModel})`)
  }
  if (obj.attention !== undefined && obj.attention !== 'full' && obj.attention !== 'flash') {
    throw new ModelConfigError(`model config: attention must be "full" or "flash", got ${JSON.stringify(obj.attention)}`)
  }
  if (obj.recompute !== undefined && typeof obj.recompute !== 'boolean') {
    throw new ModelConfigError(`model config: recompute must be true or false, got ${JSON.stringify(obj.recompute)}`)
  }
  const shape = {
    vocabSize: cfg.vocabSize, blockSize: cfg.blockSize, nLayer: cfg.nLayer, nHead: cfg.nHead, dModel: cfg.dModel,
    ...(obj.attention === 'flash' ? { attention: 'flash' as const } : {})
  }
  const tail = obj.recompute === true ? { recompute: true as const } : {}
  if (arch === 'gpt2') {
    for (const f of [...LLAMA_FIELDS, 'nKvHead'] as const) {
      if (obj[f] !== undefined) throw new ModelConfigError(`model config: ${f} is a llama field; set "arch": "llama" or remove it`)
    }
    return Object.freeze({ ...shape, ...tail })
  }
  const hd = cfg.dModel / cfg.nHead
  if (hd % 2 !== 0) {
    throw new ModelConfigError(`model config: llama's rotary embedding needs an even head dimension, dModel / nHead = ${hd}`)
  }
  const ffnHidden = obj.ffnHidden ?? defaultFfnHidden(cfg.dModel)
  if (typeof ffnHidden !== 'number' || !Number.isSafeInteger(ffnHidden) || ffnHidden <= 0) {
    throw new ModelConfigError(`model config: ffnHidden must be a positive integer, got ${JSON.stringify(obj.ffnHidden)}`)
  }
  const ropeTheta = obj.ropeTheta ?? LLAMA_ROPE_THETA
  if (typeof ropeTheta !== 'number' || !Number.isFinite(ropeTheta) || ropeTheta <= 1) {
    throw new ModelConfigError(`model config: ropeTheta must be a finite number > 1, got ${JSON.stringify(obj.ropeTheta)}`)
  }
  const normEps = obj.normEps ?? LLAMA_NORM_EPS
  if (typeof normEps !== 'number' || !Number.isFinite(normEps) || normEps <= 0 || normEps >= 1) {
    throw new ModelConfigError(`model config: normEps must be a number in (0, 1), got ${JSON.stringify(obj.normEps)}`)
  }
  const nKvHead = obj.nKvHead ?? cfg.nHead
  if (typeof nKvHead !== 'number' || !Number.isSafeInteger(nKvHead) || nKvHead < 1 || cfg.nHead % nKvHead !== 0) {
    throw new ModelConfigError(`model config: nKvHead must be a positive integer dividing nHead (${cfg.nHead}), got ${JSON.stringify(obj.nKvHead)}`)
  }
  const gqa = nKvHead !== cfg.nHead ? { nKvHead } : {}
  return Object.freeze({ arch: 'llama', ...shape, ffnHidden, ropeTheta, normEps, ...gqa, ...tail })
}

/** A preset by name (`tiny`, `small`, `gpt2-30m`, `gpt2-124m`, `llama-20m`, `llama-60m`, `llama-125m`, `llama-125m-gqa`). */
export function modelPreset (name: string): ModelConfig {
  const preset = Object.hasOwn(MODEL_PRESETS, name) ? MODEL_PRESETS[name] : undefined
  if (preset == null) {
    throw new ModelConfigError(`unknown model preset "${name}" (known: ${Object.keys(MODEL_PRESETS).join(', ')}; or give a .json file)`)
  }
  return preset
}

/**
 * Parses a JSON model config (a file's text; reading the file is the caller's job, so core/model
 * stays free of Node-only modules). `source` names it in error messages.
 */
export function parseModelConfig (json: string, source = 'model config'): ModelConfig {
  let obj: unknown
  try {
    obj = JSON.parse(json)
  } catch (err) {
    throw new ModelConfigError(`${source}: not valid JSON (${(err as Error).message})`, { cause: err })
  }
  try {
    return validateModelConfig(obj)
  } catch (err) {
    if (err instanceof ModelConfigError) throw new ModelConfigError(`${source}: ${err.message}`)
    throw err
  }
}

/**
 * Total number of parameters of the unsplit model (no bottleneck). The LM head is untied (the
 * embedding and the head live on different stages), so this counts V x C more than GPT-2's own
 * figure; `{ tiedHead: true }` leaves the head out, as GPT-2 (and its 124,439,808) counts.
 * llama: per block 2C (two RMSNorm weights) + (C + 2 Ckv) C (q, k, v; Ckv = NKV x C / NH, = C
 * without grouped-query attention) + C^2 (o) + 3HC (gate|up, down); no position table; final norm C.
 */
export function countParameters (c: ModelConfig, opts: { tiedHead?: boolean } = {}): number {
  const C = c.dModel
  const head = opts.tiedHead === true ? 0 : c.vocabSize * C
  if (isLlama(c)) {
    const H = ffnHiddenOf(c)
    const Ckv = kvHeadsOf(c) * C / c.nHead
    return c.vocabSize * C + c.nLayer * (2 * C + (C + 2 * Ckv) * C + C * C + 3 * H * C) + C + head
  }
  const perBlock = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C)
  return c.vocabSize * C + c.blockSize * C + c.nLayer * perBlock + 2 * C + head
}
