// Stage split: the model cut into S contiguous runs of transformer blocks. Stage 0 also owns the
// token (+ position, gpt2) embeddings; the last stage owns the final norm (LayerNorm, or RMSNorm for
// llama), the LM head and the loss. The split is the same for both architectures.
// An optional learned bottleneck of width k narrows every stage boundary (see docs/model.md).
import { ModelConfigError, type ModelConfig } from './config.ts'

export interface StageRange {
  /** s: this stage's index, 0..S-1. */
  readonly index: number
  /** S: number of stages in the split. */
  readonly count: number
  /** First block (inclusive). */
  readonly firstBlock: number
  /** One past the last block (exclusive). */
  readonly endBlock: number
}

/** Everything that fixes one stage's parameters and boundary shapes. */
export interface StageLayout {
  readonly config: ModelConfig
  readonly range: StageRange
  /** k: bottleneck width at stage boundaries; 0 = off (boundary tensors are [B,T,C]). */
  readonly bottleneck: number
}

/**
 * Balanced contiguous split of L blocks into S stages (1 <= S <= L): every stage gets floor(L/S)
 * blocks and the first L mod S stages one more, so the last stage, which also runs the LM head,
 * is never the longer one.
 */
export function splitStages (config: ModelConfig, S: number): StageRange[] {
  const L = config.nLayer
  if (!Number.isSafeInteger(S) || S < 1 || S > L) {
    throw new ModelConfigError(`stage count must be an integer in [1, ${L}] (one block per stage at least), got ${S}`)
  }
  const base = Math.floor(L / S)
  const extra = L % S
  const out: StageRange[] = []
  let first = 0
  for (let s = 0; s < S; s++) {
    const n = base + (s < extra ? 1 : 0)
    out.push(Object.freeze({ index: s, count: S, firstBlock: first, endBlock: first + n }))
    first += n
  }
  return out
}

/** Layouts of every stage of a split, with the same bottleneck width at each boundary. */
export function stageLayouts (config: ModelConfig, S: number, bottleneck = 0): StageLayout[] {
  if (!Number.isSafeInteger(bottleneck) || bottleneck < 0 || bottleneck > config.dModel) {
    throw new ModelConfigError(`bottleneck width must be an integer in [0, ${config.dModel}] (0 = off), got ${bottleneck}`)
  }
  return splitStages(config, S).map(range => Object.freeze({ config, range, bottleneck }))
}

/** The whole model as a single stage (the unsplit reference). */
export function wholeModelLayout (config: ModelConfig): StageLayout {
  return stageLayouts(config, 1)[0]
}

export function isFirstStage (l: StageLayout): boolean { return l.range.index === 0 }
export function isLastStage (l: StageLayout): boolean { return l.range.index === l.range.count - 1 }

/** Channels of the hidden input a non-first stage receives: k with a bottleneck, else C. */
export function boundaryWidth (l: StageLayout): number {
  return l.bottleneck > 0 ? l.bottleneck : l.config.dModel
}
