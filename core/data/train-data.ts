// What a trainer reads batches from (TrainData), and the adapters to it from a loaded corpus
// (corpusData) or from text files or a prepared shard folder (loadTrainData): the data side of
// training, used by `train --local`, the pipeline's data role and the benches.
import { ConfigError } from '../errors.ts'
import { loadCorpus, type Corpus } from './corpus.ts'
import { DataArgumentError, DataIdMismatchError, PreparedDataError } from './data-errors.ts'
import { isPreparedFolder } from './prepared-manifest.ts'
import { ShardSet } from './shard-set.ts'
import type { Batch } from './token-shard.ts'
import { createTokenizer, type Tokenizer } from './tokenizer.ts'

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

/** What a trainer needs of its data, from text files or a prepared shard folder (loadTrainData). */
export interface LoadedTrainData {
  readonly data: TrainData
  readonly tokenizer: Tokenizer
  readonly path: string
  readonly trainTokens: number
  readonly heldOutTokens: number
  /** The prepared folder's data id (prepared-manifest.ts); undefined for text files. */
  readonly dataId?: string
  /** Held-out nats/token of the unigram model (unigram-baseline.ts). */
  unigramBaseline(): number
  /** Closes shard files (prepared folders). */
  close(): void
}

export interface LoadTrainDataOptions {
  /** Text/JSONL file or folder, or a prepared folder (with manifest.json); default the shipped corpus. */
  readonly path?: string
  /** Tokenizer name; for a prepared folder, it must be the folder's when given. */
  readonly tokenizer?: string
  readonly seed: number
  readonly nodeId?: string
  /** The run's pinned data id (run manifest data.dataId): other data is refused (DataIdMismatchError). */
  readonly dataId?: string
}

/** A prepared folder is read lazily (ShardSet); text files are loaded and tokenized (loadCorpus). */
export async function loadTrainData (o: LoadTrainDataOptions): Promise<LoadedTrainData> {
  const nodeId = o.nodeId ?? 'local'
  if (o.path != null && await isPreparedFolder(o.path)) {
    const set = await ShardSet.open(o.path, { expectDataId: o.dataId })
    const c = set.manifest.content
    if (o.tokenizer != null && o.tokenizer !== c.tokenizer) throw new ConfigError(`${o.path} was prepared with the ${c.tokenizer} tokenizer, not ${o.tokenizer}`)
    const tokenizer = await createTokenizer(c.tokenizer)
    if (tokenizer.vocabSize !== c.vocabSize || tokenizer.eot !== c.eot) throw new PreparedDataError(o.path, `says the ${c.tokenizer} tokenizer has ${c.vocabSize} tokens (eot ${c.eot}), this build's has ${tokenizer.vocabSize} (eot ${tokenizer.eot})`)
    const unigram = set.manifest.info?.unigramEvalLoss
    return {
      data: {
        trainBatch: async (step, micro, B, T) => await set.train.sampleBatch({ seed: o.seed, nodeId, step, micro }, B, T),
        evalBatch: async (i, B, T) => await set.val.evalBatch(i, B, T),
        evalBatchCount: (B, T) => set.val.evalBatchCount(B, T),
        description: { path: set.dir, dataId: set.dataId, tokenizer: c.tokenizer, nodeId, trainTokens: c.splits.train.tokens, heldOutTokens: c.splits.val.tokens }
      },
      tokenizer,
      path: set.dir,
      trainTokens: c.splits.train.tokens,
      heldOutTokens: c.splits.val.tokens,
      dataId: set.dataId,
      unigramBaseline: () => {
        if (typeof unigram !== 'number') throw new DataArgumentError(`${o.path} has no val tokens: prepare it with a larger --val-fraction`)
        return unigram
      },
      close: () => { set.close() }
    }
  }
  if (o.dataId != null) throw new DataIdMismatchError(o.dataId, undefined, o.path ?? 'the shipped corpus')
  const corpus = await loadCorpus({ path: o.path, tokenizer: o.tokenizer ?? 'byte' })
  return {
    data: corpusData(corpus, o.seed, nodeId),
    tokenizer: corpus.tokenizer,
    path: corpus.stats.path,
    trainTokens: corpus.stats.trainTokens,
    heldOutTokens: corpus.stats.heldOutTokens,
    unigramBaseline: () => corpus.unigramBaseline(),
    close: () => {}
  }
}
