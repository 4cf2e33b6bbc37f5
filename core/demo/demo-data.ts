// What the demo's own process reads of the training data: the tokenizer (a preset's vocabulary and
// the sample's text), the held-out batches it evaluates the assembled model on, and the unigram
// baseline. Text files and prepared token shards (`layerswarm data prepare`) alike, through
// loadTrainData: the same data, split and batches the nodes read.
import type { Batch } from '../data/token-shard.ts'
import type { Tokenizer } from '../data/tokenizer.ts'
import { loadTrainData } from '../data/train-data.ts'

export interface DemoData {
  readonly tokenizer: Tokenizer
  readonly heldOut: {
    evalBatch(index: number, B: number, T: number): Batch | Promise<Batch>
    evalBatchCount(B: number, T: number): number
  }
  readonly stats: { readonly path: string, readonly trainTokens: number, readonly heldOutTokens: number }
  /** Held-out nats/token of token frequencies alone; throws when there is no held-out split. */
  unigramBaseline(): number
  /** The prepared folder's data id, when the data is one. */
  readonly dataId?: string
  close(): void
}

/** Loads `path` (undefined: the shipped corpus) with `tokenizer` (undefined: byte, or a prepared folder's own). */
export async function loadDemoData (path: string | undefined, tokenizer: string | undefined, seed: number): Promise<DemoData> {
  const d = await loadTrainData({ path, tokenizer, seed })
  return {
    tokenizer: d.tokenizer,
    heldOut: {
      evalBatch: (i, B, T) => d.data.evalBatch(i, B, T),
      evalBatchCount: (B, T) => d.data.evalBatchCount?.(B, T) ?? 0
    },
    stats: { path: d.path, trainTokens: d.trainTokens, heldOutTokens: d.heldOutTokens },
    unigramBaseline: () => d.unigramBaseline(),
    ...(d.dataId != null ? { dataId: d.dataId } : {}),
    close: () => { d.close() }
  }
}
