// Roles: what a node does in a run, over the one libp2p host and the one membership view. The
// built-in roles are the stage server (serves a stage's microbatches), the data role (starts
// microbatches from the deterministic sampler; it drives stage 0's compute) and the validator
// (re-checks other peers' work). A node may hold several (`layerswarm start --role stage,data`).
// Types only: implementations live in the runtime (core/pipeline, core/verify).

/** Names of the built-in roles. */
export type RoleName = 'stage' | 'data' | 'validator'

export interface Role {
  readonly name: string
  start(): Promise<void>
  stop(): Promise<void>
  /** What the role reports under `roles.<name>` in `status --json`. */
  status(): Readonly<Record<string, unknown>>
}

/**
 * What Tokens.Runtime resolves to once the node trains: the running roles (they change when the
 * node moves between stages) and the swarm as this node sees it. Plugins resolve it when they need
 * it, not at register time (the runtime starts after the plugins).
 */
export interface RuntimeAccess {
  /** The roles running now. */
  roles(): readonly Role[]
  /** The running role of that name, if any. */
  role(name: string): Role | undefined
  /** Calls `listener` whenever the set of running roles changes; returns the unsubscribe function. */
  onRolesChanged(listener: () => void): () => void
}
