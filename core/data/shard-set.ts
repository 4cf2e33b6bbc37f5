// A prepared dataset (prepare.ts) read lazily: no shard is read until a batch needs it. The first
// use of a shard streams the whole file through SHA-256 and compares it with the manifest (a
// mismatch is ShardHashMismatchError), then checks its header; later reads take just the windows
// they need from the file (positioned reads of (T+1) tokens). At most maxOpenShards files are open
// at once (least recently used closed first). Memory: O(B x T) per batch, whatever the data size.
//
// Sampling is TokenShard's (token-shard.ts), over the windows of all shards of a split: windows
// never cross a shard boundary. Shard i of n_i tokens holds max(0, n_i - T) windows; W is their sum;
// row b takes window g = below(rng(), W) of seed (seed, nodeId, step, micro), i.e. the shard where
// the running sum passes g, at start g minus the windows of the shards before it. With one shard
// this is exactly TokenShard.sampleBatch over its tokens. Eval batches read the val split in order,
// windows of stride T (floor((n_i - 1) / T) per shard), batch i = windows i*B .. i*B+B-1.
import { createReadStream, closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { createHash } from 'node:crypto'
import path from 'node:path'
import { CorpusTooSmallError, DataArgumentError, DataIdMismatchError, DatasetReadError, PreparedDataError, ShardHashMismatchError } from './data-errors.ts'
import { below, splitmix64 } from './prng.ts'
import { readPreparedManifest, type PreparedManifest, type ShardEntry } from './prepared-manifest.ts'
import { decodeShardHeader, decodeTokens, SHARD_HEADER_BYTES } from './shard-format.ts'
import { batchSeed, type Batch, type BatchKey } from './token-shard.ts'

export interface ShardSetOptions {
  /** Refuse the folder unless its data id is this (the run manifest's data.dataId). */
  readonly expectDataId?: string
  /** Most shard files open at once; default 8. */
  readonly maxOpenShards?: number
}

export class ShardSet {
  readonly train: ShardSplit
  readonly val: ShardSplit
  private readonly verified = new Map<string, Promise<void>>()
  /** Open file descriptors in least-recently-used order (Map order). */
  private readonly fds = new Map<string, number>()
  private readonly maxOpen: number

  private constructor (readonly dir: string, readonly manifest: PreparedManifest, opts: ShardSetOptions) {
    this.maxOpen = opts.maxOpenShards ?? 8
    if (!Number.isSafeInteger(this.maxOpen) || this.maxOpen < 1) throw new DataArgumentError(`maxOpenShards must be a positive integer, got ${this.maxOpen}`)
    this.train = new ShardSplit(this, 'train', manifest.content.splits.train.shards)
    this.val = new ShardSplit(this, 'val', manifest.content.splits.val.shards)
  }

  /** Reads and checks manifest.json (not the shards: each is checked at its first use). */
  static async open (dir: string, opts: ShardSetOptions = {}): Promise<ShardSet> {
    const manifest = await readPreparedManifest(dir)
    if (opts.expectDataId != null && opts.expectDataId !== manifest.dataId) throw new DataIdMismatchError(opts.expectDataId, manifest.dataId, dir)
    return new ShardSet(path.resolve(dir), manifest, opts)
  }

  get dataId (): string { return this.manifest.dataId }
  get vocabSize (): number { return this.manifest.content.vocabSize }

  /** Hashes every shard now (the reader otherwise checks each at first use). */
  async verifyAll (): Promise<void> {
    for (const s of [this.train, this.val]) for (const e of s.entries) await this.verify(e)
  }

  /** Closes the open shard files. */
  close (): void {
    for (const fd of this.fds.values()) closeSync(fd)
    this.fds.clear()
  }

  /** @internal Streams a shard through SHA-256 once per process; a failure is retried at the next use. */
  async verify (e: ShardEntry): Promise<void> {
    let p = this.verified.get(e.file)
    if (p == null) {
      p = this.hashFile(e)
      this.verified.set(e.file, p)
      p.catch(() => { this.verified.delete(e.file) })
    }
    await p
  }

  private async hashFile (e: ShardEntry): Promise<void> {
    const file = path.join(this.dir, e.file)
    const hash = createHash('sha256')
    try {
      for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) hash.update(chunk)
    } catch (err) {
      throw new DatasetReadError(file, err)
    }
    const actual = hash.digest('hex')
    if (actual !== e.sha256) throw new ShardHashMismatchError(file, e.sha256, actual)
  }

  /** @internal Tokens [start, start + n) of a verified shard into `into` at `at`. */
  read (e: ShardEntry, start: number, n: number, into: Int32Array, at: number): void {
    const width = this.manifest.content.tokenWidth
    const bytes = Buffer.allocUnsafe(n * width)
    const got = readSync(this.fd(e), bytes, 0, bytes.length, SHARD_HEADER_BYTES + start * width)
    if (got !== bytes.length) throw new PreparedDataError(path.join(this.dir, e.file), `ended early (read ${got} of ${bytes.length} bytes at token ${start})`)
    decodeTokens(bytes, width, into, at)
  }

  /** An open descriptor of a verified shard; its header is checked against the manifest at each open. */
  private fd (e: ShardEntry): number {
    const cached = this.fds.get(e.file)
    if (cached != null) {
      this.fds.delete(e.file)
      this.fds.set(e.file, cached)
      return cached
    }
    const file = path.join(this.dir, e.file)
    const fd = openSync(file, 'r')
    try {
      const head = Buffer.alloc(SHARD_HEADER_BYTES)
      readSync(fd, head, 0, SHARD_HEADER_BYTES, 0)
      const h = decodeShardHeader(head, file)
      const c = this.manifest.content
      if (h.width !== c.tokenWidth || h.count !== e.tokens || h.vocabSize !== c.vocabSize || fstatSync(fd).size !== e.bytes) {
        throw new PreparedDataError(file, `header (width ${h.width}, ${h.count} tokens, vocab ${h.vocabSize}) disagrees with the manifest`)
      }
    } catch (err) {
      closeSync(fd)
      throw err
    }
    this.fds.set(e.file, fd)
    while (this.fds.size > this.maxOpen) {
      const [oldest, oldFd] = this.fds.entries().next().value as [string, number]
      this.fds.delete(oldest)
      closeSync(oldFd)
    }
    return fd
  }
}

/** One split's shards, sampled as one sequence of windows that never cross a shard. */
export class ShardSplit {
  private readonly ends = new Map<string, Float64Array>()

  constructor (private readonly set: ShardSet, readonly name: 'train' | 'val', readonly entries: readonly ShardEntry[]) {}

  get length (): number {
    return this.entries.reduce((s, e) => s + e.tokens, 0)
  }

  /** Random windows of T+1 tokens in this split. */
  windowCount (T: number): number {
    positive('T', T)
    return this.cumulative('train', T).at(-1) ?? 0
  }

  /** B windows drawn from the key: the same key always gives the same batch. */
  async sampleBatch (key: BatchKey, B: number, T: number): Promise<Batch> {
    positive('B', B)
    const ends = this.cumulative('train', T)
    const W = ends.at(-1) ?? 0
    if (W === 0) throw new CorpusTooSmallError(`the ${this.name} split (every shard)`, this.length, T + 1)
    const rng = splitmix64(batchSeed(key))
    const picks: Array<[number, number]> = []
    for (let b = 0; b < B; b++) picks.push(this.locate(ends, below(rng(), W)))
    return await this.fill(picks, T)
  }

  /** Evaluation batches: the split's stride-T windows in order, B per batch. */
  evalBatchCount (B: number, T: number): number {
    positive('B', B)
    positive('T', T)
    return Math.floor((this.cumulative('eval', T).at(-1) ?? 0) / B)
  }

  async evalBatch (i: number, B: number, T: number): Promise<Batch> {
    const count = this.evalBatchCount(B, T)
    if (count === 0) throw new CorpusTooSmallError(`the ${this.name} split`, this.length, B * T + 1)
    if (!Number.isSafeInteger(i) || i < 0 || i >= count) throw new DataArgumentError(`eval batch ${i} is outside [0, ${count})`)
    const ends = this.cumulative('eval', T)
    const picks: Array<[number, number]> = []
    for (let b = 0; b < B; b++) {
      const [shard, j] = this.locate(ends, i * B + b)
      picks.push([shard, j * T])
    }
    return await this.fill(picks, T)
  }

  /** (shard, start) pairs -> a batch; verifies each shard used first. */
  private async fill (picks: Array<[number, number]>, T: number): Promise<Batch> {
    for (const s of new Set(picks.map(p => p[0]))) await this.set.verify(this.entries[s])
    const B = picks.length
    const batch = { inputs: new Int32Array(B * T), targets: new Int32Array(B * T) }
    const row = new Int32Array(T + 1)
    picks.forEach(([s, start], b) => {
      this.set.read(this.entries[s], start, T + 1, row, 0)
      batch.inputs.set(row.subarray(0, T), b * T)
      batch.targets.set(row.subarray(1), b * T)
    })
    return batch
  }

  /** Running sums of windows per shard: random windows (n - T) or eval windows (floor((n - 1) / T)). */
  private cumulative (kind: 'train' | 'eval', T: number): Float64Array {
    const k = `${kind}:${T}`
    let ends = this.ends.get(k)
    if (ends == null) {
      ends = new Float64Array(this.entries.length)
      let sum = 0
      this.entries.forEach((e, i) => {
        sum += kind === 'train' ? Math.max(0, e.tokens - T) : Math.floor(Math.max(0, e.tokens - 1) / T)
        ends![i] = sum
      })
      this.ends.set(k, ends)
    }
    return ends
  }

  /** Global window g -> (shard, window index within it), by binary search over the running sums. */
  private locate (ends: Float64Array, g: number): [number, number] {
    let lo = 0
    let hi = ends.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (ends[mid] > g) hi = mid
      else lo = mid + 1
    }
    return [lo, g - (lo === 0 ? 0 : ends[lo - 1])]
  }
}

function positive (name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) throw new DataArgumentError(`${name} must be a positive integer, got ${v}`)
}
