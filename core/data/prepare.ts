// `layerswarm data prepare`: text / JSONL files -> token shards + manifest.json (docs/data.md).
// Streaming throughout: the input is read as documents (dataset-reader.ts), each document is
// tokenized and appended to its split's current shard, and a shard is written (with its SHA-256)
// once it holds shardTokens tokens. Memory: one shard buffer per split plus one document.
//
// The token stream and the split are exactly loadCorpus()'s with heldOutFraction = valFraction:
// a document goes to val when cyrb53(text, splitSeed) / 2^53 < valFraction (by document, so the
// split is the same on every machine and in any file order), and end-of-text follows each JSONL
// record and each text file. Shards are cut at exactly shardTokens tokens, so a document may span
// two shards; the sampler never draws a window across a shard boundary (shard-set.ts).
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, rm, rmdir, stat } from 'node:fs/promises'
import path from 'node:path'
import { pipeline, type Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { writeFileAtomic } from '../files.ts'
import { CorpusTooSmallError, DataArgumentError, DatasetReadError, InvalidUtf8Error, MalformedRecordError, NoDocumentsError, OutputNotEmptyError } from './data-errors.ts'
import { listDataFiles, newReadStats, readDocuments, type DataFile } from './dataset-reader.ts'
import { dataIdOf, MANIFEST_FILE, PREPARED_FORMAT, PREPARED_VERSION, type PreparedContent, type PreparedManifest, type ShardEntry } from './prepared-manifest.ts'
import { checkTokenWidth, encodeShardHeader, encodeTokens, tokenWidthFor, type TokenWidth } from './shard-format.ts'
import { createTokenizer, type Tokenizer } from './tokenizer.ts'

export interface PrepareOptions {
  /** A text/JSONL file or a folder of them (walked recursively in sorted order). */
  readonly input: string
  /** Output folder: created, or an existing empty one. */
  readonly out: string
  /** A tokenizer or its name: 'byte' (default) or 'gpt2'. */
  readonly tokenizer?: Tokenizer | string
  /** Tokens per shard file; default 2^24 (32 MiB of uint16). */
  readonly shardTokens?: number
  /** Share of documents in the val split, in [0, 1); default 0.01. */
  readonly valFraction?: number
  /** Salt of the split hash; default 0. */
  readonly splitSeed?: number
  /** Bytes per token; default the narrowest for the vocabulary (2 up to 65536 tokens). */
  readonly tokenWidth?: number
  /** JSONL field holding the text; default 'text'. */
  readonly textField?: string
  readonly signal?: AbortSignal
  /** Called after each shard is written. */
  readonly onShard?: (split: 'train' | 'val', shard: ShardEntry) => void
}

export interface PrepareResult {
  readonly dir: string
  readonly manifest: PreparedManifest
}

export const DEFAULT_SHARD_TOKENS = 1 << 24

/** Tokenizes `input` into shards under `out`; on any error the files it wrote are removed again. */
export async function prepareDataset (opts: PrepareOptions): Promise<PrepareResult> {
  const shardTokens = opts.shardTokens ?? DEFAULT_SHARD_TOKENS
  if (!Number.isSafeInteger(shardTokens) || shardTokens < 1 || shardTokens > 2 ** 30) throw new DataArgumentError(`shard tokens must be an integer in 1..${2 ** 30}, got ${shardTokens}`)
  const valFraction = opts.valFraction ?? 0.01
  if (!(valFraction >= 0 && valFraction < 1)) throw new DataArgumentError(`val fraction must be in [0, 1), got ${valFraction}`)
  const splitSeed = opts.splitSeed ?? 0
  const textField = opts.textField ?? 'text'
  const tokenizer = typeof opts.tokenizer === 'object' ? opts.tokenizer : await createTokenizer(opts.tokenizer ?? 'byte')
  const width = checkTokenWidth(tokenizer.vocabSize, opts.tokenWidth ?? tokenWidthFor(tokenizer.vocabSize))
  const files = await listDataFiles(opts.input)
  const dir = path.resolve(opts.out)
  const createdDir = await claimOutput(dir)
  const writers = { train: new SplitWriter(dir, 'train', width, shardTokens, tokenizer.vocabSize, opts.onShard), val: new SplitWriter(dir, 'val', width, shardTokens, tokenizer.vocabSize, opts.onShard) }
  try {
    for (const f of files) await checkUtf8(f, opts.signal)
    const stats = newReadStats()
    const docs = readDocuments(opts.input, { heldOutFraction: valFraction, splitSeed, textField, signal: opts.signal }, stats)
    try {
      for await (const doc of docs) {
        if (stats.malformedLines > 0) throw new MalformedRecordError(stats.firstMalformed ?? opts.input, textField)
        const w = doc.heldOut ? writers.val : writers.train
        await w.append(tokenizer.encode(doc.text))
        if (doc.eot) await w.append(Int32Array.of(tokenizer.eot))
      }
    } catch (err) {
      if (err instanceof NoDocumentsError && stats.malformedLines > 0) throw new MalformedRecordError(stats.firstMalformed ?? opts.input, textField)
      throw err
    }
    if (stats.malformedLines > 0) throw new MalformedRecordError(stats.firstMalformed ?? opts.input, textField)
    await writers.train.flush()
    await writers.val.flush()
    if (writers.train.tokens === 0) throw new CorpusTooSmallError(`the train split of ${opts.input}`, 0, 1)
    const content: PreparedContent = {
      format: PREPARED_FORMAT,
      version: PREPARED_VERSION,
      tokenizer: tokenizer.name,
      vocabSize: tokenizer.vocabSize,
      eot: tokenizer.eot,
      tokenWidth: width,
      splits: { train: writers.train.entry(), val: writers.val.entry() }
    }
    const manifest: PreparedManifest = {
      dataId: dataIdOf(content),
      content,
      info: {
        shardTokens,
        valFraction,
        splitSeed,
        files: stats.files,
        documents: stats.documents,
        valDocuments: stats.heldOutDocuments,
        bytes: stats.bytes,
        unigramEvalLoss: unigramFromCounts(writers.train.counts, writers.val.counts)
      }
    }
    // Written last: a folder without manifest.json is never taken for prepared data.
    await writeFileAtomic(path.join(dir, MANIFEST_FILE), new TextEncoder().encode(JSON.stringify(manifest, null, 2) + '\n'))
    return { dir, manifest }
  } catch (err) {
    for (const f of [...writers.train.files, ...writers.val.files]) await rm(path.join(dir, f), { force: true })
    if (createdDir) await rmdir(dir).catch(() => {})
    throw err
  }
}

/** Creates `dir`, or accepts an existing empty folder; returns whether it created it. */
async function claimOutput (dir: string): Promise<boolean> {
  const info = await stat(dir).catch(() => undefined)
  if (info == null) {
    await mkdir(dir, { recursive: true })
    return true
  }
  if (!info.isDirectory() || (await readdir(dir)).length > 0) throw new OutputNotEmptyError(dir)
  return false
}

/** One split's shards: a buffer of shardTokens tokens, written out as a shard file when full. */
class SplitWriter {
  readonly files: string[] = []
  readonly counts: Float64Array
  private readonly shards: ShardEntry[] = []
  private readonly buf: Uint16Array | Uint32Array
  private n = 0
  tokens = 0

  constructor (
    private readonly dir: string,
    private readonly name: 'train' | 'val',
    private readonly width: TokenWidth,
    shardTokens: number,
    private readonly vocabSize: number,
    private readonly onShard?: (split: 'train' | 'val', shard: ShardEntry) => void
  ) {
    this.buf = width === 2 ? new Uint16Array(shardTokens) : new Uint32Array(shardTokens)
    this.counts = new Float64Array(vocabSize)
  }

  async append (ids: Int32Array): Promise<void> {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]
      // a tokenizer bug would otherwise be truncated silently by the typed array
      if (!(id >= 0 && id < this.vocabSize)) throw new DataArgumentError(`the tokenizer produced id ${id}, outside its vocabulary of ${this.vocabSize}`)
      this.counts[id]++
    }
    let at = 0
    while (at < ids.length) {
      const take = Math.min(ids.length - at, this.buf.length - this.n)
      this.buf.set(ids.subarray(at, at + take), this.n)
      this.n += take
      at += take
      if (this.n === this.buf.length) await this.flush()
    }
  }

  async flush (): Promise<void> {
    if (this.n === 0) return
    const file = `${this.name}-${String(this.shards.length).padStart(6, '0')}.bin`
    const header = encodeShardHeader({ width: this.width, count: this.n, vocabSize: this.vocabSize })
    const body = encodeTokens(this.buf.subarray(0, this.n))
    this.files.push(file)
    const fh = await open(path.join(this.dir, file), 'wx')
    try {
      await fh.writeFile(header)
      await fh.writeFile(body)
    } finally {
      await fh.close()
    }
    const entry: ShardEntry = { file, tokens: this.n, bytes: header.length + body.length, sha256: createHash('sha256').update(header).update(body).digest('hex') }
    this.shards.push(entry)
    this.tokens += this.n
    this.n = 0
    this.onShard?.(this.name, entry)
  }

  entry (): { tokens: number, shards: ShardEntry[] } {
    return { tokens: this.tokens, shards: [...this.shards] }
  }
}

/** unigramCrossEntropy (unigram-baseline.ts) from token counts: add-one smoothing, nats/token; null with no val tokens. */
export function unigramFromCounts (train: Float64Array, val: Float64Array): number | null {
  const V = train.length
  let nTrain = 0
  let nVal = 0
  for (let v = 0; v < V; v++) { nTrain += train[v]; nVal += val[v] }
  if (nVal === 0) return null
  const logDen = Math.log(nTrain + V)
  let sum = 0
  for (let v = 0; v < V; v++) if (val[v] > 0) sum += val[v] * (logDen - Math.log(train[v] + 1))
  return sum / nVal
}

/** Streams a file (gunzipped for .gz) through a UTF-8 validator; the offset is of the (decompressed) bytes. */
export async function checkUtf8 (file: DataFile, signal?: AbortSignal): Promise<void> {
  const raw = createReadStream(file.path, { highWaterMark: 1 << 20 })
  const input: Readable = file.gzip ? pipeline(raw, createGunzip(), () => {}) : raw
  const v = new Utf8Validator()
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      signal?.throwIfAborted()
      const bad = v.push(chunk)
      if (bad >= 0) throw new InvalidUtf8Error(file.path, bad)
    }
    const bad = v.end()
    if (bad >= 0) throw new InvalidUtf8Error(file.path, bad)
  } catch (err) {
    if (err instanceof InvalidUtf8Error || (err as Error).name === 'AbortError') throw err
    throw new DatasetReadError(file.path, err)
  } finally {
    raw.destroy()
  }
}

/** Strict UTF-8 (WHATWG / RFC 3629: no overlongs, surrogates or code points above U+10FFFF), fed in chunks. */
export class Utf8Validator {
  private offset = 0
  private needed = 0
  private lower = 0x80
  private upper = 0xBF
  private seqStart = 0

  /** The byte offset where the first invalid sequence starts, or -1. */
  push (bytes: Uint8Array): number {
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]
      const at = this.offset + i
      if (this.needed === 0) {
        if (b < 0x80) continue
        this.seqStart = at
        if (b >= 0xC2 && b <= 0xDF) this.needed = 1
        else if (b >= 0xE0 && b <= 0xEF) {
          this.needed = 2
          if (b === 0xE0) this.lower = 0xA0
          if (b === 0xED) this.upper = 0x9F
        } else if (b >= 0xF0 && b <= 0xF4) {
          this.needed = 3
          if (b === 0xF0) this.lower = 0x90
          if (b === 0xF4) this.upper = 0x8F
        } else return at
        continue
      }
      if (b < this.lower || b > this.upper) return this.seqStart
      this.lower = 0x80
      this.upper = 0xBF
      this.needed--
    }
    this.offset += bytes.length
    return -1
  }

  /** At the end of the input: the start of a truncated sequence, or -1. */
  end (): number {
    return this.needed > 0 ? this.seqStart : -1
  }
}
