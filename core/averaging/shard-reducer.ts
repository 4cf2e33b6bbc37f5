// What a shard owner holds for its shard during one round (all-reduce-round.ts drives it): each
// contribution's buffer as its parts arrive, the part-wise robust mean (robust-parts.ts) advanced
// while they arrive, and, once the shard closes, the average's encoded parts, each made once, when
// the first exchange asks for it, and sent to every contributor.
//
// Pass 1 of the robust mean runs as parts arrive on the hope that every member contributes (the
// common case). A member that fails or is late changes the set of inputs, and the medians with it:
// then the owner starts pass 1 again over the contributions it kept, when the shard closes.
import type { AveragingRole, TensorCodecs } from '../codecs/tensor-codecs.ts'
import { partCount, type EncodedPart } from './butterfly.ts'
import { PartwiseRobustMean, type RobustDecision } from './robust-parts.ts'
import type { RobustAveragingOptions, ShardContribution } from './robust-shard.ts'
import { RoundMismatchError } from './errors.ts'

export interface ShardAverage {
  readonly decision: RobustDecision
  /** Data frames of the average (the owner's parts). */
  readonly partCount: number
  /** Encoded part p of the average (made on the first call). */
  part(p: number): EncodedPart
  /** Makes every part not made yet; the decoded average: exactly what every contributor receives. */
  complete(): Float32Array
}

export class ShardReducer {
  private readonly buffers = new Map<number, { weight: number, data: Float32Array, at: number }>()
  private readonly robust: PartwiseRobustMean
  /** Pass 1 runs over every member's contribution while no member has failed. */
  private optimistic = true
  private started = false
  private closed = false

  /** `own`: this node's values of the shard; `members` in group order, `me` this node's index. */
  constructor (private readonly codecs: TensorCodecs<AveragingRole>, readonly role: AveragingRole, private readonly members: readonly string[],
    private readonly me: number, private readonly own: Float32Array, private readonly ownWeight: number, readonly partElements: number,
    referenceNorm: number, robust: RobustAveragingOptions | undefined) {
    this.robust = new PartwiseRobustMean(own.length, partElements, role, referenceNorm, robust)
  }

  /** The buffer member k's contribution is received into. */
  open (k: number, weight: number): Float32Array {
    const data = new Float32Array(this.own.length)
    this.buffers.set(k, { weight, data, at: 0 })
    return data
  }

  /** Member k's contribution holds its first `at` elements: pass 1 covers what every member sent. */
  progress (k: number, at: number): void {
    const b = this.buffers.get(k)
    if (b == null) return
    b.at = at
    if (this.closed || !this.optimistic || this.buffers.size !== this.members.length - 1) return
    let min = this.own.length
    for (const x of this.buffers.values()) min = Math.min(min, x.at)
    if (!this.started) {
      this.robust.reset(this.inputs([...this.buffers.keys()]))
      this.started = true
    }
    this.robust.advance(min === this.own.length ? this.robust.parts : Math.floor(min / this.partElements))
  }

  /** Member k's contribution is out (failed, late, refused): its buffer goes, pass 1 starts over at close. */
  drop (k: number): void {
    this.buffers.delete(k)
    this.optimistic = false
  }

  /**
   * The shard closes with the complete contributions of `done` (member indexes): the robust
   * decision, then the average's parts on demand. `transform` (fault injection) replaces the whole
   * average before it is encoded: then every part is made at once, and checked finite.
   */
  close (done: readonly number[], transform?: (avg: Float32Array) => Float32Array): ShardAverage {
    this.closed = true
    const sorted = [...done].sort((a, b) => a - b)
    if (!this.optimistic || !this.started || sorted.length !== this.members.length - 1) this.robust.reset(this.inputs(sorted))
    const decision = this.robust.decide()
    const n = this.own.length
    const count = partCount(n, this.partElements)
    const avg = new Float32Array(n)
    const made: Array<EncodedPart | undefined> = new Array(count)
    let whole: Float32Array | null = null
    if (transform != null) {
      for (let p = 0; p < count; p++) avg.set(this.meanPart(p), p * this.partElements)
      whole = transform(avg.slice())
    }
    const part = (p: number): EncodedPart => {
      const have = made[p]
      if (have != null) return have
      const [s, e] = this.robust.range(p)
      // the mean of finite values is finite (a convex combination): only an injected fault needs the scan
      const values = whole != null ? whole.subarray(s, e) : this.meanPart(p)
      const enc = whole != null ? this.codecs.encode(this.role, values) : this.codecs.encodeUnchecked(this.role, values)
      const out = { ...enc, elements: e - s }
      // keep exactly what the others receive, so every member holds the same bits for this shard
      avg.set(this.codecs.decodeBytes(this.role, out.codecId, out.bytes), s)
      made[p] = out
      return out
    }
    if (whole != null) for (let p = 0; p < count; p++) part(p)
    return {
      decision,
      partCount: count,
      part,
      complete: () => {
        for (let p = 0; p < count; p++) part(p)
        return avg
      }
    }
  }

  /** Part p of the mean; this node's own values where nothing was kept. */
  private meanPart (p: number): Float32Array {
    const [s, e] = this.robust.range(p)
    return this.robust.meanPart(p) ?? this.own.subarray(s, e)
  }

  /** This node's values and the contributions of `others`, in member order. */
  private inputs (others: readonly number[]): ShardContribution[] {
    const idx = [this.me, ...others].sort((a, b) => a - b)
    return idx.map(i => {
      if (i === this.me) return { peer: this.members[i], weight: this.ownWeight, data: this.own }
      const b = this.buffers.get(i)
      if (b == null) throw new RoundMismatchError(`no contribution buffer for member ${i}`)
      return { peer: this.members[i], weight: b.weight, data: b.data }
    })
  }
}
