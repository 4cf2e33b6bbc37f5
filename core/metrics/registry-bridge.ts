// Bridges the node's MetricsRegistry (registry.ts: the counters and gauges its parts declare) into a
// prom-client registry. Parts declare metrics while the node runs (a pipeline declares its counters
// when it starts), so every scrape first syncs: a name seen for the first time gets a prom-client
// family whose collect() reads that scrape's value. The registry is the source of truth: where it
// declares a name a status family (status-metrics.ts) also uses, the registry's replaces it.
import { Counter, type Registry } from 'prom-client'
import { KnownGauge } from './known-gauge.ts'
import type { MetricSample, MetricsRegistry } from './registry.ts'

export class RegistryBridge {
  private readonly bridged = new Set<string>()
  private values = new Map<string, number>()

  constructor (private readonly target: Registry) {}

  /** Reads `source` once and registers families for names not bridged yet; call before target.metrics(). */
  sync (source: MetricsRegistry | undefined): void {
    const samples = source?.collect() ?? []
    this.values = new Map(samples.map(s => [s.name, s.value]))
    for (const s of samples) if (!this.bridged.has(s.name)) this.add(s)
  }

  private add (s: MetricSample): void {
    if (this.target.getSingleMetric(s.name) != null) this.target.removeSingleMetric(s.name)
    this.bridged.add(s.name)
    const read = (): number => this.values.get(s.name) ?? NaN
    const common = { name: s.name, help: s.help, registers: [this.target] }
    if (s.type === 'counter') {
      // eslint-disable-next-line no-new
      new Counter({ ...common, collect () { this.reset(); const v = read(); if (Number.isFinite(v) && v > 0) this.inc(v) } })
    } else {
      // eslint-disable-next-line no-new
      new KnownGauge({ ...common, collect () { this.set(read()) } })
    }
  }
}
