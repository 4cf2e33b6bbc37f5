// The node's metrics registry: counters declared once with Prometheus names, shared by every
// pipeline the node runs (core/metrics/registry.ts, core/pipeline/pipeline-metrics.ts).
import assert from 'node:assert/strict'
import { ConfigError } from '../core/errors.ts'
import { MetricsRegistry } from '../core/metrics/registry.ts'
import { PIPELINE_COUNTERS, PipelineMetrics } from '../core/pipeline/pipeline-metrics.ts'

describe('metrics registry', () => {
  it('declares counters once; the same declaration returns the same counter; gauges are read at collect', () => {
    const r = new MetricsRegistry()
    const c = r.counter('layerswarm_things_total', 'Things')
    c.inc()
    c.inc(2)
    assert.equal(r.counter('layerswarm_things_total', 'Things'), c)
    let g = 5
    r.gauge('layerswarm_queue', 'Queue length', () => g)
    g = 7
    assert.deepEqual(r.collect(), [
      { name: 'layerswarm_things_total', help: 'Things', type: 'counter', value: 3 },
      { name: 'layerswarm_queue', help: 'Queue length', type: 'gauge', value: 7 }
    ])
  })

  it('refuses bad names, counters without _total, a clash of meaning and a counter going down', () => {
    const r = new MetricsRegistry()
    assert.throws(() => r.counter('bad name_total', 'x'), ConfigError)
    assert.throws(() => r.counter('layerswarm_things', 'x'), /must end in _total/)
    assert.throws(() => r.gauge('layerswarm_g', ' ', () => 0), /help/)
    r.counter('layerswarm_a_total', 'A')
    assert.throws(() => r.counter('layerswarm_a_total', 'another A'), /another meaning/)
    assert.throws(() => r.gauge('layerswarm_a_total', 'A', () => 0), /another meaning/)
    assert.throws(() => r.counter('layerswarm_b_total', 'B').inc(-1), /can only grow/)
    assert.throws(() => r.counter('layerswarm_c_total', 'C').inc(Number.NaN), /can only grow/)
  })

  it('pipelines on one registry add up (a node that moves keeps its counts); each counter is a Prometheus counter', () => {
    const r = new MetricsRegistry()
    const a = new PipelineMetrics(r)
    a.completed(64)
    a.boundarySent('backward', 100, 64)
    const b = new PipelineMetrics(r)
    b.completed(64)
    assert.equal(b.snapshot().microbatchesDone, 2)
    assert.equal(b.snapshot().tokens, 128)
    assert.equal(b.snapshot().bytesBackward, 100)
    const names = r.collect().map(s => s.name)
    assert.deepEqual(names, Object.values(PIPELINE_COUNTERS).map(([n]) => n))
    assert.ok(names.every(n => /^layerswarm_[a-z_]+_total$/.test(n)))
  })
})
