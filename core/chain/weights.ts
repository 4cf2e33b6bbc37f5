// Weights from verified work: the validator's work ledger (core/verify/work-ledger.ts) turned into the
// u16 weight vector subtensor's set_weights takes. Pure and deterministic: the same ledger, bindings and
// metagraph always give the same weights, so a test (or an operator reading `status --json`) can say
// exactly why a uid got what it got (`explain`).
//
// Per peer id p (only what this node verified: signed commitments and its own or verified checks):
//
//   work(p)        = sum over stage s and kind k of tokens(p, s, k) x stageCost(s, k)
//   reliability(p) = (passed + PRIOR_PASSED) / (passed + failed + withheld + copies + PRIOR_PASSED + PRIOR_FAILED)
//   score(p)       = work(p) x reliability(p)
//
// checks count both sources (this node's own and the accusations it verified). The prior (one virtual
// pass, one virtual failure: Laplace's rule) means unchecked work earns half, each passed check moves a
// peer towards 1 and each failed, withheld or copied hop away from it; no denominator is ever 0, and a
// handful of checks never gives a certainty of 0 or 1. Every term that counts against a peer sits in the
// denominator only, so more failed checks can never raise a score (the sign error the field hit).
//
// Per hotkey h (the weight's unit on chain): score(h) = sum of score(p) over the peers bound to h, and 0
//   - if any peer bound to h is convicted (peer ids cost nothing to make; the hotkey's registration does),
//   - for this validator's own hotkey (a validator does not weight itself),
// and a peer without a verified binding (hotkeyOf undefined) or whose hotkey has no uid in the metagraph
// earns nothing for anyone (listed in `unmapped`).
//
// Weights: score / max score x 65535, rounded, uids ascending, zeros left out; a positive score never
// rounds to 0 (min 1). Where the subnet's maxWeightLimit < 65535, shares are capped at limit/65535 of
// the total and the rest spread over the others in proportion to their scores (water filling), then
// scaled again to a largest weight of 65535; `maxWeightLimitMet` is false where no vector can meet the
// limit (fewer positive uids than 65535/limit), and the chain would refuse it (MaxWeightExceeded).
import type { HopKind } from '../verify/commitment.ts'
import type { LedgerStatus, PeerLedger } from '../verify/work-ledger.ts'
import { WeightsInvariantError } from './errors.ts'
import type { Metagraph } from './types.ts'

export const U16_MAX = 65535
/** Virtual passed and failed checks every peer starts with (see the top of this file). */
export const PRIOR_PASSED = 1
export const PRIOR_FAILED = 1

/** Relative compute of one token through `stage` in direction `kind` (finite, >= 0). */
export type StageCost = (stage: number, kind: HopKind) => number

/** Every stage costs the same; a backward hop costs twice a forward one (two matmuls per forward one). */
export const uniformStageCost: StageCost = (_stage, kind) => kind === 'backward' ? 2 : 1

/** Cost by the layers each stage holds (`layersPerStage[s]`), backward 2x; a stage the run does not have costs 0. */
export function layerStageCost (layersPerStage: readonly number[]): StageCost {
  for (const n of layersPerStage) if (!(Number.isFinite(n) && n >= 0)) throw new WeightsInvariantError(`layersPerStage holds ${n}`)
  return (stage, kind) => (layersPerStage[stage] ?? 0) * (kind === 'backward' ? 2 : 1)
}

export interface WeightsInput {
  readonly ledger: LedgerStatus
  /** The hotkey a peer id's binding verified for, else undefined. */
  readonly hotkeyOf: (peerId: string) => string | undefined
  readonly metagraph: Metagraph
  readonly stageCost: StageCost
  /** This validator's hotkey: never weighted. */
  readonly selfHotkey?: string
  /** The subnet's max_weight_limit (u16; 65535 or absent: none). */
  readonly maxWeightLimit?: number
}

export interface PeerScore {
  readonly peer: string
  readonly work: number
  readonly reliability: number
  readonly score: number
  readonly convicted: boolean
}

export interface HotkeyWeight {
  readonly hotkey: string
  /** Undefined where the hotkey has no uid in the metagraph. */
  readonly uid: number | undefined
  readonly peers: readonly PeerScore[]
  /** Sum of the peers' scores, 0 where `zeroed`. */
  readonly score: number
  /** u16 weight (0: left out of `uids`). */
  readonly weight: number
  readonly zeroed?: 'convicted' | 'self' | 'not-registered'
  /** One line for status and tests. */
  readonly explain: string
}

export interface WeightsResult {
  /** Ascending, each with a positive weight. */
  readonly uids: number[]
  readonly weights: number[]
  /** Every hotkey some ledger peer is bound to, by uid then hotkey. */
  readonly byHotkey: HotkeyWeight[]
  /** Ledger peers without a verified binding: they earn nothing. */
  readonly unmapped: string[]
  readonly maxWeightLimitMet: boolean
}

/** The weights the ledger earns (see the top of this file). Throws WeightsInvariantError on a NaN or negative intermediate (a bug). */
export function ledgerToWeights (input: WeightsInput): WeightsResult {
  const uidOf = new Map<string, number>()
  for (const n of input.metagraph.neurons) uidOf.set(n.hotkey, n.uid)
  const peersBy = new Map<string, PeerScore[]>()
  const unmapped: string[] = []
  for (const peer of Object.keys(input.ledger.peers).sort()) {
    const hotkey = input.hotkeyOf(peer)
    if (hotkey == null) { unmapped.push(peer); continue }
    const list = peersBy.get(hotkey) ?? []
    list.push(peerScore(peer, input.ledger.peers[peer], input.stageCost))
    peersBy.set(hotkey, list)
  }
  const rows: Array<Omit<HotkeyWeight, 'weight' | 'explain'>> = []
  for (const [hotkey, peers] of peersBy) {
    const uid = uidOf.get(hotkey)
    const zeroed = hotkey === input.selfHotkey
      ? 'self'
      : peers.some(p => p.convicted) ? 'convicted' : uid == null ? 'not-registered' : undefined
    const score = zeroed != null ? 0 : finite('hotkey score', peers.reduce((a, p) => a + p.score, 0))
    rows.push({ hotkey, uid, peers, score, ...(zeroed != null ? { zeroed } : {}) })
  }
  rows.sort((a, b) => (a.uid ?? Infinity) - (b.uid ?? Infinity) || (a.hotkey < b.hotkey ? -1 : a.hotkey > b.hotkey ? 1 : 0))

  const positive = rows.filter(r => r.uid != null && r.score > 0)
  const limit = input.maxWeightLimit ?? U16_MAX
  const { values, met } = toU16(positive.map(r => r.score), limit)
  const weightOf = new Map<string, number>()
  positive.forEach((r, i) => weightOf.set(r.hotkey, values[i]))
  const byHotkey = rows.map(r => {
    const weight = weightOf.get(r.hotkey) ?? 0
    return { ...r, weight, explain: explain(r, weight) }
  })
  const kept = byHotkey.filter(r => r.weight > 0)
  return { uids: kept.map(r => r.uid as number), weights: kept.map(r => r.weight), byHotkey, unmapped, maxWeightLimitMet: met }
}

/** One peer's work, reliability and score from its ledger entry. */
export function peerScore (peer: string, l: PeerLedger, stageCost: StageCost): PeerScore {
  let work = 0
  for (const [stage, byKind] of Object.entries(l.work)) {
    for (const [kind, w] of Object.entries(byKind) as Array<[HopKind, { tokens: number }]>) {
      const cost = finite(`stageCost(${stage}, ${kind})`, stageCost(Number(stage), kind))
      work += finite(`tokens of ${peer}`, w.tokens) * cost
    }
  }
  finite(`work of ${peer}`, work)
  const c = l.checks
  const passed = finite('passed', c.own.passed + c.accusation.passed)
  const against = finite('failed', c.own.failed + c.accusation.failed) + finite('withheld', c.own.withheld + c.accusation.withheld) +
    finite('copies', l.copies)
  const reliability = finite(`reliability of ${peer}`, (passed + PRIOR_PASSED) / (passed + against + PRIOR_PASSED + PRIOR_FAILED))
  return { peer, work, reliability, score: l.convicted ? 0 : finite(`score of ${peer}`, work * reliability), convicted: l.convicted }
}

/**
 * Positive scores to u16 weights, largest 65535, none 0; capped so no share of the total exceeds
 * limit/65535 where that is possible (`met`).
 */
export function toU16 (scores: readonly number[], limit = U16_MAX): { values: number[], met: boolean } {
  if (scores.length === 0) return { values: [], met: true }
  for (const s of scores) if (!(s > 0 && Number.isFinite(s))) throw new WeightsInvariantError(`score ${s} is not a positive finite number`)
  if (!(Number.isInteger(limit) && limit >= 0 && limit <= U16_MAX)) throw new WeightsInvariantError(`maxWeightLimit ${limit} is not a u16`)
  const capped = limit < U16_MAX
  const shares = capped ? waterFill(scores, limit / U16_MAX) : scores
  const top = Math.max(...shares)
  const values = shares.map(s => Math.max(1, Math.min(U16_MAX, Math.round(finite('scaled weight', s / top * U16_MAX)))))
  if (!capped) return { values, met: true }
  return { values, met: fitLimit(values, limit) }
}

/** Shares proportional to `scores`, none above `cap` of the total where feasible (else all equal). */
function waterFill (scores: readonly number[], cap: number): number[] {
  const n = scores.length
  if (cap * n <= 1) return scores.map(() => 1 / n)
  const shares = new Array<number>(n).fill(0)
  const free = new Set(scores.map((_, i) => i))
  let left = 1
  for (;;) {
    const sum = [...free].reduce((a, i) => a + scores[i], 0)
    const over = [...free].filter(i => scores[i] / sum * left > cap)
    if (over.length === 0) {
      for (const i of free) shares[i] = finite('share', scores[i] / sum * left)
      return shares
    }
    for (const i of over) { shares[i] = cap; free.delete(i); left -= cap }
  }
}

/**
 * Rounding may leave the largest share a hair above the limit: raise the smaller weights by 1 at a
 * time until the chain's check (largest / sum <= limit / 65535) holds with a margin. False if it cannot.
 */
function fitLimit (values: number[], limit: number): boolean {
  const ok = (): boolean => {
    const sum = values.reduce((a, v) => a + v, 0)
    return Math.max(...values) * U16_MAX * (1 + 1e-7) <= limit * sum
  }
  for (let round = 0; round < U16_MAX && !ok(); round++) {
    const top = Math.max(...values)
    let raised = false
    for (let i = 0; i < values.length && !ok(); i++) if (values[i] < top) { values[i]++; raised = true }
    if (!raised) return false
  }
  return ok()
}

function explain (r: Omit<HotkeyWeight, 'weight' | 'explain'>, weight: number): string {
  const peers = r.peers.map(p => `${p.peer.slice(-8)}: work ${round(p.work)} x reliability ${round(p.reliability)}${p.convicted ? ' (convicted)' : ''}`).join('; ')
  const why = r.zeroed === 'self' ? 'own hotkey: not weighted' : r.zeroed === 'convicted' ? 'a bound peer is convicted: 0' : r.zeroed === 'not-registered' ? 'no uid in the metagraph: 0' : `score ${round(r.score)} -> weight ${weight}`
  return `${why} [${peers}]`
}

function round (x: number): number {
  return Math.round(x * 1000) / 1000
}

function finite (what: string, x: number): number {
  if (!(Number.isFinite(x) && x >= 0)) throw new WeightsInvariantError(`${what} is ${x}`)
  return x
}
