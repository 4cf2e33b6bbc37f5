// Where a microbatch's time goes on this node: timers around each phase of the pipeline
// (performance.now() pairs, cheap enough to be always on), accumulated per category and shown in the
// training status as `profile` (docs/pipeline.md, "Where a microbatch's time goes").
//
// The categories are phases of one microbatch as this node sees it. Phases of concurrent
// microbatches overlap (a reply is awaited for one while another computes), so the categories may
// add up to more than the wall time: compare `busySeconds / wallSeconds` (how much of the time the
// stage computed) for bubbles, and the per-microbatch figures for what each microbatch costs.
// Eval microbatches are timed too but not counted: the per-microbatch figures are per training
// microbatch, with any eval work of the same period spread over them.
import type { BoundaryCodecs, BoundaryRole, TensorCodecs } from '../codecs/tensor-codecs.ts'
import { assertFiniteF32 } from '../wire/finite.ts'

export const PROFILE_CATEGORIES = [
  /** Kernels of forward and backward (recomputed forwards included), on the stage's worker. */
  'compute',
  /** The optimizer step (AdamW, gradient norm and clipping). */
  'optimizer',
  /** Waiting for the stage's lock: another microbatch, a step or an exclusive section was running. */
  'lockWait',
  /** Codec encode of outbound boundary tensors (the codec's own fused absmax scan included). */
  'encode',
  /** Codec decode of inbound boundary tensors, with the adapter's shape and finite checks. */
  'decode',
  /** The NaN/Inf scan of outbound tensors before encoding. */
  'finiteScan',
  /** Copies of payloads and ids (kept for commitments, raw target bytes). */
  'copy',
  /** Frame headers checked: activation, targets and reply validation. */
  'framing',
  /** Opening a stream to the next stage (connection reuse, protocol negotiation). */
  'open',
  /** Writing frames: encryption, muxing, transport and waiting for the receiver's credit. */
  'send',
  /** Reading an inbound microbatch's frames after its stream opened (the sender's writes, transport). */
  'receive',
  /** From the request written to the reply read: the next stages' whole work and the way back. */
  'replyWait',
  /** Hop commitments, weight digests and origin signatures (signing, verifying, hashing). */
  'verification',
  /** Drawing the batch from the sampler (stage 0). */
  'data',
  /** Exclusive sections on the stage: averaging write-backs, checkpoints. */
  'averaging'
] as const

export type ProfileCategory = typeof PROFILE_CATEGORIES[number]

export interface ProfileSnapshot {
  /** Training microbatches completed on this node. */
  readonly microbatches: number
  /** Seconds from the first timed phase to now (0 before any). */
  readonly wallSeconds: number
  /** Seconds the stage computed (its lock held: compute, optimizer, exclusive sections). */
  readonly busySeconds: number
  /** Total seconds per category. */
  readonly seconds: Record<ProfileCategory, number>
  /** Milliseconds per completed microbatch, per category (0 before the first). */
  readonly perMicrobatchMs: Record<ProfileCategory, number>
}

function zeros (): Record<ProfileCategory, number> {
  return Object.fromEntries(PROFILE_CATEGORIES.map(c => [c, 0])) as Record<ProfileCategory, number>
}

export class PipelineProfile {
  private readonly ms = zeros()
  private first = -1
  private busy = 0
  private done = 0

  constructor (private readonly now: () => number = () => performance.now()) {}

  /** Adds `ms` milliseconds to `cat` (negative or non-finite amounts are ignored: a clock hiccup is no phase). */
  add (cat: ProfileCategory, ms: number): void {
    if (!(ms > 0) || !Number.isFinite(ms)) return
    this.ms[cat] += ms
  }

  /** The start of a phase; pass the result to `end`. */
  start (): number {
    const t = this.now()
    if (this.first < 0) this.first = t
    return t
  }

  /** Ends a phase begun at `t0` (from `start`) into `cat`; returns its length in ms. */
  end (cat: ProfileCategory, t0: number): number {
    const ms = this.now() - t0
    this.add(cat, ms)
    return ms
  }

  /** Runs `fn` as a phase of `cat`. */
  async time<R> (cat: ProfileCategory, fn: () => Promise<R>): Promise<R> {
    const t0 = this.start()
    try {
      return await fn()
    } finally {
      this.end(cat, t0)
    }
  }

  /** Runs synchronous `fn` as a phase of `cat`. */
  timeSync<R> (cat: ProfileCategory, fn: () => R): R {
    const t0 = this.start()
    try {
      return fn()
    } finally {
      this.end(cat, t0)
    }
  }

  /** The stage's lock was held for `ms` (utilization). */
  busyFor (ms: number): void {
    if (ms > 0 && Number.isFinite(ms)) this.busy += ms
  }

  /** A training microbatch completed here. */
  completed (): void {
    this.done++
  }

  snapshot (): ProfileSnapshot {
    const seconds = zeros()
    const perMicrobatchMs = zeros()
    for (const c of PROFILE_CATEGORIES) {
      seconds[c] = round(this.ms[c] / 1000, 4)
      perMicrobatchMs[c] = this.done > 0 ? round(this.ms[c] / this.done, 3) : 0
    }
    return {
      microbatches: this.done,
      wallSeconds: this.first < 0 ? 0 : round((this.now() - this.first) / 1000, 3),
      busySeconds: round(this.busy / 1000, 3),
      seconds,
      perMicrobatchMs
    }
  }
}

function round (x: number, digits: number): number {
  const p = 10 ** digits
  return Math.round(x * p) / p
}

/**
 * `codecs` with their work timed into `profile`: encode (split into the outbound finite scan and the
 * codec's encode where the adapter can encode unchecked, so the two show apart) and decode.
 */
export function profiledCodecs (codecs: BoundaryCodecs, profile: PipelineProfile): BoundaryCodecs {
  const unchecked = (codecs as Partial<TensorCodecs<BoundaryRole>>).encodeUnchecked?.bind(codecs)
  return {
    name: role => codecs.name(role),
    encode (role, data, shape) {
      if (unchecked == null) return profile.timeSync('encode', () => codecs.encode(role, data, shape))
      profile.timeSync('finiteScan', () => { assertFiniteF32(data, `outbound ${role}`) })
      return profile.timeSync('encode', () => unchecked(role, data, shape))
    },
    decode: (role, frame) => profile.timeSync('decode', () => codecs.decode(role, frame))
  }
}
