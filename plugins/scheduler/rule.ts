// The assignment rule: pure, deterministic functions of (view, clock, epoch). Every node runs them on
// its own copy of the gossiped view; equal views give equal answers, so the swarm agrees on who
// serves what without an orchestrator. The plugin (gossip-scheduler.ts) and the simulator
// (bench/simulate.ts) both call these, and only these, to decide.
//
// Units. Every microbatch crosses every stage once, so demand is equal per stage in microbatches
// per second; stages differ in cost (work per microbatch: blocks, embeddings, LM head), given as
// relative `stageCosts` (default all 1). A node's capacity (work/s) = its throughput at stage s x
// cost(s); it would run capacity / cost(t) microbatches/s at stage t. A stage's throughput T(s) is
// the sum over the nodes counted there; the swarm runs at min over s of T(s), the bottleneck.
//
// Joining: joiners (state joining, stage -1) are ordered by hash(peer, epoch) and each, in turn,
// takes the stage with the lowest T (an empty stage first), its estimated throughput then added
// there, so simultaneous joiners spread out instead of piling onto one stage. Ties between stages:
// hash(peer, epoch) picks among them.
//
// Rebalancing, once per epoch: a greedy plan of at most maxMovesPerEpoch moves. Each step targets
// the current bottleneck b and elects the serving node (not pinned, out of cool-down, from a stage
// it does not serve alone) whose move maximizes min(T'(donor), T'(b)), taken only if that minimum
// exceeds T(b): both stages end above the old bottleneck level, so the sorted stage-throughput
// vector rises strictly with every step and no cycle is possible on a fixed view. The plan as a
// whole is carried out only if it is worth it (hysteresis h): it lifts the bottleneck above
// B x (1 + h), or it lifts at least one more stage out of the band [B, B x (1 + h)] (so two tied
// bottlenecks, or two empty stages, are fixed a few moves at a time); otherwise nobody moves, and
// measurement noise below h moves no one. A node moves only when the plan names it.
//
// Memory budgets: with `stageMemory` (each stage's estimated training bytes, the same on every node:
// a function of the manifest) a node that gossips a budget (`mem`) is never assigned, nor moved to, a
// stage estimated above it: for that node the stage is unavailable. A joiner no stage fits gets none.
import type { NodeState } from '../../core/contracts/scheduler.ts'
import { hash32 } from '../../core/hash.ts'

/** The fields of a heartbeat the rule reads. */
export interface RuleEntry {
  readonly peer: string
  readonly stage: number
  readonly to?: number
  readonly tput: number
  readonly state: NodeState
  readonly pinned: boolean
  readonly since: number
  /** Memory budget, bytes; absent: unbounded. */
  readonly mem?: number
}

export interface RuleConfig {
  readonly stages: number
  /** Relative work per microbatch of each stage (length `stages`); default all 1. */
  readonly stageCosts?: readonly number[]
  /** Fractional gain a move must bring to the bottleneck stage (e.g. 0.15). */
  readonly hysteresis: number
  /** A node that took a stage less than this long ago is not moved again (ms). */
  readonly cooldownMs: number
  /** Most moves planned per epoch; default max(1, floor(counted nodes / (4 x stages))). */
  readonly maxMovesPerEpoch?: number
  /** Estimated memory (bytes) each stage needs to train (length `stages`); absent: every stage fits everyone. */
  readonly stageMemory?: readonly number[]
}

export const DEFAULT_HYSTERESIS = 0.15
/**
 * A node reachable only through a relay publishes this share of its measured throughput: its
 * activations cross the relay twice (in and out), share the relay's uplink with every other relayed
 * node, and add the relay's round trip (Petals lowers relayed servers' throughput the same way).
 * The node applies it to itself, so every node's rule reads the same discounted figure.
 */
export const RELAYED_CAPACITY_FACTOR = 0.5

/** The throughput a node publishes: its own, discounted when it is reachable only through relays. */
export function publishedThroughput (tput: number, relayedOnly: boolean): number {
  return relayedOnly ? tput * RELAYED_CAPACITY_FACTOR : tput
}
export const DEFAULT_COOLDOWN_MS = 10 * 60_000

export interface Move {
  readonly peer: string
  readonly from: number
  readonly to: number
  /** min(T'(from), T'(to)) after the move (microbatches/s). */
  readonly level: number
}

export interface Plan {
  /** Stage throughputs before and after the planned moves. */
  readonly before: readonly number[]
  readonly after: readonly number[]
  readonly moves: readonly Move[]
}

/** 32-bit FNV-1a with murmur3's finalizer (core/hash.ts): tie-break keys here, re-exported for the simulator. */
export { hash32 }

/** The tie-break key of a peer in an epoch (lower wins). */
export function tieKey (peer: string, epoch: number): number {
  return hash32(`${peer}/${epoch}`)
}

export function epochOf (now: number, epochMs: number): number {
  return Math.floor(now / epochMs)
}

export function stageCosts (cfg: Pick<RuleConfig, 'stages' | 'stageCosts'>): number[] {
  const c = cfg.stageCosts
  if (c == null) return new Array<number>(cfg.stages).fill(1)
  if (c.length !== cfg.stages || c.some(x => !(Number.isFinite(x) && x > 0))) {
    throw new RangeError(`stageCosts must hold ${cfg.stages} positive numbers`)
  }
  return [...c]
}

/** Whether a node with budget `mem` can hold stage s (no budget or no estimate: yes). */
export function fitsStage (mem: number | undefined, s: number, cfg: Pick<RuleConfig, 'stageMemory'>): boolean {
  const need = cfg.stageMemory?.[s]
  return mem === undefined || need === undefined || need <= mem
}

/** The stage an entry adds throughput to: its stage (serving or joining it), its move target (leaving with `to`), else -1. */
export function countedStage (e: RuleEntry): number {
  if (e.state === 'leaving') return e.to ?? -1
  return e.stage
}

/**
 * Median capacity (work/s) of the entries that report one; 1 when none does: the prior for an
 * unmeasured node. Computed on first use only (most views have no unmeasured node).
 */
function capacityPrior (entries: readonly RuleEntry[], costs: readonly number[]): () => number {
  let prior: number | undefined
  return () => {
    if (prior === undefined) {
      const caps = entries.filter(e => e.tput > 0).map(e => e.stage >= 0 ? e.tput * costs[e.stage] : e.tput).sort((a, b) => a - b)
      prior = caps.length > 0 ? caps[caps.length >> 1] : 1
    }
    return prior
  }
}

/** Capacity (work/s) of an entry: its throughput times the cost of the stage it was measured on; the prior when it reports none. */
function capacityOf (e: RuleEntry, costs: readonly number[], prior: () => number): number {
  if (!(e.tput > 0)) return prior()
  return e.stage >= 0 ? e.tput * costs[e.stage] : e.tput
}

/** T(s): microbatches/s each stage can run, from the entries counted there. */
export function stageThroughputs (entries: readonly RuleEntry[], cfg: Pick<RuleConfig, 'stages' | 'stageCosts'>): number[] {
  const costs = stageCosts(cfg)
  const prior = capacityPrior(entries, costs)
  const T = new Array<number>(cfg.stages).fill(0)
  for (const e of entries) {
    const s = countedStage(e)
    if (s >= 0 && s < cfg.stages) T[s] += capacityOf(e, costs, prior) / costs[s]
  }
  return T
}

/** The stage with the lowest throughput (lowest index among equals) and that throughput. */
export function bottleneck (T: readonly number[]): { stage: number, value: number } {
  let stage = 0
  for (let s = 1; s < T.length; s++) if (T[s] < T[stage]) stage = s
  return { stage, value: T[stage] }
}

/** min/max of the stage throughputs (1 = perfectly even; 0 when a stage is empty). */
export function balanceOf (T: readonly number[]): number {
  const max = Math.max(...T)
  return max > 0 ? Math.min(...T) / max : 0
}

const EPS = 1e-9

/**
 * Stages for every unassigned joiner of the view (state joining, stage -1), assigned in
 * hash(peer, epoch) order, each to the then least-served stage. Pure: each joiner computes the whole
 * map and reads its own entry, so joiners that see the same view never collide.
 */
export function assignJoiners (entries: readonly RuleEntry[], cfg: Pick<RuleConfig, 'stages' | 'stageCosts' | 'stageMemory'>, epoch: number): Map<string, number> {
  const costs = stageCosts(cfg)
  const prior = capacityPrior(entries, costs)
  const T = stageThroughputs(entries, cfg)
  const joiners = entries.filter(e => e.state === 'joining' && e.stage === -1)
    .map(e => ({ e, key: tieKey(e.peer, epoch) }))
    .sort((a, b) => a.key - b.key || (a.e.peer < b.e.peer ? -1 : a.e.peer > b.e.peer ? 1 : 0))
  const out = new Map<string, number>()
  for (const { e, key } of joiners) {
    const open = T.map((_, s) => s).filter(s => fitsStage(e.mem, s, cfg))
    if (open.length === 0) continue // no stage fits its budget: it stays unassigned
    const min = Math.min(...open.map(s => T[s]))
    const tied = open.filter(s => T[s] <= min + EPS * Math.max(1, min))
    const stage = tied[key % tied.length]
    out.set(e.peer, stage)
    T[stage] += capacityOf(e, costs, prior) / costs[stage]
  }
  return out
}

/** The stage `me` (a joiner of `entries`) takes. */
export function joinStage (entries: readonly RuleEntry[], me: string, cfg: Pick<RuleConfig, 'stages' | 'stageCosts' | 'stageMemory'>, epoch: number): number {
  const stage = assignJoiners(entries, cfg, epoch).get(me)
  if (stage === undefined) throw new RangeError(`${me} is not an unassigned joiner of the view, or no stage fits its memory budget`)
  return stage
}

/** Default most moves per epoch: about one per four nodes of a stage, at least one. */
export function defaultMaxMoves (counted: number, stages: number): number {
  return Math.max(1, Math.floor(counted / (4 * stages)))
}

/** The rebalancing plan of this epoch (see the header). `now` decides who is out of cool-down. */
export function planMoves (entries: readonly RuleEntry[], cfg: RuleConfig, now: number, epoch: number): Plan {
  const costs = stageCosts(cfg)
  const prior = capacityPrior(entries, costs)
  const T = stageThroughputs(entries, cfg)
  const before = [...T]
  const serving = new Array<number>(cfg.stages).fill(0)
  // tie keys are hashed only when a tie needs them
  interface Cand { peer: string, stage: number, cap: number, mem?: number, key?: number }
  const keyOf = (c: Cand): number => (c.key ??= tieKey(c.peer, epoch))
  const cands: Cand[] = []
  let counted = 0
  for (const e of entries) {
    if (countedStage(e) >= 0) counted++
    if (e.state !== 'serving' || e.stage < 0 || e.stage >= cfg.stages) continue
    serving[e.stage]++
    if (!e.pinned && now - e.since >= cfg.cooldownMs) cands.push({ peer: e.peer, stage: e.stage, cap: capacityOf(e, costs, prior), mem: e.mem })
  }
  const maxMoves = cfg.maxMovesPerEpoch ?? defaultMaxMoves(counted, cfg.stages)
  const moved = new Set<Cand>()
  const moves: Move[] = []
  const b0 = bottleneck(T).value
  const bar = b0 * (1 + cfg.hysteresis)
  while (moves.length < maxMoves) {
    const b = bottleneck(T)
    // each step must raise the pair above the current bottleneck (the plan's gain is judged below)
    const floor = b.value + EPS * Math.max(1, b.value)
    let best: Cand | undefined
    let bestLevel = -Infinity
    let bestLeft = -Infinity
    for (const c of cands) {
      // never leave a stage one serves alone
      if (c.stage === b.stage || moved.has(c) || serving[c.stage] < 2 || !fitsStage(c.mem, b.stage, cfg)) continue
      const left = T[c.stage] - c.cap / costs[c.stage]
      const level = Math.min(left, T[b.stage] + c.cap / costs[b.stage])
      if (!(level > floor)) continue
      // best level; on a tie, the donor left with more (the most over-served stage); then the hash
      const better = level > bestLevel + EPS || (Math.abs(level - bestLevel) <= EPS && (left > bestLeft + EPS ||
        (Math.abs(left - bestLeft) <= EPS && best !== undefined && (keyOf(c) < keyOf(best) || (keyOf(c) === keyOf(best) && c.peer < best.peer)))))
      if (better) {
        best = c
        bestLevel = level
        bestLeft = left
      }
    }
    if (best === undefined) break
    T[best.stage] -= best.cap / costs[best.stage]
    T[b.stage] += best.cap / costs[b.stage]
    serving[best.stage]--
    serving[b.stage]++
    moved.add(best)
    moves.push({ peer: best.peer, from: best.stage, to: b.stage, level: bestLevel })
  }
  // hysteresis: the plan must lift the bottleneck by the margin, or at least lift one more stage
  // out of the band [min, min x (1 + h)] (so tied bottlenecks and empty stages are fixed a few
  // moves at a time), without lowering the minimum
  const within = (xs: readonly number[]): number => xs.filter(x => x <= bar).length
  const worth = moves.length > 0 && bottleneck(T).value >= b0 && (bottleneck(T).value > bar || within(T) < within(before))
  return { before, after: T, moves: worth ? moves : [] }
}

/** The move the plan elects for `me`, if any. */
export function electedMove (entries: readonly RuleEntry[], me: string, cfg: RuleConfig, now: number, epoch: number): Move | undefined {
  return planMoves(entries, cfg, now, epoch).moves.find(m => m.peer === me)
}
