// `layerswarm simulate`: the scheduler's real decision code (plugins/scheduler/rule.ts: joinStage,
// planMoves, the same calls the plugin makes) driven over a simulated swarm, because 500 real
// gossipsub nodes do not fit in one process on a small machine. What is simulated:
//   - nodes: log-normal capacities; the initial population arrives over a ramp, then Poisson churn
//     (exponential lifetimes, arrivals at the rate that keeps the population steady);
//   - gossip: every node publishes a heartbeat every `heartbeatS` (its state at that time, throughput
//     with measurement noise); each heartbeat reaches each other node after its own log-normal
//     latency, or is lost; a node's view holds, per peer, the newest heartbeat that reached it,
//     expired `ttlS` after arrival. Views are computed exactly, on demand, from these rules;
//   - the plugin's timing: a joiner listens `listenS`, then fetches state for `fetchS`; at every
//     epoch each serving node checks the plan after a random delay (and every heartbeat while a
//     stage is empty); a mover drains `drainS`, then fetches `fetchS`.
// Like the plugin, a node also publishes at once on every state change. Ground truth counts a node
// at a stage only while it is serving (not while joining, fetching or draining).
// Everything random derives from --seed: equal seeds give equal reports.
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import {
  balanceOf, electedMove, joinStage, stageCosts as costsOf, type RuleConfig, type RuleEntry
} from '../plugins/scheduler/rule.ts'
import type { NodeState } from '../core/contracts/scheduler.ts'
import { mulberry32 } from '../core/model/prng.ts'
import { machineInfo, round, type BenchReport, type BenchResult } from './report.ts'

export interface SimOptions {
  nodes: number
  stages: number
  seed: number
  /** Simulated time (hours). */
  hours: number
  /** The initial population arrives over this many seconds. */
  rampS: number
  /** Mean node lifetime (hours, exponential); 0 disables churn. */
  lifetimeH: number
  /** Sigma of the log-normal capacities (median 1 microbatch/s at a unit-cost stage). */
  capacitySigma: number
  /** +- fraction of uniform noise on every reported throughput. */
  noise: number
  heartbeatS: number
  ttlS: number
  epochS: number
  jitterS: number
  listenS: number
  drainS: number
  fetchS: number
  /** Median one-way gossip latency (ms) and the sigma of its log-normal. */
  latencyMs: number
  latencySigma: number
  /** Probability that a heartbeat never reaches a given node. */
  loss: number
  hysteresis: number
  cooldownS: number
  maxMovesPerEpoch?: number
  stageCosts?: number[]
  /** At this hour, kill every node of one stage (null: never). Default: half the run. */
  killAtH: number | null
  /** The balance the report calls converged. */
  balanceTarget: number
  /**
   * 'join': the initial population joins through the rule over the ramp. 'random': it starts at
   * time 0 already serving uniformly random stages (out of cool-down), which measures how fast
   * rebalancing alone converges.
   */
  start: 'join' | 'random'
  /** Keep the per-epoch samples in the summary (`trace`). */
  trace?: boolean
}

export const DEFAULT_SIM: SimOptions = {
  nodes: 500,
  stages: 8,
  seed: 1,
  hours: 4,
  rampS: 600,
  lifetimeH: 3,
  capacitySigma: 0.5,
  noise: 0.05,
  heartbeatS: 5,
  ttlS: 20,
  epochS: 60,
  jitterS: 10,
  listenS: 10.5,
  drainS: 5,
  fetchS: 30,
  latencyMs: 150,
  latencySigma: 0.7,
  loss: 0.02,
  hysteresis: 0.15,
  cooldownS: 600,
  killAtH: 2,
  balanceTarget: 0.8,
  start: 'join'
}

export interface SimSummary {
  /** Epochs from the end of the ramp until the balance target holds and two epochs pass without a move. */
  convergeRounds: number | null
  /** Seconds from the first arrival until every stage had a server. */
  startupS: number | null
  /** Time-weighted mean min/max stage throughput after convergence (the kill's recovery excluded). */
  balance: number
  /** The same for a uniformly random assignment of the same live nodes. */
  balanceRandom: number
  /** Mean swarm throughput (the bottleneck stage's microbatches/s) after convergence, and the LPT oracle's. */
  throughput: number
  throughputOracle: number
  movesPerNodeHour: number
  /** Seconds with a stage unserved after start-up, the kill's recovery excluded. */
  emptyStageS: number
  /** After the kill: seconds until the stage is served again, and until the balance target holds again. */
  killRefillS: number | null
  killRebalanceS: number | null
  moves: number
  joins: number
  deaths: number
  meanAlive: number
  wallS: number
  trace?: unknown[]
}

// ---- deterministic randomness (mulberry32: core/model/prng.ts) ----------------------------------

/** A uniform in [0, 1) that is a pure function of its integer arguments (per-message randomness). */
function hashU (a: number, b: number, c: number, d: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13) ^ b, 0xc2b2ae35)
  h = Math.imul(h ^ (h >>> 16) ^ c, 0x27d4eb2f)
  h = Math.imul(h ^ (h >>> 15) ^ d, 0x165667b1)
  h ^= h >>> 16
  return (h >>> 0) / 4294967296
}

function normal (rng: () => number): number {
  const u = Math.max(rng(), 1e-12)
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng())
}

// ---- the swarm -----------------------------------------------------------------------------------

interface Snap { stage: number, to?: number, state: NodeState, since: number }

interface SimNode {
  id: number
  peer: string
  cap: number
  born: number
  died: number
  /** First heartbeat at born + phase, then every heartbeatS. */
  phase: number
  logT: number[]
  logS: Snap[]
  cur: Snap
  checkPending: boolean
  alive: boolean
}

type EventKind = 'arrive' | 'die' | 'join' | 'ready' | 'drained' | 'check' | 'epoch' | 'tick' | 'kill'
interface SimEvent { t: number, n: number, kind: EventKind, node: number }

class Heap {
  private readonly a: SimEvent[] = []
  private n = 0
  push (t: number, kind: EventKind, node = -1): void {
    const e = { t, n: this.n++, kind, node }
    const a = this.a
    a.push(e)
    let i = a.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (less(a[p], a[i])) break
      ;[a[p], a[i]] = [a[i], a[p]]
      i = p
    }
  }

  pop (): SimEvent | undefined {
    const a = this.a
    if (a.length === 0) return undefined
    const top = a[0]
    const last = a.pop()!
    if (a.length > 0) {
      a[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < a.length && less(a[l], a[m])) m = l
        if (r < a.length && less(a[r], a[m])) m = r
        if (m === i) break
        ;[a[m], a[i]] = [a[i], a[m]]
        i = m
      }
    }
    return top
  }
}

function less (x: SimEvent, y: SimEvent): boolean {
  return x.t < y.t || (x.t === y.t && x.n < y.n)
}

/** Longest-processing-time greedy: the oracle's bottleneck throughput for these capacities. */
export function lptBottleneck (caps: readonly number[], costs: readonly number[]): number {
  const T = new Array<number>(costs.length).fill(0)
  for (const c of [...caps].sort((a, b) => b - a)) {
    let best = 0
    for (let s = 1; s < T.length; s++) if (T[s] < T[best]) best = s
    T[best] += c / costs[best]
  }
  return Math.min(...T)
}

export function simulate (options: Partial<SimOptions> = {}): SimSummary {
  const o: SimOptions = { ...DEFAULT_SIM, ...options }
  const wall0 = performance.now()
  const S = o.stages
  const costs = costsOf({ stages: S, stageCosts: o.stageCosts })
  const cfg: RuleConfig = { stages: S, stageCosts: o.stageCosts, hysteresis: o.hysteresis, cooldownMs: o.cooldownS * 1000, maxMovesPerEpoch: o.maxMovesPerEpoch }
  const rng = mulberry32(o.seed)
  const baseRng = mulberry32(o.seed ^ 0x5bd1e995)
  const end = o.hours * 3600
  const maxLat = Math.min(5, o.ttlS / 2)
  const nodes: SimNode[] = []
  let recent: SimNode[] = []
  const heap = new Heap()

  // ground truth: serving capacity and server count per stage
  const T = new Array<number>(S).fill(0)
  const servers = new Array<number>(S).fill(0)
  let moves = 0
  let joins = 0
  let deaths = 0
  let nodeSeconds = 0
  let aliveCount = 0
  let lastT = 0
  let startupAt: number | null = null
  const emptyIntervals: Array<[number, number]> = []
  let emptySince: number | null = null
  let movesThisEpoch = 0
  const epochs: Array<{ t: number, balance: number, min: number, random: number, oracle: number, moves: number, alive: number, T: number[] }> = []
  let killAt: number | null = null
  let killRefill: number | null = null

  const setState = (n: SimNode, snap: Snap, t: number): void => {
    if (n.cur.state === 'serving' && n.cur.stage >= 0) { T[n.cur.stage] -= n.cap / costs[n.cur.stage]; servers[n.cur.stage]-- }
    n.cur = snap
    if (n.alive && snap.state === 'serving' && snap.stage >= 0) { T[snap.stage] += n.cap / costs[snap.stage]; servers[snap.stage]++ }
    n.logT.push(t)
    n.logS.push(snap)
    const empty = servers.some(c => c === 0)
    if (empty && emptySince === null) emptySince = t
    if (!empty && emptySince !== null) {
      if (killAt !== null && killRefill === null && emptySince >= killAt) killRefill = t - killAt
      emptyIntervals.push([emptySince, t])
      emptySince = null
    }
    if (!empty && startupAt === null) startupAt = t
  }

  const snapAt = (n: SimNode, t: number): Snap => {
    let lo = 0
    let hi = n.logT.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (n.logT[mid] <= t) lo = mid; else hi = mid - 1
    }
    return n.logS[lo]
  }

  /** One-way latency (s) of heartbeat k of j to i: log-normal, capped. */
  const latency = (i: number, j: number, k: number): number => {
    const z = Math.sqrt(-2 * Math.log(Math.max(hashU(o.seed, i, j, k), 1e-12))) * Math.cos(2 * Math.PI * hashU(o.seed + 1, i, j, k))
    return Math.min(maxLat, o.latencyMs / 1000 * Math.exp(o.latencySigma * z))
  }

  /** Node i's view at time t: per peer, the newest heartbeat that reached i and has not expired. */
  const viewOf = (i: SimNode, t: number): RuleEntry[] => {
    const out: RuleEntry[] = []
    for (const j of recent) {
      if (j === i || j.born > t) continue
      const first = j.born + j.phase
      const lastPub = Math.min(t, j.died - 1e-9)
      // newest periodic heartbeat that reached i (k indexes them; negative k: the extra heartbeat
      // published at the i-th state change, as the plugin publishes at once on every change)
      let got = -1
      let gotT = -Infinity
      let gotArrival = 0
      for (let k = Math.floor((lastPub - first) / o.heartbeatS); k >= 0 && lastPub >= first; k--) {
        const tk = first + k * o.heartbeatS
        if (tk + maxLat + o.ttlS < t) break
        const arrival = tk + latency(i.id, j.id, k)
        if (arrival > t || hashU(o.seed + 2, i.id, j.id, k) < o.loss) continue
        got = k
        gotT = tk
        gotArrival = arrival
        break
      }
      for (let c = j.logT.length - 1; c >= 1 && j.logT[c] > gotT; c--) {
        const tc = j.logT[c]
        if (tc > lastPub) continue
        const arrival = tc + latency(i.id, j.id, -c)
        if (arrival > t || hashU(o.seed + 2, i.id, j.id, -c) < o.loss) continue
        got = -c
        gotT = tc
        gotArrival = arrival
        break
      }
      if (gotT === -Infinity || t - gotArrival > o.ttlS) continue
      const s = snapAt(j, gotT)
      const noise = 1 + o.noise * (2 * hashU(o.seed + 3, j.id, got, 7) - 1)
      out.push({ peer: j.peer, stage: s.stage, to: s.to, state: s.state, pinned: false, since: s.since * 1000, tput: (s.stage >= 0 ? j.cap / costs[s.stage] : j.cap) * noise })
    }
    const c = i.cur
    out.push({ peer: i.peer, stage: c.stage, to: c.to, state: c.state, pinned: false, since: c.since * 1000, tput: c.stage >= 0 ? i.cap / costs[c.stage] : i.cap })
    return out
  }

  const advance = (t: number): void => {
    nodeSeconds += aliveCount * (t - lastT)
    lastT = t
  }

  const spawn = (t: number): void => {
    const id = nodes.length
    const n: SimNode = {
      id,
      peer: `12D3KooSim${id.toString(36)}`,
      cap: Math.exp(o.capacitySigma * normal(rng)),
      born: t,
      died: o.lifetimeH > 0 ? t - Math.log(Math.max(rng(), 1e-12)) * o.lifetimeH * 3600 : Infinity,
      phase: rng() * o.heartbeatS,
      logT: [],
      logS: [],
      cur: { stage: -1, state: 'joining', since: t },
      checkPending: false,
      alive: true
    }
    n.logT.push(t)
    n.logS.push(n.cur)
    nodes.push(n)
    recent.push(n)
    aliveCount++
    if (o.start !== 'random' || t > 0) heap.push(t + o.listenS, 'join', id)
    if (n.died < end) heap.push(n.died, 'die', id)
  }

  const kill = (n: SimNode, t: number): void => {
    if (!n.alive) return
    n.died = Math.min(n.died, t)
    setState(n, { stage: n.cur.stage, state: 'leaving', since: n.cur.since }, t)
    n.alive = false
    aliveCount--
    deaths++
  }

  // initial population over the ramp (or serving random stages at once), then steady-state arrivals
  if (o.start === 'random') {
    for (let k = 0; k < o.nodes; k++) {
      spawn(0)
      const n = nodes[nodes.length - 1]
      setState(n, { stage: Math.floor(rng() * S), state: 'serving', since: -o.cooldownS }, 0)
    }
  } else {
    for (let k = 0; k < o.nodes; k++) heap.push(rng() * o.rampS, 'arrive')
  }
  if (o.lifetimeH > 0) {
    const rate = o.nodes / (o.lifetimeH * 3600)
    for (let t = o.rampS - Math.log(Math.max(rng(), 1e-12)) / rate; t < end; t -= Math.log(Math.max(rng(), 1e-12)) / rate) heap.push(t, 'arrive')
  }
  for (let e = 1; e * o.epochS <= end; e++) heap.push(e * o.epochS, 'epoch')
  for (let t = o.heartbeatS; t <= end; t += o.heartbeatS) heap.push(t, 'tick')
  if (o.killAtH !== null && o.killAtH * 3600 < end) heap.push(o.killAtH * 3600, 'kill')

  const scheduleCheck = (n: SimNode, t: number): void => {
    if (n.checkPending) return
    n.checkPending = true
    heap.push(t + hashU(o.seed + 4, n.id, Math.floor(t), 11) * o.jitterS, 'check', n.id)
  }

  for (let ev = heap.pop(); ev !== undefined && ev.t <= end; ev = heap.pop()) {
    const t = ev.t
    advance(t)
    const n = ev.node >= 0 ? nodes[ev.node] : undefined
    switch (ev.kind) {
      case 'arrive':
        spawn(t)
        break
      case 'die':
        if (n!.alive) kill(n!, t)
        break
      case 'kill': {
        // every node of one stage dies at once (the multi-process scenario, simulated)
        const victim = Math.floor(S / 2)
        killAt = t
        for (const m of nodes) if (m.alive && (m.cur.stage === victim || m.cur.to === victim)) kill(m, t)
        break
      }
      case 'join': {
        if (!n!.alive) break
        const view = viewOf(n!, t)
        // heard no one yet: wait up to 4 listen periods, as the plugin does
        if (view.length === 1 && t - n!.born < 4 * o.listenS) { heap.push(n!.born + 4 * o.listenS, 'join', n!.id); break }
        const stage = joinStage(view, n!.peer, cfg, Math.floor(t / o.epochS))
        setState(n!, { stage, state: 'joining', since: t }, t)
        heap.push(t + o.fetchS, 'ready', n!.id)
        break
      }
      case 'ready':
        if (!n!.alive) break
        if (n!.cur.state === 'joining') { setState(n!, { ...n!.cur, state: 'serving' }, t); joins++ }
        break
      case 'drained':
        if (!n!.alive) break
        setState(n!, { stage: n!.cur.to!, state: 'joining', since: t }, t)
        heap.push(t + o.fetchS, 'ready', n!.id)
        break
      case 'check': {
        n!.checkPending = false
        if (!n!.alive || n!.cur.state !== 'serving') break
        const move = electedMove(viewOf(n!, t), n!.peer, cfg, t * 1000, Math.floor(t / o.epochS))
        if (move === undefined) break
        setState(n!, { stage: n!.cur.stage, to: move.to, state: 'leaving', since: n!.cur.since }, t)
        heap.push(t + o.drainS, 'drained', n!.id)
        moves++
        movesThisEpoch++
        break
      }
      case 'epoch': {
        const live = nodes.filter(m => m.alive)
        const random = new Array<number>(S).fill(0)
        for (const m of live) { const s = Math.floor(baseRng() * S); random[s] += m.cap / costs[s] }
        epochs.push({ t, balance: balanceOf(T), min: Math.min(...T), random: balanceOf(random), oracle: lptBottleneck(live.map(m => m.cap), costs), moves: movesThisEpoch, alive: live.length, T: [...T] })
        movesThisEpoch = 0
        recent = recent.filter(m => m.died + o.ttlS + maxLat >= t)
        for (const m of live) if (m.cur.state === 'serving') scheduleCheck(m, t)
        break
      }
      case 'tick':
        // the plugin checks every heartbeat while its view shows an empty stage
        if (servers.some(c => c === 0) || emptyIntervals.some(([, b]) => t - b < o.ttlS + maxLat)) {
          for (const m of nodes) if (m.alive && m.cur.state === 'serving') scheduleCheck(m, t)
        }
        break
    }
  }
  advance(end)
  if (emptySince !== null) emptyIntervals.push([emptySince, end])

  // ---- figures ----
  const rampEnd = o.start === 'random' ? 0 : o.rampS + o.listenS + o.fetchS
  const after = epochs.filter(e => e.t >= rampEnd)
  let convergeRounds: number | null = null
  for (let k = 0; k + 1 < after.length; k++) {
    if (after[k].balance >= o.balanceTarget && after[k].moves === 0 && after[k + 1].moves === 0) { convergeRounds = k; break }
  }
  let killRebalance: number | null = null
  if (killAt !== null) {
    const back = epochs.find(e => e.t > killAt! && e.balance >= o.balanceTarget)
    killRebalance = back !== undefined ? back.t - killAt : null
  }
  const excluded = (t: number): boolean => killAt !== null && t >= killAt && t <= killAt + (killRebalance ?? Infinity)
  const settled = convergeRounds === null ? [] : after.slice(convergeRounds).filter(e => !excluded(e.t))
  const mean = (xs: number[]): number => xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : 0
  let emptyS = 0
  for (const [a, b] of emptyIntervals) {
    if (startupAt === null || b <= startupAt) continue
    const lo = Math.max(a, startupAt)
    const hi = killAt !== null && killRefill !== null && lo >= killAt && lo <= killAt + killRefill ? lo : b
    emptyS += Math.max(0, hi - lo)
  }
  return {
    convergeRounds,
    startupS: startupAt,
    balance: mean(settled.map(e => e.balance)),
    balanceRandom: mean(settled.map(e => e.random)),
    throughput: mean(settled.map(e => e.min)),
    throughputOracle: mean(settled.map(e => e.oracle)),
    movesPerNodeHour: nodeSeconds > 0 ? moves / (nodeSeconds / 3600) : 0,
    emptyStageS: emptyS,
    killRefillS: killRefill,
    killRebalanceS: killRebalance,
    moves,
    joins,
    deaths,
    meanAlive: mean(epochs.map(e => e.alive)),
    wallS: (performance.now() - wall0) / 1000,
    ...(o.trace === true ? { trace: epochs } : {})
  }
}

/** A result row; a figure the run could not measure (no convergence, no kill recovery) is NaN (null in JSON). */
function result (name: string, value: number | null, unit: string, baseline: { name: string, value: number } | null): BenchResult {
  const v = value ?? Number.NaN
  const ratio = baseline !== null && baseline.value !== 0 && Number.isFinite(v) ? round(v / baseline.value, 3) : null
  return { name, value: round(v, 3), unit, baseline: baseline === null ? null : { name: baseline.name, value: round(baseline.value, 3) }, ratio }
}

/** The simulation as a bench report (`suite: "simulate"`). */
export function simulateReport (options: Partial<SimOptions> = {}): BenchReport & { config: SimOptions, summary: SimSummary } {
  const o: SimOptions = { ...DEFAULT_SIM, ...options }
  const machine = machineInfo()
  const s = simulate(o)
  machine.loadAvgEnd = round(loadavg()[0], 2)
  return {
    suite: 'simulate',
    backend: 'scheduler',
    device: `simulated swarm: ${o.nodes} nodes, ${o.stages} stages, ${o.hours} h, start ${o.start}, seed ${o.seed}`,
    machine,
    baseline: { name: 'random / LPT oracle', balance: 'a uniformly random assignment of the same live nodes', throughput: 'LPT greedy (largest first onto the least-served stage) over the same live nodes' },
    config: o,
    summary: s,
    results: [
      result('converge_rounds', s.convergeRounds, 'epochs', null),
      result('balance', s.balance, 'min/max', { name: 'random assignment', value: s.balanceRandom }),
      result('bottleneck_throughput', s.throughput, 'microbatch/s', { name: 'LPT oracle', value: s.throughputOracle }),
      result('moves_per_node_hour', s.movesPerNodeHour, 'moves/node/h', null),
      result('empty_stage_seconds', s.emptyStageS, 's', null),
      result('startup_seconds', s.startupS, 's', null),
      ...(o.killAtH !== null
        ? [result('kill_stage_refill_seconds', s.killRefillS, 's', null), result('kill_stage_rebalance_seconds', s.killRebalanceS, 's', null)]
        : [])
    ]
  }
}
