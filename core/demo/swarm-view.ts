// The demo's view of the swarm: the last `status --json` of every node it started (the `training`
// object of the pipeline runtime), folded into one snapshot for the live display and the report.
// A node's status is untrusted input from another process: fields are read defensively, and a
// node that stopped answering keeps its last figures (a killed node's work still counts).
import { PIPELINE_COUNTERS, type PipelineCounterName, type PipelineCounters } from '../pipeline/pipeline-metrics.ts'
import type { TrainingStatus as NodeTrainingStatus } from '../pipeline/training-status.ts'
import type { AveragingStatus } from '../pipeline/stage-averaging.ts'

/**
 * The part of a node's `training` status (core/pipeline/training-status.ts, the one status type)
 * the demo reads, as parsed from another process: every counter PipelineMetrics declares, the
 * curves, and the node's place; `stage` is -1 and `state` may be any string when the node said so.
 */
export type TrainingStatus = PipelineCounters & Pick<NodeTrainingStatus, 'stages' | 'step' | 'steps' | 'lossLast' | 'loss' | 'evalLoss' | 'peersPerStage' | 'error'> & {
  runId?: string
  stage: number
  state: NodeTrainingStatus['state'] | string
  codecs?: NonNullable<NodeTrainingStatus['codecs']>
  bottleneck?: number | null
  throughput: number | null
  /** Averaging within the stage (docs/averaging.md, "In the pipeline"); absent when off. */
  averaging?: AveragingView
  /** The node's budget, its stage's estimate and its measured peak RSS (bytes); absent when not reported. */
  memory?: MemoryView
}

export interface MemoryView { budget: number | null, estimate: number | null, rss: number | null, peakRss: number | null }

/** The part of `training.averaging` the demo reads. */
export type AveragingView = Pick<AveragingStatus, 'rounds' | 'alone' | 'failed' | 'lastRound' | 'paramsDigest' | 'history'>

/** What the launcher knows of one node plus its last status. */
export interface NodeView {
  readonly name: string
  /** null: the bootstrap node. */
  readonly stage: number | null
  readonly pid: number
  readonly peerId: string
  readonly dataDir: string
  alive: boolean
  exit?: string
  training?: TrainingStatus
  /** Connected peers in its last status. */
  peers?: number
}

export interface SwarmSnapshot {
  readonly elapsedS: number
  readonly stages: number
  /** Optimizer steps done (the furthest stage-0 node; any node when no stage-0 node reports) and the run's total. */
  readonly step: number
  readonly steps: number
  /** Live nodes per stage, as the launcher knows them. */
  readonly nodesPerStage: number[]
  /** Peers per stage as the nodes see them (the largest count any node reports), if reported. */
  readonly peersPerStage: number[] | null
  readonly microbatchesDone: number
  readonly microbatchesDropped: number
  readonly microbatchesRetried: number
  readonly tokens: number
  readonly bytesForward: number
  readonly bytesBackward: number
  readonly boundaryBytesForward: number
  readonly boundaryTokensForward: number
  readonly boundaryBytesBackward: number
  readonly boundaryTokensBackward: number
  readonly lossLast: number | null
  readonly evalLoss: number | null
  /** Mean training loss per step (stage-0 nodes, else last-stage nodes). */
  readonly lossCurve: Array<[number, number]>
  readonly states: string[]
}

const num = (v: unknown, d = 0): number => typeof v === 'number' && Number.isFinite(v) ? v : d
const numOrNull = (v: unknown): number | null => typeof v === 'number' && Number.isFinite(v) ? v : null

/** Reads the `training` field of a status object; undefined when absent or not an object. */
export function parseTrainingStatus (status: unknown): TrainingStatus | undefined {
  const t = (status as { training?: unknown } | null)?.training
  if (t == null || typeof t !== 'object') return undefined
  const o = t as Record<string, unknown>
  const loss = Array.isArray(o.loss)
    ? o.loss.filter((p): p is [number, number] => Array.isArray(p) && p.length >= 2 && Number.isFinite(p[0]) && Number.isFinite(p[1])).map(p => [p[0], p[1]] as [number, number])
    : []
  const pps: Record<string, number> = {}
  if (o.peersPerStage != null && typeof o.peersPerStage === 'object') {
    for (const [k, v] of Object.entries(o.peersPerStage as Record<string, unknown>)) if (typeof v === 'number') pps[k] = v
  }
  const counters = Object.fromEntries(Object.keys(PIPELINE_COUNTERS).map(k => [k, num(o[k])])) as Record<PipelineCounterName, number>
  return {
    runId: typeof o.runId === 'string' ? o.runId : undefined,
    stage: num(o.stage, -1),
    stages: num(o.stages),
    state: typeof o.state === 'string' ? o.state : 'unknown',
    step: num(o.step),
    steps: num(o.steps),
    ...counters,
    lossLast: numOrNull(o.lossLast),
    loss,
    evalLoss: numOrNull(o.evalLoss),
    codecs: parseCodecs(o.codecs),
    bottleneck: o.bottleneck === null ? null : numOrNull(o.bottleneck) ?? undefined,
    peersPerStage: pps,
    throughput: numOrNull(o.throughput),
    averaging: parseAveraging(o.averaging),
    memory: parseMemory(o.memory),
    error: typeof o.error === 'string' ? o.error : undefined
  }
}

function parseMemory (v: unknown): MemoryView | undefined {
  const m = v as Record<string, unknown> | null
  if (m == null || typeof m !== 'object') return undefined
  return { budget: numOrNull(m.budget), estimate: numOrNull(m.estimate), rss: numOrNull(m.rss), peakRss: numOrNull(m.peakRss) }
}

function parseCodecs (v: unknown): TrainingStatus['codecs'] {
  const c = v as Record<string, unknown> | null
  if (c == null || typeof c !== 'object' || typeof c.activation !== 'string' || typeof c['activation-grad'] !== 'string') return undefined
  return { activation: c.activation, 'activation-grad': c['activation-grad'] }
}

/**
 * Folds node views into one snapshot. Microbatches are counted where they start and end, at
 * stage 0 (which draws the batch and receives the last gradient); tokens at stage 0 or, if it does
 * not count them, at the last stage; bytes are summed over every node (each counts what it sent).
 */
export function snapshot (views: readonly NodeView[], stages: number, steps: number, elapsedS: number): SwarmSnapshot {
  const workers = views.filter(v => v.stage != null)
  const withT = workers.filter(v => v.training != null) as Array<NodeView & { training: TrainingStatus }>
  const first = withT.filter(v => v.stage === 0)
  const last = withT.filter(v => v.stage === stages - 1)
  const sum = (vs: typeof withT, f: (t: TrainingStatus) => number): number => vs.reduce((a, v) => a + f(v.training), 0)

  const nodesPerStage = Array.from({ length: stages }, (_, s) => workers.filter(v => v.alive && v.stage === s).length)
  let peersPerStage: number[] | null = null
  for (const v of withT) {
    if (!v.alive || Object.keys(v.training.peersPerStage).length === 0) continue
    peersPerStage ??= new Array<number>(stages).fill(0)
    for (let s = 0; s < stages; s++) peersPerStage[s] = Math.max(peersPerStage[s], num(v.training.peersPerStage[String(s)]))
  }

  // mean loss per step. Every stage learns each microbatch's loss from the backward pass; stage 0
  // drives the steps and sees all its microbatches, so its nodes are the source when they report
  const source = first.some(v => v.training.loss.length > 0) ? first : last
  const byStep = new Map<number, { sum: number, n: number }>()
  for (const v of source) {
    for (const [step, loss] of v.training.loss) {
      const e = byStep.get(step) ?? { sum: 0, n: 0 }
      e.sum += loss
      e.n++
      byStep.set(step, e)
    }
  }
  const lossCurve = [...byStep.entries()].sort((a, b) => a[0] - b[0]).map(([s, e]) => [s, e.sum / e.n] as [number, number])
  const lastLosses = source.filter(v => v.training.lossLast != null)
  const evals = last.map(v => v.training.evalLoss).filter((x): x is number => x != null)
  return {
    elapsedS,
    stages,
    // stage 0 drives the swarm's steps; a later stage counts the updates it applied, one more when a
    // retried microbatch of a step it had already applied came late (a node killed mid-step)
    step: (first.length > 0 ? first : withT).reduce((a, v) => Math.max(a, v.training.step), 0),
    steps: withT.reduce((a, v) => Math.max(a, v.training.steps), 0) || steps,
    nodesPerStage,
    peersPerStage,
    microbatchesDone: sum(first, t => t.microbatchesDone),
    microbatchesDropped: sum(first, t => t.microbatchesDropped),
    microbatchesRetried: sum(withT, t => t.microbatchesRetried),
    tokens: Math.max(sum(first, t => t.tokens), sum(last, t => t.tokens)),
    bytesForward: sum(withT, t => t.bytesForward),
    bytesBackward: sum(withT, t => t.bytesBackward),
    boundaryBytesForward: sum(withT, t => t.boundaryBytesForward),
    boundaryTokensForward: sum(withT, t => t.boundaryTokensForward),
    boundaryBytesBackward: sum(withT, t => t.boundaryBytesBackward),
    boundaryTokensBackward: sum(withT, t => t.boundaryTokensBackward),
    lossLast: lossCurve.at(-1)?.[1] ?? (lastLosses.length > 0 ? lastLosses.reduce((a, v) => a + (v.training.lossLast as number), 0) / lastLosses.length : null),
    evalLoss: evals.length > 0 ? evals.reduce((a, b) => a + b, 0) / evals.length : null,
    lossCurve,
    states: workers.map(v => v.alive ? (v.training?.state ?? 'starting') : 'exited')
  }
}

function parseAveraging (v: unknown): AveragingView | undefined {
  const a = v as Record<string, unknown> | null
  if (a == null || typeof a !== 'object') return undefined
  const history = Array.isArray(a.history)
    ? a.history.filter((h): h is [number, number, number, number, number] => Array.isArray(h) && h.length >= 5 && h.slice(0, 5).every(x => typeof x === 'number' && Number.isFinite(x)))
      .map(h => [h[0], h[1], h[2], h[3], h[4]] as [number, number, number, number, number])
    : []
  return {
    rounds: num(a.rounds),
    alone: num(a.alone),
    failed: num(a.failed),
    lastRound: numOrNull(a.lastRound),
    paramsDigest: typeof a.paramsDigest === 'string' ? a.paramsDigest : null,
    history
  }
}
