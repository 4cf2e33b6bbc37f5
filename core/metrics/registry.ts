// The node's metrics: counters and gauges declared once, by the part that owns them, and read by
// everything that reports them (`status --json`, the run report, the demo, and a Prometheus
// exporter, which only needs collect()). Names follow Prometheus conventions: `layerswarm_` prefix,
// base units, `_total` for counters. A counter lives as long as its registry: a node keeps one
// registry for its life, so counts add up over every stage it serves.
import { ConfigError } from '../errors.ts'

export type MetricType = 'counter' | 'gauge'

export interface MetricSample {
  readonly name: string
  readonly help: string
  readonly type: MetricType
  readonly value: number
}

/** A monotonically increasing count. */
export interface Counter {
  inc(n?: number): void
  readonly value: number
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/

interface Entry {
  readonly help: string
  readonly type: MetricType
  read(): number
}

export class MetricsRegistry {
  private readonly entries = new Map<string, Entry>()
  private readonly counters = new Map<string, Counter>()

  /** The counter `name`; declaring it again (same help) returns the same counter. */
  counter (name: string, help: string): Counter {
    const known = this.counters.get(name)
    if (known != null) {
      this.check(name, help, 'counter')
      return known
    }
    this.declare(name, help, 'counter')
    let value = 0
    const c: Counter = {
      inc (n = 1) {
        if (!(n >= 0)) throw new ConfigError(`counter ${name} can only grow (inc(${n}))`)
        value += n
      },
      get value () { return value }
    }
    this.counters.set(name, c)
    this.entries.set(name, { help, type: 'counter', read: () => value })
    return c
  }

  /** A gauge read when collected; declaring it again replaces the reader (the part that owns it restarted). */
  gauge (name: string, help: string, read: () => number): void {
    if (this.entries.has(name)) this.check(name, help, 'gauge')
    else this.declare(name, help, 'gauge')
    this.entries.set(name, { help, type: 'gauge', read })
  }

  /** Every metric's current value, in declaration order. */
  collect (): MetricSample[] {
    return [...this.entries].map(([name, e]) => ({ name, help: e.help, type: e.type, value: e.read() }))
  }

  private declare (name: string, help: string, type: MetricType): void {
    if (!NAME_RE.test(name)) throw new ConfigError(`metric name ${JSON.stringify(name)} is not a Prometheus name`)
    if (type === 'counter' && !name.endsWith('_total')) throw new ConfigError(`counter ${name} must end in _total`)
    if (help.trim() === '') throw new ConfigError(`metric ${name} needs a help text`)
  }

  private check (name: string, help: string, type: MetricType): void {
    const e = this.entries.get(name)
    if (e != null && (e.type !== type || e.help !== help)) throw new ConfigError(`metric ${name} is already declared as a ${e.type} with another meaning`)
  }
}
