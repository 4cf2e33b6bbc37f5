// The data pipeline: where training text enters a node. dataset-reader streams documents from
// files, tokenizer turns them into ids, corpus builds the train / held-out token arrays, token-shard
// cuts reproducible batches from them, unigram-baseline gives the loss to beat, train-data adapts a
// corpus to the batches a trainer reads. prepare writes token shards (shard-format) with a
// manifest of their hashes (prepared-manifest); shard-set reads them lazily.
export * from './data-errors.ts'
export * from './tokenizer.ts'
export * from './dataset-reader.ts'
export * from './corpus.ts'
export * from './token-shard.ts'
export * from './unigram-baseline.ts'
export * from './train-data.ts'
export * from './shard-format.ts'
export * from './prepared-manifest.ts'
export * from './prepare.ts'
export * from './shard-set.ts'
export { cyrb53, fnv1a64, splitmix64, below } from './prng.ts'
