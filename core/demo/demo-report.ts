// The demo's report: one JSON object with the run's figures (documented field by field in
// docs/demo.md). Built from the final swarm snapshot, the per-node views and the demo's own eval of
// the assembled model.
import type { ModelConfig } from '../model/config.ts'
import { boundaryFigures, type BytesPerToken } from './demo-compression.ts'
import { demoMemoryPlan, type DemoSettings } from './swarm-plan.ts'
import type { NodeView, SwarmSnapshot } from './swarm-view.ts'

export interface KilledNode { readonly name: string, readonly stage: number, readonly pid: number, readonly atStep: number }

export interface ReportInput {
  readonly settings: DemoSettings
  readonly config: ModelConfig
  readonly params: number
  readonly seqLen: number
  readonly final: SwarmSnapshot
  /** Every node the demo started (the bootstrap node has stage null). */
  readonly views: readonly NodeView[]
  /** Wall seconds of the whole demo up to the end of training, and from all nodes listening to the end. */
  readonly seconds: number
  readonly trainSeconds: number
  readonly evalLoss: number | null
  readonly evalBatches: number
  readonly unigramEvalLoss: number | null
  readonly killed: KilledNode | null
  readonly runId: string | null
  readonly files: { readonly checkpoint: string | null, readonly stageCheckpoints: readonly string[], readonly lossCurveSvg: string | null, readonly logs: string }
  readonly sample: string | null
}

export function buildReport (r: ReportInput): Record<string, unknown> {
  const f = r.final
  const losses = f.lossCurve.map(p => p[1])
  const last10 = losses.slice(-10)
  const traffic = boundaryFigures(f, r.config.dModel)
  return {
    tokens: f.tokens,
    seconds: round(r.seconds, 3),
    train_seconds: round(r.trainSeconds, 3),
    tokens_per_s: r.trainSeconds > 0 ? round(f.tokens / r.trainSeconds, 1) : null,
    loss_first: losses[0] ?? null,
    loss_last: losses.at(-1) ?? null,
    loss_last10_mean: last10.length > 0 ? last10.reduce((a, b) => a + b, 0) / last10.length : null,
    eval_loss: r.evalLoss,
    eval_batches: r.evalBatches,
    swarm_eval_loss: f.evalLoss,
    unigram_eval_loss: r.unigramEvalLoss,
    microbatches_done: f.microbatchesDone,
    microbatches_dropped: f.microbatchesDropped,
    microbatches_retried: f.microbatchesRetried,
    bytes_forward: f.bytesForward,
    bytes_backward: f.bytesBackward,
    bytes_per_token_boundary: roundAll(traffic.bytesPerToken, 3),
    compression_ratio: roundAll(traffic.compressionRatio, 3),
    codecs: { activation: r.settings.codec, 'activation-grad': r.settings.gradCodec },
    bottleneck: r.settings.bottleneck,
    boundary_traffic: {
      bytes_forward: f.boundaryBytesForward,
      tokens_forward: f.boundaryTokensForward,
      bytes_backward: f.boundaryBytesBackward,
      tokens_backward: f.boundaryTokensBackward
    },
    nodes: r.settings.nodes,
    stages: r.settings.stages,
    steps: r.settings.steps,
    steps_done: f.step,
    run_id: r.runId,
    model: r.config,
    params: r.params,
    batch: r.settings.batch,
    microbatches: r.settings.microbatches,
    seq_len: r.seqLen,
    lr: r.settings.lr,
    seed: r.settings.seed,
    backend: r.settings.backend,
    max_inflight: r.settings.maxInflight,
    averaging: averagingReport(r.settings, r.views),
    killed: r.killed != null ? { name: r.killed.name, stage: r.killed.stage, pid: r.killed.pid, at_step: r.killed.atStep } : null,
    bootstrap: r.views.filter(v => v.stage == null).map(v => ({ pid: v.pid, peer_id: v.peerId, exit: v.exit ?? null }))[0] ?? null,
    per_node: r.views.filter(v => v.stage != null).map(v => ({
      name: v.name,
      stage: v.stage,
      pid: v.pid,
      peer_id: v.peerId,
      exit: v.exit ?? null,
      state: v.training?.state ?? null,
      steps: v.training?.step ?? null,
      microbatches_started: v.training?.microbatchesStarted ?? null,
      microbatches_done: v.training?.microbatchesDone ?? null,
      microbatches_dropped: v.training?.microbatchesDropped ?? null,
      microbatches_retried: v.training?.microbatchesRetried ?? null,
      tokens: v.training?.tokens ?? null,
      bytes_forward: v.training?.bytesForward ?? null,
      bytes_backward: v.training?.bytesBackward ?? null,
      codecs: v.training?.codecs ?? null,
      bottleneck: v.training?.bottleneck ?? null,
      loss_last: v.training?.lossLast ?? null,
      averaging_rounds: v.training?.averaging?.rounds ?? null,
      // measured: the node process's RSS high-water mark (getrusage maxrss), against its stage's estimate and its budget
      memory_budget: v.training?.memory?.budget ?? null,
      memory_estimate: v.training?.memory?.estimate ?? null,
      peak_rss: v.training?.memory?.peakRss ?? null
    })),
    memory: memoryReport(r.settings, r.config, r.views),
    checkpoint: r.files.checkpoint,
    stage_checkpoints: r.files.stageCheckpoints,
    loss_curve_svg: r.files.lossCurveSvg,
    logs: r.files.logs,
    loss_curve: downsample(f.lossCurve, 100),
    sample: r.sample
  }
}

/** `memory` in the report: the budget and the whole model's estimate beside every node's measured peak (bytes). */
export interface DemoMemory {
  budget: number | null
  whole_model_estimate: number
  stage_estimates: number[]
  /** Every node's budget is below what training the whole model would take. */
  no_node_holds_the_model: boolean | null
  peak_rss_max: number | null
  per_node: Array<{ name: string, stage: number, estimate: number | null, peak_rss: number | null }>
}

export function memoryReport (s: DemoSettings, config: ModelConfig, views: readonly NodeView[]): DemoMemory {
  const plan = demoMemoryPlan(s, config, false)
  const per = views.filter(v => v.stage != null).map(v => ({ name: v.name, stage: v.stage as number, estimate: v.training?.memory?.estimate ?? plan.stages[v.stage as number] ?? null, peak_rss: v.training?.memory?.peakRss ?? null }))
  const peaks = per.map(p => p.peak_rss).filter((x): x is number => x != null)
  return {
    budget: plan.budget,
    whole_model_estimate: plan.wholeModel,
    stage_estimates: plan.stages,
    no_node_holds_the_model: plan.budget != null ? plan.budget < plan.wholeModel : null,
    peak_rss_max: peaks.length > 0 ? Math.max(...peaks) : null,
    per_node: per
  }
}

/** "memory: budget 1.5 GiB per node, whole model 3.9 GiB; peak RSS s0 1.1 GiB, s1 0.9 GiB" */
export function memoryLine (m: DemoMemory): string {
  const gib = (b: number | null): string => b != null ? `${(b / 2 ** 30).toFixed(2)} GiB` : '--'
  return `memory: ${m.budget != null ? `budget ${gib(m.budget)} per node` : 'no budget'}, whole model ${gib(m.whole_model_estimate)} (estimate); ` +
    `peak RSS ${m.per_node.map(p => `${p.name} ${gib(p.peak_rss)} (est. ${gib(p.estimate)})`).join(', ')}`
}

function roundAll (o: BytesPerToken, digits: number): BytesPerToken {
  const r = (v: number | null): number | null => v != null ? round(v, digits) : null
  return { forward: r(o.forward), backward: r(o.backward), total: r(o.total) }
}

function round (x: number, digits: number): number {
  const k = 10 ** digits
  return Math.round(x * k) / k
}

/** At most n points: the mean loss of each of n equal windows, labelled by the window's last step. */
export function downsample (curve: ReadonlyArray<readonly [number, number]>, n: number): Array<[number, number]> {
  if (curve.length <= n) return curve.map(([s, l]) => [s, round(l, 5)])
  const out: Array<[number, number]> = []
  for (let i = 0; i < n; i++) {
    const w = curve.slice(Math.floor(i * curve.length / n), Math.floor((i + 1) * curve.length / n))
    out.push([w[w.length - 1][0], round(w.reduce((a, p) => a + p[1], 0) / w.length, 5)])
  }
  return out
}

/** `averaging` in the report: per stage, what its nodes say about their rounds (docs/demo.md). */
export interface DemoAveraging {
  period: number
  /** Rounds done: per stage the most any of its nodes did in a group, summed over stages. */
  rounds: number
  per_stage: Array<{
    stage: number
    nodes: number
    rounds: number
    alone: number
    failed: number
    /** Mean over the stage's nodes and rounds of a node's L2 distance to the round's result before writing it back. */
    divergence_before: number | null
    /** The largest distance after writing back (0: every node holds the result exactly). */
    divergence_after: number | null
    /** Nodes that reported the same last round report the same digest of their parameters after it (null: fewer than two). */
    identical_after: boolean | null
  }>
}

export function averagingReport (s: DemoSettings, views: readonly NodeView[]): DemoAveraging | null {
  if (s.averageEvery <= 0) return null
  const per: DemoAveraging['per_stage'] = []
  for (let st = 0; st < s.stages; st++) {
    const nodes = views.filter(v => v.stage === st)
    const av = nodes.map(v => v.training?.averaging).filter(a => a != null)
    const hist = av.flatMap(a => a.history)
    const withRounds = av.filter(a => a.rounds > 0 && a.lastRound != null)
    const last = Math.max(...withRounds.map(a => a.lastRound as number))
    const atLast = withRounds.filter(a => a.lastRound === last)
    per.push({
      stage: st,
      nodes: nodes.length,
      rounds: Math.max(0, ...av.map(a => a.rounds)),
      alone: Math.max(0, ...av.map(a => a.alone)),
      failed: av.reduce((t, a) => t + a.failed, 0),
      divergence_before: hist.length > 0 ? hist.reduce((t, h) => t + h[3], 0) / hist.length : null,
      divergence_after: hist.length > 0 ? Math.max(...hist.map(h => h[4])) : null,
      identical_after: atLast.length >= 2 ? atLast.every(a => a.paramsDigest === atLast[0].paramsDigest) : null
    })
  }
  return { period: s.averageEvery, rounds: per.reduce((t, p) => t + p.rounds, 0), per_stage: per }
}

/** "averaging every 10 steps: 4 rounds; stage 1: distance to the mean 0.41 -> 0 (identical)" */
export function averagingLine (a: DemoAveraging): string {
  const parts = a.per_stage.filter(p => p.rounds > 0).map(p =>
    `stage ${p.stage}: distance to the mean ${p.divergence_before?.toPrecision(3) ?? '--'} -> ${p.divergence_after?.toPrecision(3) ?? '--'}${p.identical_after === true ? ' (identical)' : ''}`)
  // a doubled stage whose nodes never formed a group is a fault worth showing, not "nothing to average"
  const missed = a.per_stage.filter(p => p.nodes >= 2 && p.rounds === 0).map(p => `stage ${p.stage}: ${p.nodes} nodes never found each other (${p.alone} rounds alone)`)
  const all = [...parts, ...missed]
  const doubled = a.per_stage.some(p => p.nodes >= 2)
  return `averaging every ${a.period} steps: ${a.rounds} round${a.rounds === 1 ? '' : 's'}${all.length > 0 ? '; ' + all.join('; ') : doubled ? '' : ' (no stage has two nodes)'}`
}
