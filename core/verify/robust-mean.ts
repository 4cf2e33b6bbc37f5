// Robust aggregation of averaging contributions: the mean of K vectors (whole parameter vectors,
// pseudo-gradients, or one butterfly shard of each) where a member's declared weight is not its own
// say and a contribution outside what honest peers produce is left out and reported. Pure: no I/O,
// no state; the averager calls it where it now takes a plain weighted mean.
//
// Steps, each excluding with a typed reason (in this order, so one bad contribution cannot skew the
// statistics that judge the others):
//   1. validity   wrong length ('length'), a NaN/Inf value ('non-finite'), a weight that is not a
//                 finite number > 0 ('weight');
//   2. norm       ||x - center|| against the median over the valid ones (zeroMedianScale where that
//                 median is 0): above normFactor x median ('norm-high': a x10 gradient), below
//                 median / minNormFactor ('norm-low': a lazy or all-zero one);
//   3. direction  cosine of (x - center) to the coordinate-wise median of the survivors below
//                 minCosine ('direction': a sign flip). The median, unlike the mean, stays inside the
//                 honest values of every coordinate while attackers are a minority;
//   4. weight     each kept weight clamped to [minWeight, maxWeight], then capped at weightCap x the
//                 median declared weight of the valid contributions (an attacker declaring 1e15 counts
//                 as weightCap typical members at most).
// The mean is the weighted mean of the kept contributions (float64 accumulation).
//
// Why these defaults:
//   normFactor 3    honest members of a stage run the same optimizer for the same steps on different
//                   data, so their updates' norms differ by tens of percent, not by 3x; a contribution
//                   that passes carries at most 3x the typical norm (the x10 attack fails);
//   minCosine 0     honest updates share the descent direction but are noisy (small batches: cosines
//                   among honest pseudo-gradients can be ~0.1), so any stricter bound risks convicting
//                   honest members; 0 still excludes every contribution pointing away from the group;
//   weightCap 4     weights are samples since the last round, so a peer 4x faster than the typical one
//                   still counts fully; and a contribution that passed steps 2-3 lies in the honest
//                   envelope, so its weight can only move the mean within that envelope.
// Steps 2 and 3 need a majority to define "honest": with fewer than 3 valid contributions they are
// skipped and the result says so (robust: false); give `center` where contributions share a large
// common part (in params mode: the last agreed parameters, so deltas are judged, not parameters), or
// center 'median': deviations from the coordinate-wise median of the valid contributions are judged
// by norm only (they share no direction: their own median is ~0 by construction, so step 3 is skipped).
import { VerifyOptionsError } from './errors.ts'

export interface Contribution {
  /** Who sent it (a peer id); reported back in kept / excluded. */
  readonly id: string
  readonly data: Float32Array
  /** Declared weight (samples since the last round). */
  readonly weight: number
}

export interface RobustMeanOptions {
  /** Kept weights are raised to at least this (default 0: unchanged). */
  readonly minWeight?: number
  /** Kept weights are lowered to at most this (default Infinity). */
  readonly maxWeight?: number
  /** Kept weights are capped at this multiple of the median valid weight (default 4). */
  readonly weightCap?: number
  /** Norms above median x normFactor are excluded (default 3). */
  readonly normFactor?: number
  /** Norms below median / minNormFactor are excluded (default: normFactor; Infinity: never). */
  readonly minNormFactor?: number
  /**
   * The scale the factors multiply where the median norm is 0 (a majority sent the center itself:
   * identical parameters, zero deltas). Default 0: then every nonzero norm is 'norm-high'.
   */
  readonly zeroMedianScale?: number
  /** Cosine to the coordinate-wise median below this is excluded (default 0). */
  readonly minCosine?: number
  /**
   * Judge (data - center) instead of data: the last agreed parameters (same length as the data), or
   * 'median': the coordinate-wise median of the valid contributions (norm step only).
   */
  readonly center?: Float32Array | 'median'
}

type Tunables = Required<Omit<RobustMeanOptions, 'center' | 'minNormFactor'>> & { readonly minNormFactor?: number }

export const DEFAULT_ROBUST_MEAN: Readonly<Tunables> = Object.freeze({
  minWeight: 0,
  maxWeight: Infinity,
  weightCap: 4,
  normFactor: 3,
  zeroMedianScale: 0,
  minCosine: 0
})

export type ExclusionReason = 'length' | 'non-finite' | 'weight' | 'norm-high' | 'norm-low' | 'direction'

export interface Exclusion {
  readonly id: string
  readonly reason: ExclusionReason
  readonly detail: string
}

export interface KeptContribution {
  readonly id: string
  readonly declaredWeight: number
  /** The weight the mean used (clamped and capped). */
  readonly weight: number
  readonly norm: number
  /** Cosine to the coordinate-wise median; NaN where the direction step was skipped. */
  readonly cosine: number
}

export interface RobustMeanResult {
  /** Weighted mean of the kept contributions; null when none was kept. */
  readonly mean: Float32Array | null
  readonly kept: KeptContribution[]
  readonly excluded: Exclusion[]
  /** Median norm of the valid contributions (NaN with none). */
  readonly medianNorm: number
  /** False when fewer than 3 valid contributions left no majority to judge norm and direction by. */
  readonly robust: boolean
}

/** Robust weighted mean of `contributions`, each of `length` elements. */
export function robustMean (contributions: readonly Contribution[], length: number, options: RobustMeanOptions = {}): RobustMeanResult {
  const o = { ...DEFAULT_ROBUST_MEAN, ...stripUndefined(options) }
  checkOptions(o, length)
  const minNormFactor = o.minNormFactor ?? o.normFactor
  const byMedian = options.center === 'median'
  if (options.center != null && !byMedian && (!(options.center instanceof Float32Array) || options.center.length !== length)) {
    throw new VerifyOptionsError(`robustMean: center must be 'median' or a Float32Array of ${length} elements`)
  }
  const excluded: Exclusion[] = []
  const exclude = (c: Contribution, reason: ExclusionReason, detail: string): void => { excluded.push({ id: c.id, reason, detail }) }

  // 1. validity
  const valid: Array<{ c: Contribution, norm: number }> = []
  for (const c of contributions) {
    if (!(c.data instanceof Float32Array) || c.data.length !== length) { exclude(c, 'length', `${(c.data as Float32Array | undefined)?.length} elements, expected ${length}`); continue }
    const bad = firstNonFinite(c.data)
    if (bad >= 0) { exclude(c, 'non-finite', `element ${bad} is ${c.data[bad]}`); continue }
    if (typeof c.weight !== 'number' || !Number.isFinite(c.weight) || c.weight <= 0) { exclude(c, 'weight', `declared weight ${c.weight} is not a finite number > 0`); continue }
    valid.push({ c, norm: 0 })
  }
  const center = byMedian ? (valid.length > 0 ? coordinateMedian(valid.map(v => v.c.data), length) : undefined) : options.center as Float32Array | undefined
  for (const v of valid) v.norm = normOf(v.c.data, center)
  const medianNorm = valid.length > 0 ? median(valid.map(v => v.norm)) : NaN
  const robust = valid.length >= 3

  // 2. norm
  let survivors = valid
  if (robust) {
    survivors = []
    const scale = medianNorm > 0 ? medianNorm : o.zeroMedianScale
    const of = medianNorm > 0 ? `median ${fmt(medianNorm)}` : `${fmt(scale)} (the median is 0)`
    for (const v of valid) {
      if (v.norm > scale * o.normFactor) exclude(v.c, 'norm-high', `norm ${fmt(v.norm)} > ${o.normFactor} x ${of}`)
      else if (v.norm < scale / minNormFactor) exclude(v.c, 'norm-low', `norm ${fmt(v.norm)} < ${of} / ${minNormFactor}`)
      else survivors.push(v)
    }
  }

  // 3. direction (deviations from the median have none)
  const cosines = new Map<Contribution, number>()
  if (robust && !byMedian && survivors.length >= 3) {
    const ref = coordinateMedian(survivors.map(v => v.c.data), length, center)
    const refNorm = normOf(ref)
    if (refNorm > 0) {
      const kept: typeof survivors = []
      for (const v of survivors) {
        const cos = v.norm > 0 ? dotCentered(v.c.data, ref, center) / (v.norm * refNorm) : 0
        cosines.set(v.c, cos)
        if (cos < o.minCosine) exclude(v.c, 'direction', `cosine ${fmt(cos)} to the group's median < ${o.minCosine}`)
        else kept.push(v)
      }
      survivors = kept
    }
  }

  // 4. weights and the mean
  const medianWeight = valid.length > 0 ? median(valid.map(v => v.c.weight)) : 0
  const kept: KeptContribution[] = survivors.map(({ c, norm }) => ({
    id: c.id,
    declaredWeight: c.weight,
    weight: Math.min(Math.max(c.weight, o.minWeight), o.maxWeight, o.weightCap * medianWeight),
    norm,
    cosine: cosines.get(c) ?? NaN
  }))
  let mean: Float32Array | null = null
  if (kept.length > 0) {
    const acc = new Float64Array(length)
    let wsum = 0
    for (const [i, k] of kept.entries()) {
      const d = survivors[i].c.data
      wsum += k.weight
      for (let e = 0; e < length; e++) acc[e] += k.weight * d[e]
    }
    mean = new Float32Array(length)
    for (let e = 0; e < length; e++) mean[e] = acc[e] / wsum
  }
  return { mean, kept, excluded, medianNorm, robust }
}

/** Per coordinate, the median of (x - center) over `xs` (K small: insertion sort into a scratch row). */
function coordinateMedian (xs: readonly Float32Array[], length: number, center?: Float32Array): Float32Array {
  const K = xs.length
  const row = new Float64Array(K)
  const out = new Float32Array(length)
  for (let e = 0; e < length; e++) {
    const c = center != null ? center[e] : 0
    for (let k = 0; k < K; k++) {
      const v = xs[k][e] - c
      let j = k
      while (j > 0 && row[j - 1] > v) { row[j] = row[j - 1]; j-- }
      row[j] = v
    }
    out[e] = K % 2 === 1 ? row[(K - 1) >> 1] : (row[K / 2 - 1] + row[K / 2]) / 2
  }
  return out
}

function normOf (x: Float32Array, center?: Float32Array): number {
  let s = 0
  for (let i = 0; i < x.length; i++) {
    const v = center != null ? x[i] - center[i] : x[i]
    s += v * v
  }
  return Math.sqrt(s)
}

function dotCentered (x: Float32Array, ref: Float32Array, center?: Float32Array): number {
  let s = 0
  for (let i = 0; i < x.length; i++) s += (center != null ? x[i] - center[i] : x[i]) * ref[i]
  return s
}

function median (v: number[]): number {
  const s = [...v].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function firstNonFinite (x: Float32Array): number {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return i
  return -1
}

function checkOptions (o: Tunables, length: number): void {
  if (!Number.isSafeInteger(length) || length < 0) throw new VerifyOptionsError(`robustMean: length must be a non-negative integer, got ${length}`)
  if (!(o.minWeight >= 0) || !(o.maxWeight >= o.minWeight)) throw new VerifyOptionsError('robustMean: need 0 <= minWeight <= maxWeight')
  if (!(o.weightCap >= 1)) throw new VerifyOptionsError('robustMean: weightCap must be >= 1')
  if (!(o.normFactor >= 1) || !Number.isFinite(o.normFactor)) throw new VerifyOptionsError('robustMean: normFactor must be a finite number >= 1')
  if (o.minNormFactor !== undefined && !(o.minNormFactor >= 1)) throw new VerifyOptionsError('robustMean: minNormFactor must be >= 1 (Infinity: no lower bound)')
  if (!(o.zeroMedianScale >= 0) || !Number.isFinite(o.zeroMedianScale)) throw new VerifyOptionsError('robustMean: zeroMedianScale must be a finite number >= 0')
  if (!(o.minCosine >= -1 && o.minCosine <= 1)) throw new VerifyOptionsError('robustMean: minCosine must be in [-1, 1]')
}

function stripUndefined<T extends object> (x: T): Partial<T> {
  return Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as Partial<T>
}

function fmt (x: number): string {
  return x.toPrecision(3)
}
