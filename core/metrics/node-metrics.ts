// The Prometheus endpoint of one CLI node (`start --metrics`): bound before the node is created, so
// a bad or busy address fails the start at once (exit 2) and libp2p's metrics module can be handed
// to createNode; it reads the node and its training runtime from the moment they run.
import type { Logger, LogLevel } from '../contracts/logger.ts'
import { createLogger, type LogFormat } from '../logger.ts'
import { Tokens } from '../contracts/tokens.ts'
import type { LayerswarmNode } from '../node/create-node.ts'
import type { TrainingRuntime } from '../runtime/training-runtime.ts'
import type { MetricsAddress } from './metrics-address.ts'
import { libp2pPrometheus, startMetricsServer, type ScrapeStatus } from './prometheus-exporter.ts'
import type { MetricsRegistry } from './registry.ts'

export interface NodeMetrics {
  /** http://HOST:PORT/metrics */
  readonly url: string
  /** createNode's `libp2pMetrics`: libp2p's own metrics go to this endpoint. */
  readonly libp2pMetrics: (components: any) => unknown
  /** The running node and its runtime (none on a node that does not train): scrapes read them from now on. */
  attach(node: LayerswarmNode, runtime?: TrainingRuntime): void
  close(): Promise<void>
}

export interface NodeMetricsOptions {
  /** Default: a logger of logLevel and logFormat on stderr (the node's own settings). */
  readonly log?: Logger
  readonly logLevel?: LogLevel
  readonly logFormat?: LogFormat
  readonly signal?: AbortSignal
}

export async function openNodeMetrics (at: MetricsAddress, opts: NodeMetricsOptions = {}): Promise<NodeMetrics> {
  const libp2p = libp2pPrometheus()
  let node: LayerswarmNode | undefined
  let runtime: TrainingRuntime | undefined
  const server = await startMetricsServer({
    ...at,
    libp2p,
    log: opts.log ?? createLogger({ level: opts.logLevel, format: opts.logFormat }),
    signal: opts.signal,
    registry: () => node?.container.isRegistered(Tokens.Metrics, true) === true ? node.container.resolve<MetricsRegistry>(Tokens.Metrics) : undefined,
    status: () => nodeScrapeStatus(node, runtime)
  })
  return {
    url: server.url,
    libp2pMetrics: libp2p.metrics,
    attach (n, r) { node = n; runtime = r },
    close: async () => { await server.close() }
  }
}

/** What a scrape reads from a node and its training runtime. */
export function nodeScrapeStatus (node: LayerswarmNode | undefined, runtime: TrainingRuntime | undefined): ScrapeStatus {
  const worker = runtime?.pipeline?.worker
  return {
    ...(node != null ? { node: node.status() } : {}),
    ...(runtime != null ? { training: runtime.status() } : {}),
    ...(worker != null ? { compute: { source: worker, busyMs: worker.busyMs } } : {})
  }
}
