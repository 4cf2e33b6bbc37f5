// What a trainer reads batches from (TrainData), and the adapter from a loaded corpus to it: the
// data side of training, used by `train --local`, the pipeline's data role and the benches.
import type { Corpus } from './corpus.ts'
import type { Batch } from './token-shard.ts'

/** Where batches come from; both methods must be pure functions of their arguments. */
export interface TrainData {
  trainBatch(step: number, micro: number, B: number, T: number): Batch | Promise<Batch>
  evalBatch(index: number, B: number, T: number): Batch | Promise<Batch>
  /** How many distinct eval batches exist (evals use at most this many). */
  evalBatchCount?(B: number, T: number): number
  /** Identifies the data in checkpoints (path, tokenizer, seed...). */
  readonly description?: Record<string, unknown>
}

/** Batches from a loaded corpus: training windows drawn by (seed, node, step, micro), eval windows in order. */
export function corpusData (corpus: Corpus, seed: number, nodeId = 'local'): TrainData {
  return {
    trainBatch: (step, micro, B, T) => corpus.train.sampleBatch({ seed, nodeId, step, micro }, B, T),
    evalBatch: (i, B, T) => corpus.heldOut.evalBatch(i, B, T),
    evalBatchCount: (B, T) => corpus.heldOut.evalBatchCount(B, T),
    description: { path: corpus.stats.path, tokenizer: corpus.tokenizer.name, nodeId, trainTokens: corpus.stats.trainTokens, heldOutTokens: corpus.stats.heldOutTokens }
  }
}
