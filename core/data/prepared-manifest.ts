// manifest.json of a prepared dataset (`layerswarm data prepare`): what the shards hold and their
// SHA-256s. Its `content` is what identifies the data: the data id is the hex SHA-256 of
// content's canonical JSON (sorted keys, no whitespace; core/run/manifest.ts), so two folders with
// equal tokens, tokenizer and sharding have equal ids on any machine. `info` describes how the data
// was made (counts, split fraction, unigram baseline) and is not hashed.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { canonicalJson } from '../run/manifest.ts'
import { PreparedDataError } from './data-errors.ts'
import { checkTokenWidth, type TokenWidth } from './shard-format.ts'

export const PREPARED_FORMAT = 'layerswarm-tokens'
export const PREPARED_VERSION = 1
export const MANIFEST_FILE = 'manifest.json'

export interface ShardEntry {
  /** File name inside the folder, e.g. "train-000000.bin". */
  readonly file: string
  readonly tokens: number
  /** File size in bytes (header included). */
  readonly bytes: number
  /** Hex SHA-256 of the whole file. */
  readonly sha256: string
}

export interface SplitEntry {
  readonly tokens: number
  readonly shards: readonly ShardEntry[]
}

export interface PreparedContent {
  readonly format: typeof PREPARED_FORMAT
  readonly version: number
  readonly tokenizer: string
  readonly vocabSize: number
  /** End-of-text id placed where a document ends (docs/data.md). */
  readonly eot: number
  readonly tokenWidth: TokenWidth
  readonly splits: { readonly train: SplitEntry, readonly val: SplitEntry }
}

export interface PreparedInfo {
  readonly shardTokens: number
  readonly valFraction: number
  readonly splitSeed: number
  readonly files: number
  readonly documents: number
  readonly valDocuments: number
  /** Input bytes read (compressed size for .gz). */
  readonly bytes: number
  /** Held-out nats/token of the train split's add-one unigram (unigram-baseline.ts); null with no val tokens. */
  readonly unigramEvalLoss: number | null
}

export interface PreparedManifest {
  readonly dataId: string
  readonly content: PreparedContent
  readonly info: PreparedInfo
}

/** The data id of a content object. */
export function dataIdOf (content: PreparedContent): string {
  return createHash('sha256').update(canonicalJson(content), 'utf8').digest('hex')
}

/** Whether `dir` holds a manifest.json (a prepared folder) rather than text files. */
export async function isPreparedFolder (dir: string): Promise<boolean> {
  return await readFile(path.join(dir, MANIFEST_FILE)).then(() => true, () => false)
}

/** Reads and checks manifest.json of a prepared folder: its schema, and its data id against its content. */
export async function readPreparedManifest (dir: string): Promise<PreparedManifest> {
  const file = path.join(dir, MANIFEST_FILE)
  let raw: unknown
  try {
    raw = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    throw new PreparedDataError(file, `cannot be read as JSON: ${(err as Error).message}`)
  }
  const bad = (what: string): never => { throw new PreparedDataError(file, what) }
  const m = raw as PreparedManifest
  if (m == null || typeof m !== 'object' || m.content == null || typeof m.content !== 'object') bad('has no "content" object')
  const c = m.content
  if (c.format !== PREPARED_FORMAT) bad(`has format ${JSON.stringify(c.format)}, not "${PREPARED_FORMAT}"`)
  if (c.version !== PREPARED_VERSION) bad(`has version ${JSON.stringify(c.version)}; this build reads ${PREPARED_VERSION}`)
  if (typeof c.tokenizer !== 'string') bad('names no tokenizer')
  if (!Number.isSafeInteger(c.eot) || c.eot < 0 || c.eot >= c.vocabSize) bad(`has eot ${JSON.stringify(c.eot)} outside the vocabulary`)
  checkTokenWidth(c.vocabSize, c.tokenWidth)
  for (const name of ['train', 'val'] as const) {
    const s = c.splits?.[name]
    if (s == null || !Array.isArray(s.shards)) bad(`has no ${name} split`)
    let sum = 0
    for (const e of s.shards) {
      if (typeof e.file !== 'string' || e.file.includes('/') || e.file.includes('\\') || e.file.startsWith('.')) bad(`names a bad shard file ${JSON.stringify(e.file)}`)
      if (!Number.isSafeInteger(e.tokens) || e.tokens < 0 || e.bytes !== 32 + e.tokens * c.tokenWidth) bad(`has bad sizes for ${e.file}`)
      if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) bad(`has a bad sha256 for ${e.file}`)
      sum += e.tokens
    }
    if (sum !== s.tokens) bad(`${name} split: shards hold ${sum} tokens, the split says ${s.tokens}`)
  }
  const id = dataIdOf(c)
  if (m.dataId !== id) bad(`says data id ${String(m.dataId)} but its content hashes to ${id}: the manifest was edited`)
  return m
}
