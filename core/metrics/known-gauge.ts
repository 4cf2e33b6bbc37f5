// A prom-client gauge that leaves out what the node does not know. prom-client always prints an
// unlabelled gauge (0 before any set) and prints NaN as "Nan"; a made-up 0 loss or stage misleads a
// dashboard, so an unknown is set as NaN here and dropped from the scrape: the family keeps its HELP
// and TYPE lines with no sample, which Prometheus reads as "no data".
import { Gauge, type MetricObjectWithValues, type MetricValue } from 'prom-client'

export class KnownGauge<T extends string = string> extends Gauge<T> {
  override async get (): Promise<MetricObjectWithValues<MetricValue<T>>> {
    const m = await super.get()
    return { ...m, values: m.values.filter(v => !Number.isNaN(v.value)) }
  }
}
