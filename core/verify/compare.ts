// Comparing a recomputed tensor (the checker's own forward or backward of a hop) with the one a
// peer claimed (what it sent, decoded), and the verdict a check turns into: pass, or fail with one
// typed reason. The reference is the recomputation: errors are relative to it, so a claimant can
// not loosen the test by inflating what it sends.
//
// Metrics (float64 accumulation, a = claimed, b = reference):
//   relL2      ||a - b|| / ||b||        the headline: 0 for bit-identical, ~1 for unrelated tensors
//   cosine     <a,b> / (||a|| ||b||)    direction: -1 for a sign flip, ~0 for random values
//   normRatio  ||a|| / ||b||            scale: 10 for a x10 gradient, ~0 for a lazy all-zero one
//   maxAbs     max |a - b|, and maxAbsRel = maxAbs / max|b|: a few elements changed a lot
// One tensor of the reference with all zeros: relL2 and normRatio are 0 when the claim is zero too,
// Infinity otherwise; cosine is 1 for two zero tensors and 0 when only one is zero.
//
// A reason is `conclusive` when it convicts the claimant (wrong shape, non-finite values sent, any
// metric outside tolerance); a non-finite recomputation is not: the checker's backend or the input
// is at fault, never the claim alone. Defaults (DEFAULT_TOLERANCE) are set from the honest spread
// measured by bench/verify-spread.ts; docs/verification.md has the figures and the argument.
import { VerifyOptionsError } from './errors.ts'

export interface TensorLike {
  readonly data: Float32Array
  readonly shape: readonly number[]
}

export interface TensorDiff {
  /** Elements compared. */
  readonly n: number
  readonly relL2: number
  readonly cosine: number
  readonly normRatio: number
  readonly maxAbs: number
  readonly maxAbsRel: number
  readonly claimedNorm: number
  readonly referenceNorm: number
}

export interface Tolerance {
  /** Largest relL2 accepted. */
  readonly maxRelL2: number
  /** Smallest cosine accepted. */
  readonly minCosine: number
  /** Accepted ||claimed|| / ||reference||, inclusive. */
  readonly normRatio: readonly [number, number]
  /** Largest max|a - b| / max|b| accepted. */
  readonly maxAbsRel: number
}

export type MismatchReason = 'shape' | 'non-finite-claimed' | 'non-finite-reference' | 'rel-l2' | 'cosine' | 'norm-ratio' | 'max-abs'

export type CompareVerdict =
  | { readonly ok: true, readonly diff: TensorDiff }
  | {
    readonly ok: false
    readonly reason: MismatchReason
    /** True when the reason convicts the claimant (everything but a non-finite recomputation). */
    readonly conclusive: boolean
    readonly detail: string
    /** The metrics, where both tensors were comparable (metric reasons). */
    readonly diff: TensorDiff | null
  }

/**
 * Defaults for f32, fp16 and int8-block hops, from the honest spread measured on the trained tiny
 * model (bench/verify-spread.ts; docs/verification.md). Worst honest pair measured: a claim through
 * the int8-block codec against any backend's recomputation, relL2 5.7e-3, cosine 1 - 1.6e-5, norm
 * ratio 1 +- 2.7e-5, maxAbsRel 3.9e-3 (CPU thread counts are bit-identical; WebGPU f32 1.4e-7,
 * f16 matmuls 3.9e-5). The bounds sit ~5x (relL2), ~13x (maxAbsRel) and ~700x (norm) above that,
 * room for backends not measured here (bf16 GPU matmuls: unit roundoff 3.9e-3) and deeper stages,
 * and far below every attack (relL2: random 1.4, x10 9, sign flip 2, lazy 1.2-1.4, zeros 1; a x1.05
 * scaling still fails the norm ratio). Top-k and error feedback need their own tolerance (the doc).
 */
export const DEFAULT_TOLERANCE: Readonly<Tolerance> = Object.freeze({
  maxRelL2: 0.03,
  minCosine: 0.999,
  normRatio: Object.freeze([0.98, 1.02]) as readonly [number, number],
  maxAbsRel: 0.05
})

/** Metrics of claimed against reference (equal lengths; finite values assumed, else NaN metrics). */
export function tensorDiff (claimed: Float32Array, reference: Float32Array): TensorDiff {
  if (claimed.length !== reference.length) throw new VerifyOptionsError(`tensorDiff: lengths differ (${claimed.length} vs ${reference.length})`)
  let dd = 0
  let aa = 0
  let bb = 0
  let ab = 0
  let maxAbs = 0
  let maxRef = 0
  for (let i = 0; i < claimed.length; i++) {
    const a = claimed[i]
    const b = reference[i]
    const d = a - b
    dd += d * d
    aa += a * a
    bb += b * b
    ab += a * b
    const ad = Math.abs(d)
    if (ad > maxAbs || Number.isNaN(ad)) maxAbs = ad
    const ab1 = Math.abs(b)
    if (ab1 > maxRef) maxRef = ab1
  }
  const claimedNorm = Math.sqrt(aa)
  const referenceNorm = Math.sqrt(bb)
  const rel = (x: number, by: number): number => by > 0 ? x / by : (x === 0 ? 0 : Infinity)
  const cosine = claimedNorm > 0 && referenceNorm > 0 ? ab / (claimedNorm * referenceNorm) : (claimedNorm === referenceNorm ? 1 : 0)
  return {
    n: claimed.length,
    relL2: rel(Math.sqrt(dd), referenceNorm),
    cosine,
    normRatio: rel(claimedNorm, referenceNorm),
    maxAbs,
    maxAbsRel: rel(maxAbs, maxRef),
    claimedNorm,
    referenceNorm
  }
}

/** The verdict on a claimed tensor against the checker's recomputation. */
export function compareTensors (claimed: TensorLike, reference: TensorLike, tolerance: Tolerance = DEFAULT_TOLERANCE): CompareVerdict {
  checkTolerance(tolerance)
  const fail = (reason: MismatchReason, detail: string, diff: TensorDiff | null = null, conclusive = true): CompareVerdict =>
    ({ ok: false, reason, conclusive, detail, diff })
  const cs = claimed.shape
  const rs = reference.shape
  if (cs.length !== rs.length || cs.some((d, i) => d !== rs[i]) || claimed.data.length !== reference.data.length || claimed.data.length !== numel(rs)) {
    return fail('shape', `claimed [${cs.join(',')}] (${claimed.data.length} values), recomputed [${rs.join(',')}] (${reference.data.length} values)`)
  }
  const badClaim = firstNonFinite(claimed.data)
  if (badClaim >= 0) return fail('non-finite-claimed', `claimed[${badClaim}] is ${claimed.data[badClaim]}`)
  const badRef = firstNonFinite(reference.data)
  if (badRef >= 0) return fail('non-finite-reference', `recomputed[${badRef}] is ${reference.data[badRef]}`, null, false)
  const diff = tensorDiff(claimed.data, reference.data)
  const t = tolerance
  if (!(diff.relL2 <= t.maxRelL2)) return fail('rel-l2', `relative L2 error ${fmt(diff.relL2)} > ${t.maxRelL2}`, diff)
  if (!(diff.cosine >= t.minCosine)) return fail('cosine', `cosine ${fmt(diff.cosine)} < ${t.minCosine}`, diff)
  if (!(diff.normRatio >= t.normRatio[0] && diff.normRatio <= t.normRatio[1])) {
    return fail('norm-ratio', `norm ratio ${fmt(diff.normRatio)} outside [${t.normRatio[0]}, ${t.normRatio[1]}]`, diff)
  }
  if (!(diff.maxAbsRel <= t.maxAbsRel)) return fail('max-abs', `max |error| ${fmt(diff.maxAbs)} is ${fmt(diff.maxAbsRel)} of max |recomputed| > ${t.maxAbsRel}`, diff)
  return { ok: true, diff }
}

function checkTolerance (t: Tolerance): void {
  const pos = (v: number): boolean => typeof v === 'number' && v >= 0 && !Number.isNaN(v)
  if (!pos(t.maxRelL2) || !pos(t.maxAbsRel)) throw new VerifyOptionsError('tolerance: maxRelL2 and maxAbsRel must be >= 0')
  if (typeof t.minCosine !== 'number' || !(t.minCosine >= -1 && t.minCosine <= 1)) throw new VerifyOptionsError('tolerance: minCosine must be in [-1, 1]')
  const [lo, hi] = t.normRatio
  if (!pos(lo) || !pos(hi) || lo > hi) throw new VerifyOptionsError('tolerance: normRatio must be [lo, hi] with 0 <= lo <= hi')
}

function firstNonFinite (x: Float32Array): number {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return i
  return -1
}

function numel (shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

function fmt (x: number): string {
  return Number.isFinite(x) ? x.toPrecision(3) : String(x)
}
