// The snapshot source of a running node: the same status `layerswarm status --json` answers (the
// node's status plus `training`, which the training runtime adds through its ControlExtension),
// the run's membership view from the node's container, and a history that this source keeps.
import type { LayerswarmNode } from '../node/create-node.ts'
import type { TrainingRuntime } from '../runtime/training-runtime.ts'
import type { Membership } from '../contracts/membership.ts'
import { Tokens } from '../contracts/tokens.ts'
import { DashboardHistory } from './history.ts'
import { buildDashboardSnapshot, type DashboardSnapshot, type StatusJson } from './snapshot.ts'

type RuntimeLike = Pick<TrainingRuntime, 'status' | 'manifest'>

export interface NodeSnapshotSourceOptions {
  /** The node's training runtime, or a getter for one started later (join, start: after the node listens). */
  readonly runtime?: RuntimeLike | (() => RuntimeLike | undefined)
  /** Samples kept per history series (default 3600). */
  readonly historyCapacity?: number
  readonly now?: () => number
}

/** `snapshot` for startDashboard: builds a DashboardSnapshot of `node` (and its runtime) at each call. */
export function nodeSnapshotSource (node: Pick<LayerswarmNode, 'status' | 'container'>, opts: NodeSnapshotSourceOptions = {}): () => DashboardSnapshot {
  const history = new DashboardHistory(opts.historyCapacity)
  const runtimeOf = typeof opts.runtime === 'function' ? opts.runtime : () => opts.runtime as RuntimeLike | undefined
  const now = opts.now ?? Date.now
  return () => {
    const runtime = runtimeOf()
    // the object GET /status answers: the node's fields and the runtime's ControlExtension's `training`
    const status: StatusJson = { ...node.status(), ...(runtime != null ? { training: runtime.status() } : {}) }
    // the runtime registers its own membership when the node had none: read it at every call
    const membership = node.container.isRegistered(Tokens.Membership, true) ? node.container.resolve<Membership>(Tokens.Membership) : undefined
    const dModel = runtime?.manifest.model.dModel
    return buildDashboardSnapshot({
      status,
      members: membership?.members() ?? null,
      self: membership?.self() ?? null,
      dModel: typeof dModel === 'number' ? dModel : null,
      now: now(),
      history
    })
  }
}
