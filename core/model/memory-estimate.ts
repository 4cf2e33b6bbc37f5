// Memory a node needs to train one stage, from the run's shapes alone (so every node of a run
// computes the same figure for every stage: the scheduler's rule compares them with the budgets
// nodes gossip). Bytes, f32 everywhere (i32 token ids are 4 bytes too). P = the stage's parameters
// (stageParamSpecs), B = batch (sequences per microbatch), T = sequence length, C = width, NH =
// heads, V = vocabulary, W = boundary width (C, or the bottleneck k), L_s = the stage's blocks.
//
//   weights      4 P
//   gradients    4 P                                   (ParameterSet: one buffer per parameter)
//   optimizer    8 P                                   (AdamW: m and v)
//   activations  4 x ( L_s x (16 BTC + 4 BT + 2 B NH T^2)   saved per block (layers.ts BlockActivations,
//                                                           llm.c's layout: the attention keeps preatt
//                                                           and att, [B,NH,T,T] each)
//                     + 14 BTC + 2 B NH T^2                 backward scratch, shared by the blocks
//                     + BTC (dres) + the stage's input      stage 0: BT ids + BTC; others: BTW
//                     + bottleneck buffers                  up: BTC + BTk; down: 2 BTk (stage.ts)
//                     + head (last stage) 2 BTC + 3 BTV + 4 BT   lnf, dlnf, logits, probs, dlogits, ...
//                   ) + 8 k C per bottleneck projection     (its constant identity part and W + E)
//   workspace    8 BT x max(4C, V on the last stage)    the CPU backend's matmul-backward scratch: a
//                                                       packed copy of the widest output gradient,
//                                                       grown by doubling (so up to twice that)
//   margin       RUNTIME_BASE_BYTES                     the node's process besides the tensors (768 MiB)
//                + 8 P                                  host copies of the weights (averaging downloads
//                                                       them and flattens them into one vector)
//                + MARGIN_FRACTION x the tensors above  allocator slack, in-flight boundary arrays
// llama (config.arch, llama-layers.ts; H = ffnHidden): a block saves 9 BTC + 3 BTH + 2 BT + 2 B NH T^2,
// the shared scratch is 9 BTC + 3 BTH + 2 B NH T^2, stage 0 adds 2 TC (the zero position rows and
// their discarded gradient) and the workspace is 8 BT x max(2H, 3C, V on the last stage).
// attention 'flash' (config.attention): no [B,NH,T,T] buffers; each block saves lse [B,NH,T] instead
// of preatt and att, and the scratch has no dpreatt/datt: every 2 B NH T^2 above becomes B NH T (the
// scratch's is then counted once more than it needs: B NH T floats, noise beside the rest).
// grouped-query attention (llama, nKvHead < nHead): P shrinks by the K/V rows; the stage adds its
// weight expansion (gqa.ts), 9 C^2 + 5 C floats shared by its blocks.
// recompute (config.recompute): the blocks share ONE saved set, and each of the other L_s - 1 blocks
// keeps only its output [B,T,C] (the next block's input): L_s x (saved set) becomes
// (saved set) + (L_s - 1) BTC.
// kept sets (opts.keptSets = k, default 1; stage.ts `keep`): a stage with several microbatches in
// flight keeps each one's saved set until its backward: the blocks' saved sets, the stage's input,
// the up-projection's output and the head's buffers count k times; the backward scratch, dres and
// the bottleneck gradients (shared by all) once. k = 1 is the formula above.
// total = the sum. Reference: test/model-memory.test.ts and test/model-recompute.test.ts check it
// against hand computations and a measured peak (docs/model.md has the figures).
import { ConfigError } from '../errors.ts'
import { ffnHiddenOf, isLlama, kvHeadsOf, type ModelConfig } from './config.ts'
import { kvExpansionFloats } from './gqa.ts'
import { numel, stageParamSpecs } from './params.ts'
import { isFirstStage, isLastStage, stageLayouts, type StageLayout, type StageRange } from './stage-split.ts'

/**
 * A training node's memory besides its stage's tensors, bytes: Node, libp2p, the CPU backend's worker
 * threads, the corpus, and the garbage its pipeline makes between collections. Measured (docs/model.md):
 * 266 MiB idle, 525-790 MiB of RSS beyond the tensors while training small and tiny.
 */
export const RUNTIME_BASE_BYTES = 768 * 2 ** 20
/** Share of the tensors added for allocator slack and transient host arrays. */
export const MARGIN_FRACTION = 0.1
/** Largest memory budget accepted (1 PiB): a bound on what a heartbeat may claim. */
export const MAX_MEMORY_BYTES = 2 ** 50

export interface MemoryEstimateOptions {
  /** B: sequences per microbatch. */
  readonly batch: number
  /** T: tokens per sequence. */
  readonly seqLen: number
  /** Only AdamW exists (two moments per parameter). */
  readonly optimizer?: 'adamw'
  /** k when `layout` is a bare StageRange (a StageLayout carries its own); default 0. */
  readonly bottleneck?: number
  /** Microbatches whose activations are kept at once (stage.ts `keep`); default 1. */
  readonly keptSets?: number
}

/** Bytes by component; `total` is what a budget must cover. */
export interface StageMemoryEstimate {
  readonly parameters: number
  readonly weights: number
  readonly gradients: number
  readonly optimizer: number
  readonly activations: number
  readonly workspace: number
  readonly margin: number
  readonly total: number
}

/** A memory size (`--max-memory`) is not a positive size this node can mean. */
export class MemorySizeError extends ConfigError {
  override readonly code = 'ERR_MEMORY_SIZE'
}

/** A stage needs more memory than the node's budget. */
export class StageMemoryError extends ConfigError {
  override readonly code = 'ERR_STAGE_MEMORY'
  constructor (readonly stage: number, readonly estimate: StageMemoryEstimate, readonly budget: number) {
    super(`stage ${stage} needs an estimated ${formatBytes(estimate.total)} to train (weights ${formatBytes(estimate.weights)}, ` +
      `gradients ${formatBytes(estimate.gradients)}, AdamW ${formatBytes(estimate.optimizer)}, activations ${formatBytes(estimate.activations)}, ` +
      `workspace ${formatBytes(estimate.workspace)}, ` +
      `margin ${formatBytes(estimate.margin)}) but --max-memory is ${formatBytes(budget)}; raise the budget, use more stages, or a smaller --batch / --seq-len`)
  }
}

/** The estimate of training one stage (see the header for the formula). */
export function estimateStageMemory (config: ModelConfig, layout: StageLayout | StageRange, opts: MemoryEstimateOptions): StageMemoryEstimate {
  const { batch: B, seqLen: T } = opts
  if (!Number.isSafeInteger(B) || B < 1) throw new ConfigError(`memory estimate: batch must be a positive integer, got ${B}`)
  if (!Number.isSafeInteger(T) || T < 1) throw new ConfigError(`memory estimate: seqLen must be a positive integer, got ${T}`)
  if (opts.optimizer != null && opts.optimizer !== 'adamw') throw new ConfigError(`memory estimate: unknown optimizer ${String(opts.optimizer)} (only adamw)`)
  const full: StageLayout = 'range' in layout
    ? { ...layout, config }
    : { config, range: layout, bottleneck: opts.bottleneck ?? 0 }
  const { range, bottleneck: k } = full
  const C = config.dModel
  const NH = config.nHead
  const V = config.vocabSize
  const P = stageParamSpecs(full).reduce((a, s) => a + numel(s.shape), 0)
  const first = isFirstStage(full)
  const last = isLastStage(full)
  const up = !first && k > 0
  const down = !last && k > 0
  const BT = B * T
  const att = config.attention === 'flash' ? B * NH * T / 2 : B * NH * T * T // counted twice: 2 att
  const blocks = range.endBlock - range.firstBlock
  const llama = isLlama(config)
  const H = ffnHiddenOf(config)
  const perBlock = llama ? 9 * BT * C + 3 * BT * H + 2 * BT + 2 * att : 16 * BT * C + 4 * BT + 2 * att
  const kept = opts.keptSets ?? 1
  if (!Number.isSafeInteger(kept) || kept < 1) throw new ConfigError(`memory estimate: keptSets must be a positive integer, got ${String(kept)}`)
  // one microbatch's saved set (stage-activations.ts allocSet), counted `kept` times
  let set = config.recompute === true ? perBlock + (blocks - 1) * BT * C : blocks * perBlock
  set += first ? BT + BT * C : BT * (k > 0 ? k : C)
  if (up) set += BT * C
  if (last) set += 2 * BT * C + 3 * BT * V + 4 * BT
  // the shared buffers (allocShared) and constants, once
  let floats = kept * set
  floats += llama
    ? 9 * BT * C + 3 * BT * H + 2 * att + BT * C + (first ? 2 * T * C : 0)
    : 14 * BT * C + 2 * att + BT * C
  if (llama && kvHeadsOf(config) < NH) floats += kvExpansionFloats(C)
  if (up) floats += BT * k + 2 * k * C
  if (down) floats += 2 * BT * k + 2 * k * C
  const weights = 4 * P
  const gradients = 4 * P
  const optimizer = 8 * P
  const activations = 4 * floats
  const workspace = 8 * BT * Math.max(llama ? Math.max(2 * H, 3 * C) : 4 * C, last ? V : 0)
  const tensors = weights + gradients + optimizer + activations + workspace
  const margin = Math.ceil(RUNTIME_BASE_BYTES + 8 * P + MARGIN_FRACTION * tensors)
  return { parameters: P, weights, gradients, optimizer, activations, workspace, margin, total: tensors + margin }
}

/**
 * How many microbatches' activations a stage keeps (stage.ts `keep`): `max` (its microbatches in
 * flight) where the budget holds them, else the most that fit, at least 1 (one set is what the
 * budget check itself counts: below that the stage does not fit at all). No budget: `max`.
 */
export function keptSetsThatFit (config: ModelConfig, layout: StageLayout, opts: MemoryEstimateOptions, max: number, budget: number | undefined): number {
  if (!Number.isSafeInteger(max) || max < 1) throw new ConfigError(`kept activation sets: max must be a positive integer, got ${max}`)
  if (budget == null) return max
  let k = 1
  while (k < max && estimateStageMemory(config, layout, { ...opts, keptSets: k + 1 }).total <= budget) k++
  return k
}

/** Estimated totals (bytes) of every stage of an even split of S stages with bottleneck k (0: none). */
export function stageMemoryTotals (config: ModelConfig, S: number, k: number, opts: MemoryEstimateOptions): number[] {
  return stageLayouts(config, S, k).map(l => estimateStageMemory(config, l, opts).total)
}

/** Throws StageMemoryError when the estimate is over `budget` bytes (no budget: always fits). */
export function checkStageFits (estimate: StageMemoryEstimate, stage: number, budget: number | undefined): void {
  if (budget != null && estimate.total > budget) throw new StageMemoryError(stage, estimate, budget)
}

const UNITS: Readonly<Record<string, number>> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 }

/**
 * Parses a memory size: a number of bytes, or a number with a binary unit K, M, G, T (also written
 * KiB/KB, MiB/MB, ...; all powers of 1024, as `docker --memory` reads them): 512M, 2G, 1.5GiB.
 * Throws MemorySizeError for anything else, zero, or more than MAX_MEMORY_BYTES.
 */
export function parseMemorySize (text: string | number): number {
  const s = String(text).trim()
  const m = /^(\d+(?:\.\d+)?|\.\d+)\s*([KMGTP]?)(i?B)?$/i.exec(s)
  if (m == null || (m[2] === '' && m[3] != null && m[3].toLowerCase() !== 'b')) {
    throw new MemorySizeError(`memory size "${s}" is not a size: give bytes or a number with K, M, G or T (powers of 1024), e.g. 512M or 2G`)
  }
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2].toUpperCase()])
  if (!(bytes >= 1)) throw new MemorySizeError(`memory size "${s}" is zero; give a positive size, e.g. 512M`)
  if (bytes > MAX_MEMORY_BYTES) throw new MemorySizeError(`memory size "${s}" is more than ${formatBytes(MAX_MEMORY_BYTES)}`)
  return bytes
}

/** 1536 -> "1.5 KiB"; binary units, three significant digits. */
export function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let i = 0
  let v = n
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${n} B` : `${Number(v.toPrecision(3))} ${units[i]}`
}
