// A Stage's activations (stage.ts): what one microbatch's backward reads from its forward (a set,
// one per microbatch kept in flight) and the buffers every forward and backward use in turn (shared:
// the backward scratch, the residual gradient, bottleneck buffers). memory-estimate.ts counts both.
import type { ComputeBackend, Tensor } from '../contracts/backend.ts'
import { allocBlockActivations, allocBlockScratch, allocHeadActivations, type BlockActivations, type BlockScratch, type HeadActivations } from './layers.ts'
import { allocLlamaBlockActivations, allocLlamaBlockScratch, type LlamaBlockActivations, type LlamaBlockScratch } from './llama-layers.ts'
import { ffnHiddenOf, isLlama } from './config.ts'
import { boundaryWidth, isFirstStage, isLastStage, type StageLayout } from './stage-split.ts'

/** What one microbatch's backward reads: its forward's saved tensors (one set per kept microbatch). */
export interface Activations {
  tokens: Tensor | null // i32 [B,T] (stage 0)
  input: Tensor // [B,T,C] encoded tokens (stage 0) or [B,T,W] received hidden
  upOut: Tensor | null // [B,T,C] after the bottleneck up-projection
  blocks: Array<BlockActivations | LlamaBlockActivations> // one per block, or one shared set (recompute)
  recompute: boolean
  saved: Tensor[] // recompute: outputs of blocks 0..n-2 [B,T,C] (the next blocks' inputs); else empty
  head: HeadActivations | null
  /** What its latest forward left for backward (null: nothing, or it was given up). */
  pending: { hasTargets: boolean, count: number } | null
}

/** Buffers every microbatch's forward and backward use in turn (not kept between them). */
export interface Shared {
  B: number
  T: number
  scratch: BlockScratch | LlamaBlockScratch
  zeroPos: Tensor | null // [T,C] llama stage 0: the encoder's position rows, all zero
  dposSink: Tensor | null // [T,C] llama stage 0: their gradient, discarded
  dres: Tensor // [B,T,C] residual-stream gradient, walked backward through the blocks
  dinput: Tensor | null // [B,T,W] gradient w.r.t. a bottlenecked input
  downOut: Tensor | null // [B,T,k] bottleneck output
  ddown: Tensor | null // [B,T,k] gradient received for downOut
}


/** The sizes and kinds both allocations read from a stage's layout. */
function dims (layout: StageLayout): { C: number, NH: number, H: number, k: number, llama: boolean, first: boolean, attention: 'full' | 'flash' } {
  const { config } = layout
  return {
    C: config.dModel, NH: config.nHead, H: ffnHiddenOf(config), k: layout.bottleneck, llama: isLlama(config), first: isFirstStage(layout), attention: config.attention ?? 'full'
  }
}

/** The shared buffers of a stage at [B,T]. */
export function allocShared (be: ComputeBackend, layout: StageLayout, B: number, T: number): Shared {
  const { C, NH, H, k, llama, first, attention } = dims(layout)
  const up = !first && k > 0
  const down = !isLastStage(layout) && k > 0
  return {
    B,
    T,
    scratch: llama ? allocLlamaBlockScratch(be, B, T, C, NH, H, attention) : allocBlockScratch(be, B, T, C, NH, attention),
    zeroPos: llama && first ? be.alloc([T, C]) : null,
    dposSink: llama && first ? be.alloc([T, C]) : null,
    dres: be.alloc([B, T, C]),
    dinput: up ? be.alloc([B, T, k]) : null,
    downOut: down ? be.alloc([B, T, k]) : null,
    ddown: down ? be.alloc([B, T, k]) : null
  }
}

/** One microbatch's saved tensors at [B,T]. */
export function allocSet (be: ComputeBackend, layout: StageLayout, B: number, T: number): Activations {
  const { C, NH, H, k, llama, first, attention } = dims(layout)
  const { config } = layout
  const W = boundaryWidth(layout)
  const nBlocks = layout.range.endBlock - layout.range.firstBlock
  const recompute = config.recompute === true
  return {
    recompute,
    saved: recompute ? Array.from({ length: nBlocks - 1 }, () => be.alloc([B, T, C])) : [],
    tokens: first ? be.alloc([B, T], 'i32') : null,
    input: be.alloc(first ? [B, T, C] : [B, T, W]),
    upOut: !first && k > 0 ? be.alloc([B, T, C]) : null,
    blocks: Array.from({ length: recompute ? 1 : nBlocks }, () => llama ? allocLlamaBlockActivations(be, B, T, C, NH, H, attention) : allocBlockActivations(be, B, T, C, NH, attention)),
    head: isLastStage(layout) ? allocHeadActivations(be, B, T, C, config.vocabSize) : null,
    pending: null
  }
}

export function setTensors (a: Activations): Array<Tensor | null> {
  return [a.tokens, a.input, a.upOut, ...a.saved, ...a.blocks.flatMap(b => Object.values(b) as Tensor[]), ...(a.head != null ? Object.values(a.head) as Tensor[] : [])]
}

export function sharedTensors (sh: Shared): Array<Tensor | null> {
  return [sh.dres, sh.dinput, sh.downOut, sh.ddown, sh.zeroPos, sh.dposSink, ...Object.values(sh.scratch) as Tensor[]]
}

/** Output [B,T,C] of the stage's block l of n: its own residual3, or with recompute a saved copy (the last block's stays in the shared set). */
export function blockOutput (a: Activations, l: number, n: number): Tensor {
  if (!a.recompute) return a.blocks[l].residual3
  return l === n - 1 ? a.blocks[0].residual3 : a.saved[l]
}
