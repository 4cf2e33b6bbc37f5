// The robust shard mean (robust-shard.ts) computed part by part, so a shard owner can work while
// parts arrive and send part k of the average while it computes part k+1, instead of holding the
// whole shard's arithmetic between the scatter and the gather.
//
// Why parts change nothing: every statistic robustMean (core/verify/robust-mean.ts) judges by is
// either per coordinate (the coordinate-wise medians, the weighted mean) or a float64 running sum
// over coordinates in order (norms, dot products). Parts are visited in order and each running sum
// carries over from one part to the next, so every sum adds the same terms in the same order as one
// pass over the whole shard: the norms, cosines, exclusions, weights and mean are bit-identical
// (test/averaging-robust-parts.test.ts compares them with robustShardMean). The one step skipped is
// robustMean's NaN/Inf scan: contributions reach the owner through the codecs adapter, which refuses
// non-finite values, and the owner's own vector is checked before its round begins.
//
//   pass 1 (addPart, as soon as every contribution holds part p, parts in order): role 'parameter':
//          the coordinate-wise median of the part and each deviation's sum of squares; role
//          'parameter-grad': each contribution's sum of squares
//   decide (the shard closed): norms, the median norm, norm exclusions; 'parameter-grad' with 3 or
//          more survivors: pass 2 over the parts (median of the survivors, dot products), cosines;
//          weights
//   meanPart(p): the weighted mean of part p (float64 accumulation, kept order), on demand
import type { AveragingRole } from '../codecs/tensor-codecs.ts'
import type { Exclusion, KeptContribution } from '../verify/robust-mean.ts'
import { AveragingConfigError } from './errors.ts'
import { DEFAULT_ROBUST_AVERAGING, normFactorOf, type RobustAveragingOptions, type ShardContribution } from './robust-shard.ts'

export interface RobustDecision {
  readonly kept: KeptContribution[]
  readonly excluded: Exclusion[]
  readonly medianNorm: number
  readonly robust: boolean
}

interface Judged { readonly c: ShardContribution, readonly i: number, norm: number }

/** Part-wise robustShardMean over contributions of `length` elements cut into parts of `partElements`. */
export class PartwiseRobustMean {
  readonly parts: number
  private readonly o: Required<Omit<RobustAveragingOptions, 'weightOf'>>
  private readonly byMedian: boolean
  private readonly enabled: boolean
  private inputs: ShardContribution[] = []
  private weights: number[] = []
  private ss: Float64Array = new Float64Array(0)
  private next = 0
  private decision: RobustDecision | null = null
  private keptData: Float32Array[] = []
  private wsum = 0

  constructor (readonly length: number, readonly partElements: number, readonly role: AveragingRole,
    readonly referenceNorm: number, private readonly options: RobustAveragingOptions = {}) {
    if (!(Number.isSafeInteger(partElements) && partElements >= 1)) throw new AveragingConfigError('partElements must be a positive integer')
    this.parts = Math.ceil(length / partElements)
    this.o = { ...DEFAULT_ROBUST_AVERAGING, ...stripUndefined(options) } as Required<Omit<RobustAveragingOptions, 'weightOf'>>
    this.enabled = this.o.enabled
    this.byMedian = this.enabled && role === 'parameter'
  }

  /** Element range [start, end) of part p. */
  range (p: number): [number, number] {
    return [p * this.partElements, Math.min(this.length, (p + 1) * this.partElements)]
  }

  /** Parts pass 1 has covered. */
  get covered (): number { return this.next }

  /**
   * (Re)starts pass 1 over `inputs` (member order; each `length` elements, filled at least up to the
   * parts later announced with advance()). A changed set of inputs must start again: the medians
   * depend on every contribution.
   */
  reset (inputs: readonly ShardContribution[]): void {
    this.inputs = inputs.slice()
    for (const c of inputs) if (c.data.length !== this.length) throw new AveragingConfigError(`contribution of ${c.data.length} elements, expected ${this.length}`)
    this.weights = inputs.map(c => this.options.weightOf != null ? this.options.weightOf(c.peer, c.weight) : c.weight)
    this.ss = new Float64Array(inputs.length)
    this.next = 0
    this.decision = null
  }

  /** Pass 1 over every part below `upTo` not yet covered (every input holds them). */
  advance (upTo: number): void {
    if (this.decision != null) throw new AveragingConfigError('the shard mean is already decided')
    const valid = this.validIndexes()
    const xs = valid.map(i => this.inputs[i].data)
    for (; this.next < Math.min(upTo, this.parts); this.next++) {
      const [s, e] = this.range(this.next)
      if (this.byMedian) {
        const med = coordinateMedian(xs, s, e)
        valid.forEach((i, k) => { this.ss[i] = sumSqCentered(xs[k], med, s, e, this.ss[i]) })
      } else {
        valid.forEach((i, k) => { this.ss[i] = sumSq(xs[k], s, e, this.ss[i]) })
      }
    }
  }

  /** The exclusions and weights (pass 1 over every part first, pass 2 where judged by direction). */
  decide (): RobustDecision {
    if (this.decision != null) return this.decision
    this.advance(this.parts)
    const o = this.o
    const excluded: Exclusion[] = []
    const exclude = (c: ShardContribution, reason: Exclusion['reason'], detail: string): void => { excluded.push({ id: c.peer, reason, detail }) }
    const validIdx = this.validIndexes()
    for (let i = 0; i < this.inputs.length; i++) {
      if (!validIdx.includes(i)) exclude(this.inputs[i], 'weight', `declared weight ${this.weights[i]} is not a finite number > 0`)
    }
    const valid: Judged[] = validIdx.map(i => ({ c: this.inputs[i], i, norm: Math.sqrt(this.ss[i]) }))
    const medianNorm = valid.length > 0 ? median(valid.map(v => v.norm)) : NaN
    const robust = valid.length >= 3
    // robust-shard.ts's settings: disabled = factors that never exclude
    const normFactor = this.enabled ? normFactorOf(this.role, o) : Number.MAX_VALUE
    const zeroMedianScale = this.enabled ? o.maxRelNorm * this.referenceNorm / normFactor : Number.MAX_VALUE
    const minCosine = this.enabled ? o.minCosine : -1
    const weightCap = this.enabled ? o.weightCap : Number.MAX_VALUE

    let survivors = valid
    if (robust) {
      survivors = []
      const scale = medianNorm > 0 ? medianNorm : zeroMedianScale
      const of = medianNorm > 0 ? `median ${fmt(medianNorm)}` : `${fmt(scale)} (the median is 0)`
      for (const v of valid) {
        if (v.norm > scale * normFactor) exclude(v.c, 'norm-high', `norm ${fmt(v.norm)} > ${normFactor} x ${of}`)
        else if (v.norm < scale / Infinity) exclude(v.c, 'norm-low', `norm ${fmt(v.norm)} < ${of} / Infinity`)
        else survivors.push(v)
      }
    }

    const cosines = new Map<number, number>()
    if (robust && !this.byMedian && survivors.length >= 3) {
      // pass 2: the survivors' coordinate-wise median, its norm and each survivor's dot with it
      const xs = survivors.map(v => v.c.data)
      let refSs = 0
      const dots = new Float64Array(survivors.length)
      for (let p = 0; p < this.parts; p++) {
        const [s, e] = this.range(p)
        const ref = coordinateMedian(xs, s, e)
        refSs = sumSq(ref, 0, ref.length, refSs)
        for (let k = 0; k < xs.length; k++) dots[k] = dot(xs[k], s, ref, dots[k])
      }
      const refNorm = Math.sqrt(refSs)
      if (refNorm > 0) {
        const kept: Judged[] = []
        survivors.forEach((v, k) => {
          const cos = v.norm > 0 ? dots[k] / (v.norm * refNorm) : 0
          cosines.set(v.i, cos)
          if (cos < minCosine) exclude(v.c, 'direction', `cosine ${fmt(cos)} to the group's median < ${minCosine}`)
          else kept.push(v)
        })
        survivors = kept
      }
    }

    const medianWeight = valid.length > 0 ? median(valid.map(v => this.weights[v.i])) : 0
    const kept: KeptContribution[] = survivors.map(v => ({
      id: v.c.peer,
      declaredWeight: this.weights[v.i],
      weight: Math.min(Math.max(this.weights[v.i], 0), Infinity, weightCap * medianWeight),
      norm: v.norm,
      cosine: cosines.get(v.i) ?? NaN
    }))
    this.keptData = survivors.map(v => v.c.data)
    this.wsum = 0
    for (const k of kept) this.wsum += k.weight
    this.decision = { kept, excluded, medianNorm, robust }
    return this.decision
  }

  /** Part p of the weighted mean of the kept contributions (decide() first; null when none was kept). */
  meanPart (p: number): Float32Array | null {
    const d = this.decide()
    if (d.kept.length === 0) return null
    const [s, e] = this.range(p)
    const acc = new Float64Array(e - s)
    d.kept.forEach((k, j) => {
      const x = this.keptData[j]
      const w = k.weight
      for (let i = s; i < e; i++) acc[i - s] += w * x[i]
    })
    const out = new Float32Array(e - s)
    for (let i = 0; i < out.length; i++) out[i] = acc[i] / this.wsum
    return out
  }

  private validIndexes (): number[] {
    const out: number[] = []
    this.weights.forEach((w, i) => { if (typeof w === 'number' && Number.isFinite(w) && w > 0) out.push(i) })
    return out
  }
}

/** Per coordinate in [s, e), the median over `xs` (insertion sort into a float64 row), as float32: robust-mean.ts's arithmetic. */
function coordinateMedian (xs: readonly Float32Array[], s: number, e: number): Float32Array {
  const K = xs.length
  const row = new Float64Array(K)
  const out = new Float32Array(e - s)
  for (let i = s; i < e; i++) {
    for (let k = 0; k < K; k++) {
      const v = xs[k][i] - 0
      let j = k
      while (j > 0 && row[j - 1] > v) { row[j] = row[j - 1]; j-- }
      row[j] = v
    }
    out[i - s] = K % 2 === 1 ? row[(K - 1) >> 1] : (row[K / 2 - 1] + row[K / 2]) / 2
  }
  return out
}

function sumSq (x: Float32Array, s: number, e: number, acc: number): number {
  for (let i = s; i < e; i++) { const v = x[i]; acc += v * v }
  return acc
}

/** Continues sum((x[s+i] - c[i])^2) from `acc`. */
function sumSqCentered (x: Float32Array, c: Float32Array, s: number, e: number, acc: number): number {
  for (let i = s; i < e; i++) { const v = x[i] - c[i - s]; acc += v * v }
  return acc
}

/** Continues sum(x[s+i] * ref[i]) from `acc`. */
function dot (x: Float32Array, s: number, ref: Float32Array, acc: number): number {
  for (let i = 0; i < ref.length; i++) acc += x[s + i] * ref[i]
  return acc
}

function median (v: number[]): number {
  const s = [...v].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function stripUndefined<T extends object> (x: T): Partial<T> {
  return Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as Partial<T>
}

function fmt (x: number): string {
  return x.toPrecision(3)
}
