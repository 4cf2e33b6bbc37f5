// The Prometheus endpoint of a node (`layerswarm start --metrics HOST:PORT`, docs/metrics.md): an
// HTTP server answering GET /metrics in the Prometheus text format (prom-client). One scrape reads:
//   - the node's MetricsRegistry (registry.ts), bridged family by family (registry-bridge.ts);
//   - the node's status (status-metrics.ts): step, loss, peers per stage, averaging, checks, ...;
//   - the process's default metrics (prom-client collectDefaultMetrics, on this server's registry,
//     never the global one);
//   - libp2p's own metrics (@libp2p/prometheus-metrics), when the node was created with
//     libp2pPrometheus().metrics, plus bytes per protocol read from them with proper labels.
// Self-contained: the dashboard or `join` can start one for any node with the same call.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Counter, Registry } from 'prom-client'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import type { Metrics } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { AbortError } from '../errors.ts'
import { silentLogger } from '../logger.ts'
import { formatHostPort, MetricsAddressError } from './metrics-address.ts'
import type { MetricsRegistry } from './registry.ts'
import { RegistryBridge } from './registry-bridge.ts'
import { registerStatusMetrics, type ScrapeStatus } from './status-metrics.ts'

export type { ScrapeStatus } from './status-metrics.ts'

/** libp2p's metrics module and the prom-client registry it fills. */
export interface Libp2pPrometheus {
  readonly registry: Registry
  /** createLibp2p's `metrics` (createNode's `libp2pMetrics`). */
  readonly metrics: (components: any) => Metrics
}

/**
 * libp2p's metrics into a registry of their own (served beside the node's by startMetricsServer).
 * The module keeps its metric objects in a module-wide map that each instance clears, so one
 * process holds one node with libp2p metrics at a time (a CLI node; tests start them one by one).
 */
export function libp2pPrometheus (): Libp2pPrometheus {
  const registry = new Registry()
  return { registry, metrics: prometheusMetrics({ registry, collectDefaultMetrics: false }) }
}

export interface MetricsServerInit {
  /** IP literal or host name; loopback is what an operator gets unless they name another. */
  readonly host: string
  /** 0: any free port (see `url`). */
  readonly port: number
  /** The node's counters and gauges (Tokens.Metrics), or a reader of them: the server may bind before the node exists. */
  readonly registry?: MetricsRegistry | (() => MetricsRegistry | undefined)
  /** The node's status, read once per scrape. */
  readonly status?: () => ScrapeStatus | undefined
  /** libp2p's metrics, when the node was created with them. */
  readonly libp2p?: Libp2pPrometheus
  readonly log?: Logger
  /** Aborts the bind. */
  readonly signal?: AbortSignal
}

export interface MetricsServer {
  /** http://HOST:PORT/metrics, with the port bound. */
  readonly url: string
  readonly host: string
  readonly port: number
  /** One scrape's text, as GET /metrics answers it. */
  scrape(): Promise<string>
  /** Stops listening and drops open connections; idempotent. */
  close(): Promise<void>
}

export const METRICS_PATH = '/metrics'
const LIBP2P_TRANSFER = 'libp2p_data_transfer_bytes_total'

export async function startMetricsServer (init: MetricsServerInit): Promise<MetricsServer> {
  if (init.signal?.aborted === true) throw new AbortError('binding the metrics server was aborted')
  const log = (init.log ?? silentLogger).forComponent('layerswarm:metrics')
  const prom = new Registry()
  collectDefaultMetrics({ register: prom })
  let current: ScrapeStatus = {}
  registerStatusMetrics(prom, () => current)
  if (init.libp2p != null) registerProtocolBytes(prom, init.libp2p.registry)
  const bridge = new RegistryBridge(prom)

  const scrape = async (): Promise<string> => {
    current = init.status?.() ?? {}
    bridge.sync(typeof init.registry === 'function' ? init.registry() : init.registry)
    // merged per scrape: libp2p registers metrics as its components start
    const reg = init.libp2p != null ? Registry.merge([prom, init.libp2p.registry]) : prom
    return await reg.metrics()
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET\n')
      return
    }
    if (path !== METRICS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`layerswarm: metrics are at ${METRICS_PATH}\n`)
      return
    }
    scrape().then(text => {
      res.writeHead(200, { 'content-type': prom.contentType }).end(req.method === 'HEAD' ? undefined : text)
    }, err => {
      log.warn('a scrape failed', { error: (err as Error).message })
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`scrape failed: ${(err as Error).message}\n`)
    })
  }

  const server = createServer(handle)
  // a scraper's keep-alive connection must not hold a stopping node
  server.keepAliveTimeout = 5000
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { server.close(); reject(new AbortError('binding the metrics server was aborted')) }
    init.signal?.addEventListener('abort', onAbort, { once: true })
    server.once('error', (err: NodeJS.ErrnoException) => {
      init.signal?.removeEventListener('abort', onAbort)
      const why = err.code === 'EADDRINUSE' ? 'the port is in use' : err.code === 'EADDRNOTAVAIL' ? 'the address is not on this machine' : err.code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : err.code ?? err.message
      reject(new MetricsAddressError(`--metrics cannot listen on ${formatHostPort(init.host, init.port)}: ${why}; choose another HOST:PORT`, { cause: err }))
    })
    server.listen({ host: init.host, port: init.port }, () => {
      init.signal?.removeEventListener('abort', onAbort)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  const url = `http://${formatHostPort(init.host, port)}${METRICS_PATH}`
  server.on('error', err => { log.warn('metrics server error', { error: err.message }) })
  log.info('metrics served', { url })

  let closing: Promise<void> | undefined
  return {
    url,
    host: init.host,
    port,
    scrape,
    async close () {
      closing ??= new Promise<void>(resolve => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
      await closing
    }
  }
}

// libp2p counts bytes per stream under one label, "<protocol> sent|received"; this family splits it
// into protocol and direction (the connection-wide "global" total stays in libp2p's own family)
function registerProtocolBytes (prom: Registry, libp2p: Registry): void {
  // eslint-disable-next-line no-new
  new Counter({
    name: 'layerswarm_protocol_bytes_total',
    help: 'Bytes of libp2p streams by protocol and direction (sent, received), as libp2p\'s metrics count them',
    labelNames: ['protocol', 'direction'],
    registers: [prom],
    async collect () {
      const m = libp2p.getSingleMetric(LIBP2P_TRANSFER)
      const got = m != null ? await m.get() : undefined
      this.reset()
      for (const v of got?.values ?? []) {
        const key = /^(.*) (sent|received)$/.exec(String(v.labels.protocol ?? ''))
        if (key == null || key[1] === 'global' || !(v.value > 0)) continue
        this.inc({ protocol: key[1], direction: key[2] }, v.value)
      }
    }
  })
}
