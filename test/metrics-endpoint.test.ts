// The Prometheus endpoint (`start --metrics HOST:PORT`, core/metrics/, docs/metrics.md):
//  - a real 2-stage swarm of `layerswarm start` processes, --metrics on the stage-0 node: /metrics
//    parses as Prometheus text (parse-prometheus-text-format, not a regex), its counters move as
//    training advances (microbatches done, tokens, step, compute seconds), the status families (loss,
//    peers per stage, stage), the process defaults and libp2p's own metrics (bytes per protocol among
//    them) are there; other paths and methods are refused; the port is free once the node stopped;
//  - bad --metrics values (flag, env, config file) and a port in use exit 2 with a clear message;
//  - in-process: the address parser, a counter the node declares after the server started shows
//    at the next scrape, what is unknown is left out (not 0), close() frees the port.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { createServer, type Server } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SwarmLauncher, type LaunchedNode } from '../core/demo/swarm-launcher.ts'
import { bootstrapArgs } from '../core/demo/swarm-plan.ts'
import { ConfigError } from '../core/errors.ts'
import { MetricsAddressError, parseMetricsAddress } from '../core/metrics/metrics-address.ts'
import { startMetricsServer } from '../core/metrics/prometheus-exporter.ts'
import { MetricsRegistry } from '../core/metrics/registry.ts'
import { BIN, ROOT, runCli } from './cli-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { tinyCorpus } from './pipeline-helpers.ts'
import { writeMicroModel } from './swarm-helpers.ts'
import { waitFor } from './wait-helpers.ts'

// the parser ships CommonJS without type declarations: its shape, as its README gives it
interface Sample { value: string, labels?: Record<string, string> }
interface Family { name: string, help: string, type: string, metrics: Sample[] }
const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[]

type Scrape = Map<string, Family>

async function scrape (url: string): Promise<Scrape> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  const families = parsePrometheus(await res.text())
  const byName = new Map(families.map(f => [f.name, f]))
  assert.equal(byName.size, families.length, 'every family appears once')
  return byName
}

/** The value of `name`'s sample whose labels include `labels` (undefined: no such sample). */
function value (s: Scrape, name: string, labels: Record<string, string> = {}): number | undefined {
  const m = s.get(name)?.metrics.find(x => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v))
  return m == null ? undefined : Number(m.value)
}

async function portFree (port: number): Promise<boolean> {
  const server: Server = createServer()
  return await new Promise<boolean>(resolve => {
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
  })
}

describe('metrics endpoint: start --metrics serves /metrics for Prometheus', function () {
  let dir: string
  let launcher: SwarmLauncher | undefined
  let metricsNode: LaunchedNode
  let url: string
  let logFile: string

  before(async function () {
    this.timeout(240_000)
    dir = await tempDir('lsw-metrics-')
    const { path: corpus } = await tinyCorpus(dir)
    const model = await writeMicroModel(dir)
    const config = join(dir, 'node-config.json')
    await writeFile(config, JSON.stringify({ pluginOptions: { 'backend-cpu': { threads: 1 } } }))
    const run = ['--stages', '2', '--model', model, '--data', corpus, '--steps', '100000', '--batch', '2', '--seq-len', '16', '--lr', '3e-3',
      '--warmup', '2', '--max-inflight', '2', '--eval-every', '3', '--eval-batches', '1']
    launcher = new SwarmLauncher({ bin: BIN, cwd: ROOT })
    const boot = await launcher.start({ name: 'boot', args: bootstrapArgs(join(dir, 'boot')), logFile: join(dir, 'boot.log') })
    const node = async (stage: number, extra: string[]): Promise<LaunchedNode> => await launcher!.start({
      name: `s${stage}`,
      args: ['--data-dir', join(dir, `s${stage}`), '--config', config, '--listen', '/ip4/127.0.0.1/tcp/0', '--bootstrap', boot.addrs[0], '--stage', String(stage), ...run, ...extra],
      logFile: join(dir, `s${stage}.log`)
    })
    logFile = join(dir, 's0.log')
    ;[metricsNode] = await Promise.all([node(0, ['--metrics', '127.0.0.1:0', '--log-format', 'json']), node(1, ['--log-level', 'warn'])])
    // port 0: the node logs the url it bound
    const { readFile } = await import('node:fs/promises')
    url = await waitFor(async () => {
      for (const line of (await readFile(logFile, 'utf8')).split('\n')) {
        if (!line.includes('"metrics served"')) continue
        return JSON.parse(line).url as string
      }
      return undefined
    }, { what: 'the metrics url in the stage-0 log', timeoutMs: 30_000, intervalMs: 200 })
  })

  after(async function () {
    this.timeout(60_000)
    await launcher?.stopAll(10_000)
    if (dir != null) await removeDirs([dir])
  })

  it('parses as Prometheus text; counters move as training advances; status, process and libp2p metrics are there', async function () {
    this.timeout(240_000)
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
    const alive = (): void => { if (metricsNode.exit != null) throw new Error(`the stage-0 node exited; see ${logFile}`) }
    const first = await waitFor(async () => {
      alive()
      const s = await scrape(url)
      return (value(s, 'layerswarm_microbatches_done_total') ?? 0) > 0 && (value(s, 'layerswarm_step') ?? 0) >= 1 ? s : undefined
    }, { what: 'a first microbatch and step on stage 0', timeoutMs: 180_000, intervalMs: 1000, failOnError: true })
    const second = await waitFor(async () => {
      alive()
      const s = await scrape(url)
      return (value(s, 'layerswarm_step') ?? 0) >= value(first, 'layerswarm_step')! + 3 && value(s, 'layerswarm_eval_loss') != null ? s : undefined
    }, { what: 'three more steps and a held-out loss', timeoutMs: 180_000, intervalMs: 1000, failOnError: true })

    // counters grew
    for (const name of ['layerswarm_microbatches_done_total', 'layerswarm_microbatches_started_total', 'layerswarm_tokens_total', 'layerswarm_compute_seconds_total', 'layerswarm_pipeline_forward_bytes_total']) {
      assert.equal(second.get(name)?.type, 'COUNTER', name)
      assert.ok(value(second, name)! > value(first, name)!, `${name} grew: ${value(first, name)} -> ${value(second, name)}`)
    }
    for (const name of ['layerswarm_microbatches_dropped_total', 'layerswarm_microbatches_retried_total']) assert.equal(second.get(name)?.type, 'COUNTER', name)
    // the run as the stage-0 node sees it
    assert.equal(value(second, 'layerswarm_stage'), 0)
    assert.equal(value(second, 'layerswarm_stages'), 2)
    assert.equal(value(second, 'layerswarm_training_state', { state: 'training' }), 1)
    assert.ok(value(second, 'layerswarm_stage_peers', { stage: '1' })! >= 1, 'a peer of stage 1 is seen')
    assert.ok(Number.isFinite(value(second, 'layerswarm_loss')) && value(second, 'layerswarm_loss')! > 0, 'a finite loss')
    assert.ok(Number.isFinite(value(second, 'layerswarm_eval_loss')), 'a finite held-out loss')
    assert.ok(value(second, 'layerswarm_tokens_per_second')! >= 0)
    assert.ok(value(second, 'layerswarm_peers_connected')! >= 2, 'connected to the bootstrap node and stage 1')
    // every family of ours follows the conventions
    for (const f of second.values()) {
      if (!f.name.startsWith('layerswarm_')) continue
      assert.equal(f.type === 'COUNTER', f.name.endsWith('_total'), `${f.name}: counters and only counters end in _total`)
      assert.ok(f.help.length > 0, `${f.name} has help`)
    }
    // the process's default metrics
    assert.ok(value(second, 'process_cpu_seconds_total')! > 0)
    assert.ok(value(second, 'nodejs_heap_size_used_bytes')! > 0)
    // libp2p's own metrics, and bytes per protocol from them
    assert.ok(value(second, 'libp2p_connection_manager_connections', { libp2p_connection_manager_connections: 'outbound' }) != null, 'libp2p connection metrics')
    assert.equal(second.get('libp2p_data_transfer_bytes_total')?.type, 'COUNTER')
    const sent = value(second, 'layerswarm_protocol_bytes_total', { protocol: '/layerswarm/pipeline/forward/1.0.0', direction: 'sent' })
    assert.ok(sent != null && sent > 0, 'activations sent to stage 1, counted on the pipeline protocol')
    assert.ok(sent >= (value(first, 'layerswarm_protocol_bytes_total', { protocol: '/layerswarm/pipeline/forward/1.0.0', direction: 'sent' }) ?? 0))
  })

  it('answers only GET /metrics', async () => {
    const other = await fetch(url.replace(/\/metrics$/, '/other'), { signal: AbortSignal.timeout(10_000) })
    assert.equal(other.status, 404)
    assert.match(await other.text(), /\/metrics/)
    const post = await fetch(url, { method: 'POST', body: 'x', signal: AbortSignal.timeout(10_000) })
    assert.equal(post.status, 405)
    await post.text()
  })

  it('frees the port when the node stops', async function () {
    this.timeout(60_000)
    const port = Number(new URL(url).port)
    assert.equal(await portFree(port), false, 'the port is held while the node runs')
    launcher!.signal(metricsNode, 'SIGTERM')
    const exit = await metricsNode.exited
    assert.deepEqual(exit, { code: 0, signal: null })
    assert.equal(await portFree(port), true, 'the port is free after the node stopped')
    await assert.rejects(fetch(url, { signal: AbortSignal.timeout(10_000) }))
  })
})

describe('metrics endpoint: bad --metrics values exit 2', function () {
  let dir: string
  let busy: Server | undefined

  before(async () => { dir = await tempDir('lsw-metrics-bad-') })
  after(async () => {
    await new Promise<void>(resolve => { if (busy != null) busy.close(() => { resolve() }); else resolve() })
    if (dir != null) await removeDirs([dir])
  })

  it('a malformed flag, env var or config key names itself and the accepted forms', async function () {
    this.timeout(180_000)
    const flag = await runCli(['start', '--data-dir', join(dir, 'a'), '--metrics', 'localhost:99999'])
    assert.equal(flag.code, 2, flag.stderr)
    assert.match(flag.stderr, /--metrics "localhost:99999": port "99999" is not an integer in 0\.\.65535; use PORT \(loopback\), HOST:PORT/)
    const env = await runCli(['start', '--data-dir', join(dir, 'b')], { env: { LAYERSWARM_METRICS: 'bad host:9464' } })
    assert.equal(env.code, 2, env.stderr)
    assert.match(env.stderr, /LAYERSWARM_METRICS "bad host:9464": "bad host" is not an IP address or host name/)
    const file = join(dir, 'config.json')
    await writeFile(file, JSON.stringify({ metrics: true }))
    const cfg = await runCli(['start', '--data-dir', join(dir, 'c'), '--config', file])
    assert.equal(cfg.code, 2, cfg.stderr)
    assert.match(cfg.stderr, /"metrics" must be "HOST:PORT" or a port number/)
    assert.doesNotMatch(flag.stderr + env.stderr + cfg.stderr, /listening/)
  })

  it('a port in use exits 2 before the node starts', async function () {
    this.timeout(120_000)
    busy = createServer()
    await new Promise<void>(resolve => busy!.listen(0, '127.0.0.1', resolve))
    const port = (busy.address() as { port: number }).port
    const r = await runCli(['start', '--data-dir', join(dir, 'd'), '--bootstrap-node', '--listen', '/ip4/127.0.0.1/tcp/0', '--metrics', `127.0.0.1:${port}`])
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, new RegExp(`--metrics cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use; choose another HOST:PORT`))
    assert.doesNotMatch(r.stdout, /listening/)
  })
})

describe('metrics endpoint: the exporter in-process', () => {
  it('parses PORT, HOST:PORT and [IPv6]:PORT; a bare port is loopback', () => {
    assert.deepEqual(parseMetricsAddress('9464'), { host: '127.0.0.1', port: 9464 })
    assert.deepEqual(parseMetricsAddress('0.0.0.0:9464'), { host: '0.0.0.0', port: 9464 })
    assert.deepEqual(parseMetricsAddress('metrics.example.org:80'), { host: 'metrics.example.org', port: 80 })
    assert.deepEqual(parseMetricsAddress('[::1]:0'), { host: '::1', port: 0 })
    for (const bad of ['', ':', 'x', '127.0.0.1:', '127.0.0.1:-1', '127.0.0.1:65536', '::1:80', '[x]:80', 'a b:80', '1.5']) {
      assert.throws(() => parseMetricsAddress(bad), (err: unknown) => err instanceof MetricsAddressError && err instanceof ConfigError && err.code === 'ERR_METRICS_ADDRESS', bad)
    }
  })

  it('bridges counters declared after it started, leaves unknowns out, and frees its port on close', async () => {
    const registry = new MetricsRegistry()
    registry.counter('layerswarm_early_total', 'Declared before the server').inc(2)
    const server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry, status: () => ({}) })
    try {
      const a = await scrape(server.url)
      assert.equal(value(a, 'layerswarm_early_total'), 2)
      assert.equal(a.get('layerswarm_late_total'), undefined)
      // no training status: the family is described, with no made-up sample
      assert.equal(a.get('layerswarm_loss')?.type, 'GAUGE')
      assert.deepEqual(a.get('layerswarm_loss')?.metrics, [])
      registry.counter('layerswarm_late_total', 'Declared after the server').inc(5)
      let g = 1.5
      registry.gauge('layerswarm_late_gauge', 'A gauge declared late', () => g)
      const b = await scrape(server.url)
      assert.equal(value(b, 'layerswarm_late_total'), 5)
      assert.equal(value(b, 'layerswarm_late_gauge'), 1.5)
      g = 3
      assert.equal(value(await scrape(server.url), 'layerswarm_late_gauge'), 3)
    } finally {
      await server.close()
    }
    await server.close() // idempotent
    assert.equal(await portFree(server.port), true)
  })

  it('an aborted bind throws and holds no port', async () => {
    const ac = new AbortController()
    ac.abort()
    await assert.rejects(startMetricsServer({ host: '127.0.0.1', port: 0, signal: ac.signal }), (err: Error) => err.name === 'AbortError')
  })
})
