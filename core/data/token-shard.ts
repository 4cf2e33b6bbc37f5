// A split's tokens held in memory, with the windows training and evaluation read from it.
// A window of T+1 consecutive tokens gives inputs (the first T) and targets (the last T).
//
// Sampling is reproducible by any node: a batch is a pure function of (tokens, key, B, T).
//   seed64 = FNV-1a-64(UTF-8("layerswarm-batch-v1\0" + seed + "\0" + nodeId + "\0" + step + "\0" + micro))
//   rng    = splitmix64(seed64)
//   row b (b = 0..B-1) starts at below(rng(), length - T), where below(x, n) = (x * n) >> 64
import { CorpusTooSmallError, DataArgumentError } from './data-errors.ts'
import { below, fnv1a64, splitmix64 } from './prng.ts'

/** Compact token storage: Uint8Array for vocab <= 256, Uint16Array <= 65536, else Int32Array. */
export type TokenArray = Uint8Array | Uint16Array | Int32Array

/** Identifies one microbatch of a run: (run seed, node, optimizer step, microbatch index). */
export interface BatchKey {
  readonly seed: string | number | bigint
  readonly nodeId: string
  readonly step: number
  readonly micro: number
}

export interface Batch {
  /** Row-major [B, T]. */
  readonly inputs: Int32Array
  /** Row-major [B, T]: inputs shifted left by one token. */
  readonly targets: Int32Array
}

export class TokenShard {
  constructor (
    /** 'train' or 'held-out', for messages. */
    readonly name: string,
    readonly tokens: TokenArray,
    readonly vocabSize: number
  ) {}

  get length (): number {
    return this.tokens.length
  }

  /** Number of distinct windows of T+1 tokens (start positions 0 .. length-T-1). */
  windowCount (T: number): number {
    checkPositive('T', T)
    return Math.max(0, this.tokens.length - T)
  }

  /** The T+1 tokens starting at `start`. */
  window (start: number, T: number): Int32Array {
    const n = this.windowCount(T)
    if (!Number.isSafeInteger(start) || start < 0 || start >= n) {
      if (n === 0) throw new CorpusTooSmallError(`the ${this.name} split`, this.tokens.length, T + 1)
      throw new DataArgumentError(`window start ${start} is outside [0, ${n})`)
    }
    return Int32Array.from(this.tokens.subarray(start, start + T + 1))
  }

  /** B windows at positions drawn from the key (see the header): the same key always gives the same batch. */
  sampleBatch (key: BatchKey, B: number, T: number): Batch {
    checkPositive('B', B)
    const n = this.windowCount(T)
    if (n === 0) throw new CorpusTooSmallError(`the ${this.name} split`, this.tokens.length, T + 1)
    const rng = splitmix64(batchSeed(key))
    const batch = { inputs: new Int32Array(B * T), targets: new Int32Array(B * T) }
    for (let b = 0; b < B; b++) this.fill(batch, b, below(rng(), n), T)
    return batch
  }

  /** Number of evaluation batches: consecutive non-overlapping windows (stride T), B per batch. */
  evalBatchCount (B: number, T: number): number {
    checkPositive('B', B)
    checkPositive('T', T)
    return Math.floor(Math.floor(Math.max(0, this.tokens.length - 1) / T) / B)
  }

  /** Evaluation batch i: windows i*B .. i*B+B-1 of the split read in order, each starting at a multiple of T. */
  evalBatch (i: number, B: number, T: number): Batch {
    const count = this.evalBatchCount(B, T)
    if (count === 0) throw new CorpusTooSmallError(`the ${this.name} split`, this.tokens.length, B * T + 1)
    if (!Number.isSafeInteger(i) || i < 0 || i >= count) throw new DataArgumentError(`eval batch ${i} is outside [0, ${count})`)
    const batch = { inputs: new Int32Array(B * T), targets: new Int32Array(B * T) }
    for (let b = 0; b < B; b++) this.fill(batch, b, (i * B + b) * T, T)
    return batch
  }

  private fill (batch: Batch, row: number, start: number, T: number): void {
    batch.inputs.set(this.tokens.subarray(start, start + T), row * T)
    batch.targets.set(this.tokens.subarray(start + 1, start + T + 1), row * T)
  }
}

/** The 64-bit seed of a batch key (see the header). */
export function batchSeed (key: BatchKey): bigint {
  if (typeof key.nodeId !== 'string') throw new DataArgumentError('batch key: nodeId must be a string')
  for (const k of ['step', 'micro'] as const) {
    if (!Number.isSafeInteger(key[k]) || key[k] < 0) throw new DataArgumentError(`batch key: ${k} must be a non-negative integer, got ${key[k]}`)
  }
  const canonical = `layerswarm-batch-v1\0${String(key.seed)}\0${key.nodeId}\0${key.step}\0${key.micro}`
  return fnv1a64(new TextEncoder().encode(canonical))
}

function checkPositive (name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) throw new DataArgumentError(`${name} must be a positive integer, got ${v}`)
}
