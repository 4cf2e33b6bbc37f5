// What a pipeline node counts and measures, declared once: the counters (in the node's metrics
// registry, core/metrics/registry.ts, so `status --json`, the run report, the demo and a Prometheus
// exporter read the same numbers), the loss and held-out loss curves, and the throughput EWMA the
// membership heartbeat gossips. The parts of the pipeline (dispatch, stage server, data role) only
// call the recording methods here; TrainingStatus (training-status.ts) is built from snapshot().
import { MetricsRegistry, type Counter } from '../metrics/registry.ts'
import { PipelineProfile } from './pipeline-profile.ts'

/** Every counter of a pipeline node: its status key, its metric name and what it counts. */
export const PIPELINE_COUNTERS = {
  microbatchesStarted: ['layerswarm_microbatches_started_total', 'Training microbatches this node started or received'],
  microbatchesDone: ['layerswarm_microbatches_done_total', 'Training microbatches this node completed (forward and backward)'],
  microbatchesDropped: ['layerswarm_microbatches_dropped_total', 'Training microbatches dropped after the retry budget'],
  microbatchesRetried: ['layerswarm_microbatches_retried_total', 'Attempts beyond the first to send a microbatch to the next stage'],
  tokens: ['layerswarm_tokens_total', 'Tokens (B x T) of the microbatches this node completed'],
  bytesForward: ['layerswarm_pipeline_forward_bytes_total', 'Payload bytes sent to the next stage (encoded activations and raw targets), every attempt'],
  bytesBackward: ['layerswarm_pipeline_backward_bytes_total', 'Payload bytes of encoded gradients sent to the previous stage'],
  boundaryBytesForward: ['layerswarm_boundary_forward_bytes_total', 'Encoded activation bytes sent across the stage boundary, train and eval'],
  boundaryTokensForward: ['layerswarm_boundary_forward_tokens_total', 'Tokens those activation bytes carried'],
  boundaryBytesBackward: ['layerswarm_boundary_backward_bytes_total', 'Encoded gradient bytes sent back across the stage boundary'],
  boundaryTokensBackward: ['layerswarm_boundary_backward_tokens_total', 'Tokens those gradient bytes carried']
} as const satisfies Record<string, readonly [string, string]>

export type PipelineCounterName = keyof typeof PIPELINE_COUNTERS
export type PipelineCounters = Record<PipelineCounterName, number>

const MAX_CURVE = 10_000

export interface CurveSnapshot {
  lossLast: number | null
  /** [1-based step, mean loss of that step's microbatches] per optimizer step of this node. */
  loss: Array<[number, number]>
  evalLoss: number | null
  evals: Array<[number, number]>
  lr: number | null
}

export class PipelineMetrics {
  private readonly counters: Record<PipelineCounterName, Counter>
  private readonly curves: CurveSnapshot = { lossLast: null, loss: [], evalLoss: null, evals: [], lr: null }
  private lastCompletion = 0
  private intervalEwma = 0
  /** Where this node's microbatches spend their time (pipeline-profile.ts); the parts time their own phases into it. */
  readonly profile = new PipelineProfile()

  /** `registry`: the node's (counts add up over the stages it serves); default a registry of its own. */
  constructor (readonly registry: MetricsRegistry = new MetricsRegistry()) {
    const out: Partial<Record<PipelineCounterName, Counter>> = {}
    for (const [key, [name, help]] of Object.entries(PIPELINE_COUNTERS)) out[key as PipelineCounterName] = registry.counter(name, help)
    this.counters = out as Record<PipelineCounterName, Counter>
  }

  count (name: PipelineCounterName, n = 1): void {
    this.counters[name].inc(n)
  }

  /** A boundary tensor of `tokens` tokens left this node as `bytes` encoded bytes. */
  boundarySent (direction: 'forward' | 'backward', bytes: number, tokens: number): void {
    if (direction === 'forward') {
      this.count('boundaryBytesForward', bytes)
      this.count('boundaryTokensForward', tokens)
    } else {
      this.count('bytesBackward', bytes)
      this.count('boundaryBytesBackward', bytes)
      this.count('boundaryTokensBackward', tokens)
    }
  }

  /** A training microbatch of `tokens` tokens completed here. */
  completed (tokens: number): void {
    this.count('microbatchesDone')
    this.count('tokens', tokens)
    this.profile.completed()
    const now = performance.now()
    if (this.lastCompletion > 0) {
      const dt = now - this.lastCompletion
      this.intervalEwma = this.intervalEwma === 0 ? dt : 0.8 * this.intervalEwma + 0.2 * dt
    }
    this.lastCompletion = now
  }

  /** Microbatches per second (EWMA of the intervals between completions); an idle node's rate decays. */
  throughput (): number {
    if (this.intervalEwma <= 0) return 0
    // the time since the last completion counts as an interval in progress
    const idle = performance.now() - this.lastCompletion
    const interval = idle > this.intervalEwma ? 0.8 * this.intervalEwma + 0.2 * idle : this.intervalEwma
    return Math.round(1e4 * 1000 / interval) / 1e4
  }

  stepped (step: number, loss: number, lr: number): void {
    this.curves.lr = lr
    if (!Number.isFinite(loss)) return
    this.curves.lossLast = loss
    push(this.curves.loss, [step, loss])
  }

  evaluated (step: number, loss: number): void {
    this.curves.evalLoss = loss
    push(this.curves.evals, [step, loss])
  }

  get lossLast (): number | null { return this.curves.lossLast }
  get evalLoss (): number | null { return this.curves.evalLoss }

  snapshot (): PipelineCounters & CurveSnapshot {
    const counters = Object.fromEntries(Object.entries(this.counters).map(([k, c]) => [k, c.value])) as PipelineCounters
    return { ...counters, ...this.curves, loss: this.curves.loss.slice(), evals: this.curves.evals.slice() }
  }
}

function push (curve: Array<[number, number]>, point: [number, number]): void {
  curve.push(point)
  if (curve.length > MAX_CURVE) curve.splice(0, curve.length - MAX_CURVE)
}
