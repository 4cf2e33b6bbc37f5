// The metric families read from the node's status at scrape time (the same status `status --json`
// shows): the node's connections, the training run (step, loss, held-out loss, throughput, peers per
// stage, compute time), averaging rounds, verification checks, memory. Counters the node declares in
// its MetricsRegistry (microbatches, bytes) are bridged by registry-bridge.ts, not repeated here.
//
// Conventions (docs/metrics.md): `layerswarm_` prefix, base units, `_total` counters. A value the
// node does not know (no loss before the first step, no training on a bootstrap node) is left out
// of the scrape: its family shows HELP and TYPE and no sample. A counter read from a status restarts at 0 where its part restarts (a
// stage move rebuilds the pipeline); Prometheus' rate() and increase() treat that as a reset.
import { Counter, type Registry } from 'prom-client'
import { KnownGauge } from './known-gauge.ts'
import type { HostStatus, TrainingState } from '../pipeline/training-status.ts'

/** What one scrape reads; every part is optional (a bootstrap node has no training). */
export interface ScrapeStatus {
  readonly node?: {
    readonly peers: readonly string[]
    readonly connections: { readonly direct: number, readonly relayed: number }
    readonly dht: { readonly routingTableSize: number }
    readonly uptimeS: number
  }
  readonly training?: HostStatus
  /**
   * Milliseconds the serving stage worker spent computing (forward, backward, optimizer step, under
   * its lock), and that worker: a new worker (after a stage move) counts from 0 again.
   */
  readonly compute?: { readonly source: object, readonly busyMs: number }
}

type Labels = Record<string, string>
/** One reading: a value, labelled values, or undefined (unknown: no sample). */
type Reading = number | undefined | Array<[Labels, number]>

const STATES: readonly TrainingState[] = ['starting', 'waiting-peers', 'training', 'done', 'failed']
const CHECK_OUTCOMES = ['passed', 'failed', 'withheld', 'inconclusive'] as const

/** Registers the status families on `registry`; they read `current()` (set once per scrape) when collected. */
export function registerStatusMetrics (registry: Registry, current: () => ScrapeStatus): void {
  const compute = new MonotonicMs()
  /** At scrape time: read the status, reset the family, then record each labelled reading (`each`) or the plain one (`plain`). */
  const collect = (family: { reset: () => void }, read: (s: ScrapeStatus) => Reading, each: (labels: Labels, v: number) => void, plain: (v: number | undefined) => void): void => {
    const r = read(current())
    family.reset()
    if (Array.isArray(r)) for (const [labels, v] of r) each(labels, v)
    else plain(r)
  }
  const gauge = (name: string, help: string, labelNames: string[], read: (s: ScrapeStatus) => Reading): void => {
    // eslint-disable-next-line no-new
    new KnownGauge({
      name, help, labelNames, registers: [registry],
      collect () { collect(this, read, (labels, v) => { this.set(labels, v) }, v => { if (labelNames.length === 0) this.set(v ?? NaN) }) }
    })
  }
  const counter = (name: string, help: string, labelNames: string[], read: (s: ScrapeStatus) => Reading): void => {
    // eslint-disable-next-line no-new
    new Counter({
      name, help, labelNames, registers: [registry],
      collect () {
        const add = (labels: Labels, v: number): void => { if (Number.isFinite(v) && v > 0) this.inc(labels, v) }
        collect(this, read, add, v => { if (v != null) add({}, v) })
      }
    })
  }
  const t = (s: ScrapeStatus): HostStatus | undefined => s.training
  const num = (v: number | null | undefined): number => v ?? NaN

  // the node
  gauge('layerswarm_peers_connected', 'Peers this node has a connection to', [], s => s.node?.peers.length)
  gauge('layerswarm_connected_peers', 'Connected peers by how they are reached: direct, or only through a relay', ['path'],
    s => s.node == null ? undefined : [[{ path: 'direct' }, s.node.connections.direct], [{ path: 'relayed' }, s.node.connections.relayed]])
  gauge('layerswarm_dht_routing_table_peers', 'Peers in the DHT routing table', [], s => s.node?.dht.routingTableSize)
  gauge('layerswarm_uptime_seconds', 'Seconds since the node started', [], s => s.node?.uptimeS)

  // the run as this node sees it
  gauge('layerswarm_step', 'Optimizer steps this node applied to its stage (restarts after a stage move)', [], s => t(s)?.step)
  gauge('layerswarm_steps_target', 'Optimizer steps of the run', [], s => t(s)?.steps)
  gauge('layerswarm_stage', 'Pipeline stage this node serves (absent: none yet)', [], s => num(t(s)?.stage))
  gauge('layerswarm_stages', 'Pipeline stages of the run', [], s => t(s)?.stages)
  gauge('layerswarm_training_state', 'Training state of this node: 1 for the current state, 0 for the others', ['state'],
    s => t(s) == null ? undefined : STATES.map(st => [{ state: st }, t(s)?.state === st ? 1 : 0]))
  gauge('layerswarm_stage_peers', 'Peers of the run serving each stage, as this node\'s membership view sees them', ['stage'],
    s => Object.entries(t(s)?.peersPerStage ?? {}).map(([stage, n]) => [{ stage }, n]))
  gauge('layerswarm_stage_serving_nodes', 'Nodes serving each stage in the scheduler\'s view, this one included', ['stage'],
    s => (t(s)?.servingPerStage ?? []).map((n, stage) => [{ stage: String(stage) }, n]))
  gauge('layerswarm_loss', 'Training loss of this node\'s last optimizer step (mean over its microbatches)', [], s => num(t(s)?.lossLast))
  gauge('layerswarm_eval_loss', 'Held-out loss of the last evaluation (absent: none yet)', [], s => num(t(s)?.evalLoss))
  gauge('layerswarm_learning_rate', 'Learning rate of the last optimizer step', [], s => num(t(s)?.lr))
  gauge('layerswarm_microbatches_per_second', 'Training microbatches this node completes per second (moving average)', [], s => t(s)?.throughput)
  gauge('layerswarm_tokens_per_second', 'Tokens this node completes per second (moving average of microbatches x their mean tokens)', [], s => tokensPerSecond(t(s)))
  gauge('layerswarm_inflight_microbatches', 'Microbatches in flight on this node', [], s => t(s)?.queue)
  gauge('layerswarm_inflight_max', 'Microbatches a stage-0 node keeps in flight at most', [], s => t(s)?.maxInflight)
  counter('layerswarm_stage_moves_total', 'Times the scheduler moved this node to another stage', [], s => t(s)?.moves)
  counter('layerswarm_peer_penalties_total', 'Penalties this node counted against peers (dropped, malformed or failed work)', [], s => t(s)?.penalties.total)
  counter('layerswarm_compute_seconds_total', 'Seconds the stage worker spent computing: forward, backward and optimizer kernels, under its lock', [],
    s => s.compute == null ? compute.total / 1000 : compute.read(s.compute.source, s.compute.busyMs) / 1000)

  // averaging rounds (all-reduce) of the stage's nodes
  const avg = (s: ScrapeStatus): NonNullable<HostStatus['averaging']> | undefined => t(s)?.averaging ?? undefined
  counter('layerswarm_allreduce_rounds_total', 'Averaging rounds by outcome: averaged (a group of two or more), alone, retried, failed, busy (trigger dropped)', ['outcome'],
    s => { const a = avg(s); return a == null ? undefined : [[{ outcome: 'averaged' }, a.rounds], [{ outcome: 'alone' }, a.alone], [{ outcome: 'retried' }, a.retried], [{ outcome: 'failed' }, a.failed], [{ outcome: 'busy' }, a.busy]] })
  counter('layerswarm_allreduce_seconds_total', 'Seconds averaging rounds held the stage, every round tried (group formation, all-reduce, write-back)', [],
    s => { const ms = avg(s)?.totalMs; return ms == null ? undefined : ms / 1000 })
  gauge('layerswarm_allreduce_last_round_seconds', 'Seconds the last averaging round held the stage (group formation, all-reduce, write-back)', [], s => { const ms = avg(s)?.lastMs; return ms == null ? undefined : ms / 1000 })
  gauge('layerswarm_allreduce_group_size', 'Group size of the last averaging round tried', [], s => num(avg(s)?.lastGroupSize))
  gauge('layerswarm_allreduce_divergence', 'L2 distance of this node\'s parameters to the last round\'s average, before and after writing it back', ['when'],
    s => { const a = avg(s); return a?.divergenceBefore == null ? undefined : [[{ when: 'before' }, a.divergenceBefore], [{ when: 'after' }, num(a.divergenceAfter)]] })

  // verification: this node's checks of its peers (a validator) and the convictions it holds
  const validator = (s: ScrapeStatus): Record<string, unknown> | undefined => t(s)?.verification?.validator as Record<string, unknown> | undefined
  counter('layerswarm_checks_total', 'Checks of peers\' work this node ran as a validator, by outcome', ['outcome'],
    s => { const v = validator(s); return v == null ? undefined : CHECK_OUTCOMES.map(o => [{ outcome: o }, Number(v[o] ?? 0)]) })
  gauge('layerswarm_convicted_peers', 'Peers this node holds convicted of cheating', [], s => {
    const c = t(s)?.verification?.convictions
    return Array.isArray(c) ? c.length : undefined
  })

  // memory of the served stage
  gauge('layerswarm_memory_budget_bytes', 'Memory budget of the node (--max-memory; absent: none)', [], s => num(t(s)?.memory?.budget))
  gauge('layerswarm_stage_memory_estimate_bytes', 'Estimated memory of the served stage', [], s => num(t(s)?.memory?.estimate))
}

function tokensPerSecond (s: HostStatus | undefined): number | undefined {
  if (s == null) return undefined
  if (s.microbatchesDone === 0) return 0
  return s.throughput * s.tokens / s.microbatchesDone
}

/**
 * A monotonic total of readings of counters that restart from 0 with a new source: the node's stage
 * worker is replaced on a stage move, and the exporter's counter must keep growing across it.
 */
export class MonotonicMs {
  total = 0
  private source: object | undefined
  private last = 0

  read (source: object, value: number): number {
    if (source !== this.source) {
      this.source = source
      this.last = 0
    }
    if (value > this.last) {
      this.total += value - this.last
      this.last = value
    }
    return this.total
  }
}
