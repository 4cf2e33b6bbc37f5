// The dashboard's one snapshot, built from what `layerswarm status --json` answers (NodeStatus of
// core/node/create-node.ts, with `training`: the runtime's HostStatus through its ControlExtension)
// and the run's membership view (who serves which stage, as this node's gossip sees it). The page
// only draws this object: every number on it comes from here, and docs/dashboard.md says from where.
import type { NodeStatus } from '../node/create-node.ts'
import type { HostStatus } from '../pipeline/training-status.ts'
import type { Member } from '../contracts/membership.ts'
import { thinCurve, type DashboardHistory } from './history.ts'

/** What GET /status on the control socket answers (`status --json`): the node's status and, on a training node, `training`. */
export type StatusJson = NodeStatus & { training?: HostStatus }

export interface SnapshotInput {
  readonly status: StatusJson
  /** The run's members other than this node, and this node's own record; null on a node without a run. */
  readonly members: readonly Member[] | null
  readonly self: Member | null
  /** The model's width C: raw float32 boundary traffic is 4·C bytes per token and direction. */
  readonly dModel: number | null
  /** Unix ms of the snapshot. */
  readonly now: number
  readonly history: DashboardHistory
}

export interface DashboardPeer {
  readonly peer: string
  readonly self: boolean
  readonly stage: number
  /** Placement: joining, serving, leaving. */
  readonly state: string
  /** The pipeline's phase: starting, waiting-peers, training, done, failed. */
  readonly phase: string
  readonly step: number
  /** Microbatches per second its pipeline completes (gossiped). */
  readonly throughput: number
  /** Microbatches per busy second at its stage (the scheduler reads it). */
  readonly capacity: number
  readonly queue: number
  readonly pinned: boolean
  /** Seconds since its last heartbeat arrived (0 for this node). */
  readonly seenAgoS: number
}

export interface DashboardStage {
  /** -1: members still picking a stage. */
  readonly stage: number
  readonly peers: DashboardPeer[]
  /** Peers this node counts at the stage (HostStatus.peersPerStage), for a node without membership. */
  readonly count: number
}

export interface DashboardLedgerRow {
  readonly peer: string
  readonly microbatches: number
  readonly tokens: number
  readonly passed: number
  readonly failed: number
  readonly withheld: number
  readonly copies: number
  readonly convicted: boolean
}

export interface DashboardSnapshot {
  readonly version: 1
  readonly time: number
  readonly node: {
    readonly peerId: string
    readonly network: string
    readonly bootstrapNode: boolean
    readonly pid: number
    readonly uptimeS: number
    readonly connectedPeers: number
    readonly addresses: string[]
    readonly plugins: string[]
    readonly reachability: string
    readonly direct: number | null
    readonly relayed: number | null
  }
  /** This node's place in the run; null on a node without one (bootstrap node). */
  readonly run: {
    readonly runId: string
    readonly stages: number
    readonly stage: number | null
    readonly state: string
    readonly roles: string[]
    readonly step: number
    readonly steps: number
    readonly lr: number | null
    readonly moves: number
    readonly error: string | null
  } | null
  readonly stages: DashboardStage[]
  readonly training: {
    readonly lossLast: number | null
    readonly evalLoss: number | null
    readonly tokens: number
    readonly tokensPerS: number | null
    readonly throughput: number
    readonly queue: number
    readonly maxInflight: number
    readonly microbatchesDone: number
    readonly microbatchesDropped: number
    readonly microbatchesRetried: number
  } | null
  /** This node's side of its stage boundaries: what it sent, per token. */
  readonly traffic: {
    readonly codecs: { readonly activation: string, readonly gradient: string } | null
    readonly bottleneck: number | null
    /** The boundary to the next stage (activations forward), and to the previous one (gradients back). */
    readonly forward: BoundaryFigures | null
    readonly backward: BoundaryFigures | null
  } | null
  readonly averaging: {
    readonly period: number
    readonly mode: string
    readonly rounds: number
    readonly alone: number
    readonly failed: number
    readonly lastGroupSize: number | null
    readonly divergenceBefore: number | null
    readonly divergenceAfter: number | null
    readonly paramNorm: number | null
    readonly lastMs: number | null
    readonly lastError: string | null
    /** Per round with a group: [round, step, group size, divergence before, after]. */
    readonly history: Array<[number, number, number, number, number]>
  } | null
  readonly verification: {
    readonly totals: { readonly microbatches: number, readonly tokens: number, readonly passed: number, readonly failed: number, readonly withheld: number, readonly convicted: number }
    readonly ledger: DashboardLedgerRow[]
    readonly convictions: Array<{ readonly peer: string, readonly kind: string, readonly detail: string }>
    readonly validator: Readonly<Record<string, number>> | null
  } | null
  readonly chain: {
    readonly endpoint: string
    readonly netuid: number
    readonly hotkey: string
    readonly uid: number | null
    readonly connected: boolean
    readonly admitted: number
    readonly refused: number
    readonly neurons: number | null
  } | null
  /** Curves as uPlot columns [xs, ys]: loss and held-out loss against step, tokens/s and peers against unix seconds. */
  readonly history: {
    readonly loss: [number[], number[]]
    readonly evals: [number[], number[]]
    readonly tokensPerS: [number[], number[]]
    readonly peers: [number[], number[]]
  }
}

export interface BoundaryFigures {
  readonly from: number
  readonly to: number
  readonly bytesPerToken: number | null
  /** Raw float32 bytes per token over encoded bytes per token (a bottleneck's C/k counts too). */
  readonly ratio: number | null
}

const fin = (v: unknown): number | null => typeof v === 'number' && Number.isFinite(v) ? v : null
const int = (v: unknown): number => fin(v) ?? 0

/** Builds the snapshot; also records this instant in `history` (call it once per tick). */
export function buildDashboardSnapshot (input: SnapshotInput): DashboardSnapshot {
  const { status, now } = input
  const t = status.training
  const peersInView = input.members != null ? input.members.length + (input.self != null ? 1 : 0) : null
  const tokensPerS = input.history.sample(now, t != null ? int(t.tokens) : null, peersInView ?? status.peers.length)
  return {
    version: 1,
    time: now,
    node: {
      peerId: status.peerId,
      network: status.network,
      bootstrapNode: status.bootstrapNode,
      pid: status.pid,
      uptimeS: status.uptimeS,
      connectedPeers: status.peers.length,
      addresses: [...status.addresses],
      plugins: [...status.plugins],
      reachability: status.nat?.reachability ?? 'unknown',
      direct: fin(status.connections?.direct),
      relayed: fin(status.connections?.relayed)
    },
    run: t == null
      ? null
      : { runId: t.runId, stages: t.stages, stage: t.stage, state: t.state, roles: [...t.roles], step: t.step, steps: t.steps, lr: fin(t.lr), moves: int(t.moves), error: t.error ?? null },
    stages: stagesOf(input, t),
    training: t == null
      ? null
      : {
          lossLast: fin(t.lossLast),
          evalLoss: fin(t.evalLoss),
          tokens: int(t.tokens),
          tokensPerS,
          throughput: int(t.throughput),
          queue: int(t.queue),
          maxInflight: int(t.maxInflight),
          microbatchesDone: int(t.microbatchesDone),
          microbatchesDropped: int(t.microbatchesDropped),
          microbatchesRetried: int(t.microbatchesRetried)
        },
    traffic: t == null ? null : trafficOf(t, input.dModel),
    averaging: averagingOf(t),
    verification: verificationOf(t?.verification),
    chain: chainOf(status),
    history: {
      loss: thinCurve(t?.loss ?? []),
      evals: thinCurve(t?.evals ?? []),
      tokensPerS: input.history.tokensPerS.columns(),
      peers: input.history.peers.columns()
    }
  }
}

function memberRow (m: Member, self: boolean, now: number): DashboardPeer {
  return {
    peer: m.peer,
    self,
    stage: m.stage,
    state: m.state,
    phase: m.phase,
    step: int(m.step),
    throughput: int(m.throughput),
    capacity: int(m.tput),
    queue: int(m.queue),
    pinned: m.pinned,
    seenAgoS: self ? 0 : Math.max(0, Math.round((now - m.seen) / 100) / 10)
  }
}

function stagesOf (input: SnapshotInput, t: HostStatus | undefined): DashboardStage[] {
  const S = t?.stages ?? 0
  const rows: DashboardPeer[] = [
    ...(input.self != null ? [memberRow(input.self, true, input.now)] : []),
    ...(input.members ?? []).map(m => memberRow(m, false, input.now))
  ]
  const stages: DashboardStage[] = []
  const at = (s: number): DashboardPeer[] => rows.filter(r => r.stage === s).sort((a, b) => a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0)
  for (let s = 0; s < S; s++) stages.push({ stage: s, peers: at(s), count: int(t?.peersPerStage?.[String(s)]) })
  const unplaced = rows.filter(r => r.stage < 0 || r.stage >= S)
  if (unplaced.length > 0) stages.push({ stage: -1, peers: unplaced, count: unplaced.length })
  return stages
}

function trafficOf (t: HostStatus, dModel: number | null): NonNullable<DashboardSnapshot['traffic']> {
  const f32 = dModel != null && dModel > 0 ? 4 * dModel : null
  const figures = (bytes: number, tokens: number, from: number, to: number): BoundaryFigures | null => {
    if (tokens <= 0) return null
    const perToken = bytes / tokens
    return { from, to, bytesPerToken: perToken, ratio: f32 != null && perToken > 0 ? f32 / perToken : null }
  }
  const s = t.stage ?? -1
  return {
    codecs: t.codecs != null ? { activation: t.codecs.activation, gradient: t.codecs['activation-grad'] } : null,
    bottleneck: t.bottleneck,
    forward: figures(int(t.boundaryBytesForward), int(t.boundaryTokensForward), s, s + 1),
    backward: figures(int(t.boundaryBytesBackward), int(t.boundaryTokensBackward), s, s - 1)
  }
}

function averagingOf (t: HostStatus | undefined): DashboardSnapshot['averaging'] {
  const a = t?.averaging
  if (a == null) return null
  return {
    period: a.period,
    mode: String(a.mode),
    rounds: int(a.rounds),
    alone: int(a.alone),
    failed: int(a.failed),
    lastGroupSize: fin(a.lastGroupSize),
    divergenceBefore: fin(a.divergenceBefore),
    divergenceAfter: fin(a.divergenceAfter),
    paramNorm: fin(a.paramNorm),
    lastMs: fin(a.lastMs),
    lastError: a.lastError ?? null,
    history: a.history.slice(-200).map(h => [h[0], h[1], h[2], h[3], h[4]])
  }
}

type Obj = Record<string, unknown>
const obj = (v: unknown): Obj | null => v != null && typeof v === 'object' && !Array.isArray(v) ? v as Obj : null

/** The verification status is typed loosely in HostStatus (a record): read what the ledger, convictions and validator hold. */
function verificationOf (v: Readonly<Record<string, unknown>> | undefined): DashboardSnapshot['verification'] {
  const ledger = obj(v?.ledger)
  if (v == null || ledger == null) return null
  const totals = obj(ledger.totals) ?? {}
  const checks = obj(totals.checks) ?? {}
  const rows: DashboardLedgerRow[] = Object.entries(obj(ledger.peers) ?? {}).map(([peer, raw]) => {
    const p = obj(raw) ?? {}
    let microbatches = 0
    let tokens = 0
    for (const kinds of Object.values(obj(p.work) ?? {})) {
      for (const w of Object.values(obj(kinds) ?? {})) { microbatches += int(obj(w)?.microbatches); tokens += int(obj(w)?.tokens) }
    }
    const c = obj(p.checks) ?? {}
    const sum = (k: string): number => int(obj(c.own)?.[k]) + int(obj(c.accusation)?.[k])
    return { peer, microbatches, tokens, passed: sum('passed'), failed: sum('failed'), withheld: sum('withheld'), copies: int(p.copies), convicted: p.convicted === true }
  }).sort((a, b) => b.tokens - a.tokens)
  const convictions = Array.isArray(v.convictions)
    ? v.convictions.map(obj).filter((c): c is Obj => c != null).map(c => ({ peer: String(c.peer), kind: String(c.kind), detail: String(c.detail ?? '') }))
    : []
  const validatorRaw = obj(v.validator)
  const validator = validatorRaw != null
    ? Object.fromEntries(Object.entries(validatorRaw).filter(([, x]) => typeof x === 'number')) as Record<string, number>
    : null
  return {
    totals: { microbatches: int(totals.microbatches), tokens: int(totals.tokens), passed: int(checks.passed), failed: int(checks.failed), withheld: int(checks.withheld), convicted: int(totals.convicted) },
    ledger: rows.slice(0, 100),
    convictions: convictions.slice(0, 100),
    validator
  }
}

function chainOf (status: StatusJson): DashboardSnapshot['chain'] {
  const c = status.chain
  if (c == null) return null
  return {
    endpoint: c.endpoint,
    netuid: c.netuid,
    hotkey: c.hotkey,
    uid: c.uid,
    connected: c.connected,
    admitted: int(c.peers?.admitted),
    refused: int(c.peers?.refused),
    neurons: fin(c.metagraph?.neurons)
  }
}
