// A tokenized corpus: reads a dataset (dataset-reader.ts) as a stream and tokenizes it document by
// document into two in-memory token arrays, train and held-out. The raw text is never held whole:
// at most one document (<= maxDocumentChars) is in memory at a time besides the token arrays.
// Memory: tokens x (1 byte for vocab <= 256, 2 for <= 65536, else 4), plus up to 2x that while the
// arrays grow; maxTokens caps the total (the rest of the dataset is then not read).
import { fileURLToPath } from 'node:url'
import { DataArgumentError } from './data-errors.ts'
import { newReadStats, readDocuments, type ReadOptions, type ReadStats } from './dataset-reader.ts'
import { createTokenizer, type Tokenizer } from './tokenizer.ts'
import { TokenShard, type TokenArray } from './token-shard.ts'
import { unigramCrossEntropy } from './unigram-baseline.ts'

/** The corpus shipped with the package: the King James Bible, 1189 chapters, ~4.2 MB of text (public domain; docs/data.md). */
export function defaultCorpusPath (): string {
  return fileURLToPath(new URL('../../corpus/kjv.txt.gz', import.meta.url))
}

export interface CorpusOptions extends ReadOptions {
  /** File or folder; default defaultCorpusPath(). */
  path?: string
  /** A tokenizer or its name ('byte' default, 'gpt2'). */
  tokenizer?: Tokenizer | string
  /** Stop reading once this many tokens (both splits) are held; default 2^28. */
  maxTokens?: number
}

export interface CorpusStats extends ReadStats {
  path: string
  trainTokens: number
  heldOutTokens: number
  /** maxTokens was reached before the end of the data. */
  truncated: boolean
}

export interface Corpus {
  readonly tokenizer: Tokenizer
  readonly train: TokenShard
  readonly heldOut: TokenShard
  readonly stats: CorpusStats
  /** unigramCrossEntropy(train, heldOut): the held-out nats/token of token frequencies alone. */
  unigramBaseline(): number
}

/** Read, split and tokenize a dataset. Each document's tokens are followed by eot where the document ends a record or file. */
export async function loadCorpus (opts: CorpusOptions = {}): Promise<Corpus> {
  const dataPath = opts.path ?? defaultCorpusPath()
  const tokenizer = typeof opts.tokenizer === 'object' ? opts.tokenizer : await createTokenizer(opts.tokenizer ?? 'byte')
  const maxTokens = opts.maxTokens ?? 2 ** 28
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 1) throw new DataArgumentError(`maxTokens must be a positive integer, got ${maxTokens}`)
  const train = new TokenBuffer(tokenizer.vocabSize)
  const heldOut = new TokenBuffer(tokenizer.vocabSize)
  const stats: CorpusStats = { ...newReadStats(), path: dataPath, trainTokens: 0, heldOutTokens: 0, truncated: false }
  const docs = readDocuments(dataPath, opts, stats)
  for await (const doc of docs) {
    const ids = tokenizer.encode(doc.text)
    const into = doc.heldOut ? heldOut : train
    const room = maxTokens - train.length - heldOut.length
    const n = ids.length + (doc.eot ? 1 : 0)
    if (n > room) {
      into.append(ids.subarray(0, room))
      stats.truncated = true
      await docs.return(undefined)
      break
    }
    into.append(ids)
    if (doc.eot) into.push(tokenizer.eot)
  }
  stats.trainTokens = train.length
  stats.heldOutTokens = heldOut.length
  const trainShard = new TokenShard('train', train.toArray(), tokenizer.vocabSize)
  const heldOutShard = new TokenShard('held-out', heldOut.toArray(), tokenizer.vocabSize)
  return {
    tokenizer,
    train: trainShard,
    heldOut: heldOutShard,
    stats,
    unigramBaseline: () => unigramCrossEntropy(trainShard.tokens, heldOutShard.tokens, tokenizer.vocabSize)
  }
}

/** A growable typed array of the narrowest type for the vocab. */
class TokenBuffer {
  private data: TokenArray
  length = 0

  constructor (private readonly vocabSize: number) {
    this.data = this.make(1 << 16)
  }

  push (id: number): void {
    this.reserve(1)
    this.data[this.length++] = id
  }

  append (ids: Int32Array): void {
    this.reserve(ids.length)
    this.data.set(ids, this.length)
    this.length += ids.length
  }

  toArray (): TokenArray {
    return this.data.subarray(0, this.length)
  }

  private reserve (n: number): void {
    if (this.length + n <= this.data.length) return
    const grown = this.make(Math.max(this.length + n, this.data.length * 2))
    grown.set(this.data.subarray(0, this.length))
    this.data = grown
  }

  private make (n: number): TokenArray {
    return this.vocabSize <= 256 ? new Uint8Array(n) : this.vocabSize <= 65536 ? new Uint16Array(n) : new Int32Array(n)
  }
}
