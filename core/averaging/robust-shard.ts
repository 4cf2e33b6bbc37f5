// Robust shard averaging: how a shard owner combines the contributions it received for its shard
// (all-reduce-round.ts calls it where it took a plain weighted mean). A member's declared weight is
// not its own say, and a contribution outside what the group's honest members produce is left out,
// reported and judged (ERR_AVG_OUTLIER, verdict 'reject': the averager bans the peer).
//
// The statistics are core/verify/robust-mean.ts's; what averaging adds is what is judged, and how hard:
//   role 'parameter'       whole parameter vectors: members hold nearly equal values, so their
//                          deviations from the group's coordinate-wise median are judged, by norm only
//                          (deviations from a median share no direction): above paramNormFactor (16) x
//                          the median deviation is an outlier;
//   role 'parameter-grad'  DiLoCo pseudo-gradients (theta_start - theta_local), judged as they are:
//                          norm above gradNormFactor (4) x the median, or cosine to the group's
//                          coordinate-wise median below minCosine (0).
// Where the median norm is 0 (a majority sent identical parameters or zero deltas: members that did
// not train since they last averaged together), the scale is the shard's reference parameters
// (this node's parameters; theta_start for pseudo-gradients): a contribution is an outlier above
// maxRelNorm (1.5) x their norm, so an honest member that did train is not convicted for it (the
// largest honest move measured: 0.73 x) while negated parameters (a deviation of exactly 2 x) are. Small
// contributions are never excluded (an idle member sends exactly zero deltas): they only dilute the
// mean, and their weight is bounded like any other (weightCap 4 x the median declared weight).
// With fewer than 3 contributions nothing tells honest from dishonest: all are kept (robust: false),
// weights as declared; the bounds checks of butterfly.ts still apply. The measured honest spread the
// defaults rest on: docs/averaging.md, "Robust shard averaging".
import type { AveragingRole } from '../codecs/tensor-codecs.ts'
import { robustMean, type RobustMeanResult } from '../verify/robust-mean.ts'
import { AveragingConfigError } from './errors.ts'

export interface RobustAveragingOptions {
  /** False: the plain weighted mean of everything that arrived, weights as declared (the old behaviour). Default true. */
  readonly enabled?: boolean
  /** Role 'parameter': a deviation from the median above this x the median deviation is excluded. Default 16. */
  readonly paramNormFactor?: number
  /** Role 'parameter-grad': a pseudo-gradient norm above this x the median is excluded. Default 4. */
  readonly gradNormFactor?: number
  /** Pseudo-gradients whose cosine to the group's coordinate-wise median is below this are excluded. Default 0. */
  readonly minCosine?: number
  /** Kept weights are capped at weightCap x the median declared weight. Default 4. */
  readonly weightCap?: number
  /** Where the median norm is 0: norms above maxRelNorm x the reference parameters' norm are excluded. Default 1.5. */
  readonly maxRelNorm?: number
  /**
   * The weight a contribution counts with, from the peer and what it declared (before the cap).
   * Default: the declared weight. The seam for weights derived from verified work (the work ledger).
   */
  readonly weightOf?: (peer: string, declared: number) => number
}

export const DEFAULT_ROBUST_AVERAGING = Object.freeze({ enabled: true, paramNormFactor: 16, gradNormFactor: 4, minCosine: 0, weightCap: 4, maxRelNorm: 1.5 })

export interface ShardContribution {
  readonly peer: string
  readonly weight: number
  readonly data: Float32Array
}

/** The norm factor a role's contributions are judged with. */
export function normFactorOf (role: AveragingRole, options: RobustAveragingOptions = {}): number {
  return role === 'parameter' ? options.paramNormFactor ?? DEFAULT_ROBUST_AVERAGING.paramNormFactor : options.gradNormFactor ?? DEFAULT_ROBUST_AVERAGING.gradNormFactor
}

/** The robust mean of one shard's contributions (in member order; ids are the peers). `referenceNorm`: the shard's reference parameters' norm. */
export function robustShardMean (inputs: readonly ShardContribution[], length: number, role: AveragingRole,
  referenceNorm: number, options: RobustAveragingOptions = {}): RobustMeanResult {
  const o = { ...DEFAULT_ROBUST_AVERAGING, ...options }
  const contributions = inputs.map(i => ({ id: i.peer, data: i.data, weight: o.weightOf != null ? o.weightOf(i.peer, i.weight) : i.weight }))
  if (!o.enabled) return robustMean(contributions, length, { normFactor: Number.MAX_VALUE, minNormFactor: Infinity, minCosine: -1, weightCap: Number.MAX_VALUE, zeroMedianScale: Number.MAX_VALUE })
  const normFactor = normFactorOf(role, o)
  return robustMean(contributions, length, {
    center: role === 'parameter' ? 'median' : undefined,
    normFactor,
    minNormFactor: Infinity,
    zeroMedianScale: o.maxRelNorm * referenceNorm / normFactor,
    minCosine: o.minCosine,
    weightCap: o.weightCap
  })
}

/** Refuses robust-averaging options out of range at construction (robustMean would only at the first round). */
export function checkRobustOptions (o: RobustAveragingOptions = {}): void {
  const v = { ...DEFAULT_ROBUST_AVERAGING, ...o }
  for (const k of ['paramNormFactor', 'gradNormFactor'] as const) {
    if (!(v[k] >= 1) || !Number.isFinite(v[k])) throw new AveragingConfigError(`robust.${k} must be a finite number >= 1`)
  }
  if (!(v.minCosine >= -1 && v.minCosine <= 1)) throw new AveragingConfigError('robust.minCosine must be in [-1, 1]')
  if (!(v.weightCap >= 1)) throw new AveragingConfigError('robust.weightCap must be >= 1')
  if (!(v.maxRelNorm >= 0) || !Number.isFinite(v.maxRelNorm)) throw new AveragingConfigError('robust.maxRelNorm must be a finite number >= 0')
}
