// A running node's dashboard in one call (start --dashboard, demo's data node, join): the server fed
// by nodeSnapshotSource, and `dashboard: { url }` added to the node's `status` (so `status --json`,
// and the demo that polls it, can say where the page is).
import type { Logger } from '../contracts/logger.ts'
import type { LayerswarmNode } from '../node/create-node.ts'
import { registerControlExtension } from '../node/control-endpoint.ts'
import type { TrainingRuntime } from '../runtime/training-runtime.ts'
import type { DashboardAddress } from './address.ts'
import { startDashboard, type Dashboard } from './server.ts'
import { nodeSnapshotSource } from './source.ts'

export interface NodeDashboardOptions {
  readonly log?: Logger
  readonly signal?: AbortSignal
  /** Tick period (default 1000 ms). */
  readonly intervalMs?: number
}

export async function openNodeDashboard (node: LayerswarmNode, runtime: TrainingRuntime | undefined, at: DashboardAddress, opts: NodeDashboardOptions = {}): Promise<Dashboard> {
  const d = await startDashboard({
    host: at.host,
    port: at.port,
    snapshot: nodeSnapshotSource(node, { runtime }),
    ...(opts.log != null ? { log: opts.log } : {}),
    ...(opts.signal != null ? { signal: opts.signal } : {}),
    ...(opts.intervalMs != null ? { intervalMs: opts.intervalMs } : {})
  })
  const unregister = registerControlExtension(node.config.dataDir, { status: () => ({ dashboard: { url: d.url } }) })
  return {
    ...d,
    close: async () => {
      unregister()
      await d.close()
    }
  }
}
