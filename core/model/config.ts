// GPT model configuration: the architecture hyperparameters, named presets, JSON loading and
// validation. Architecture is GPT-2 (learned token + position embeddings, pre-LayerNorm blocks,
// causal multi-head attention, 4x GELU MLP, final LayerNorm) with an UNTIED LM head, so the
// embedding (stage 0) and the head (last stage) can live on different nodes.
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
  'gpt2-124m': Object.freeze({ vocabSize: GPT2_VOCAB_SIZE, blockSize: 1024, nLayer: 12, nHead: 12, dModel: 768 })
})

const FIELDS = ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'dModel'] as const

/** Checks every field and returns a frozen copy; throws ModelConfigError naming the bad field. */
export function validateModelConfig (input: unknown): ModelConfig {
  if (input == null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ModelConfigError('model config must be an object')
  }
  const obj = input as Record<string, unknown>
  for (const key of Object.keys(obj)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      throw new ModelConfigError(`model config: unknown field "${key}" (expected ${FIELDS.join(', ')})`)
    }
  }
  for (const f of FIELDS) {
    const v = obj[f]
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new ModelConfigError(`model config: ${f} must be a positive integer, got ${JSON.stringify(v)}`)
    }
  }
  const cfg = obj as unknown as ModelConfig
  if (cfg.dModel % cfg.nHead !== 0) {
    throw new ModelConfigError(`model config: nHead (${cfg.nHead}) must divide dModel (${cfg.dModel})`)
  }
  return Object.freeze({
    vocabSize: cfg.vocabSize,
    blockSize: cfg.blockSize,
    nLayer: cfg.nLayer,
    nHead: cfg.nHead,
    dModel: cfg.dModel
  })
}

/** A preset by name (`tiny`, `small`, `gpt2-30m`, `gpt2-124m`). */
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
 */
export function countParameters (c: ModelConfig, opts: { tiedHead?: boolean } = {}): number {
  const C = c.dModel
  const perBlock = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C)
  return c.vocabSize * C + c.blockSize * C + c.nLayer * perBlock + 2 * C + (opts.tiedHead === true ? 0 : c.vocabSize * C)
}
