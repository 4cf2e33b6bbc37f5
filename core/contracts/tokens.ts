// Container tokens shared by core and plugins. Single tokens have exactly one provider per node
// (a choice picks one when several plugins offer it); multi tokens collect every provider.
export const Tokens = {
  /** `Logger` for the node (core). */
  Logger: 'layerswarm:Logger',
  /** The resolved `NodeConfig`-like plain object (core). */
  NodeConfig: 'layerswarm:NodeConfig',
  /** The libp2p instance (core, bound once the node is built). */
  Libp2p: 'layerswarm:Libp2p',
  /** `ComputeBackend` (single; choose with --backend). */
  ComputeBackend: 'layerswarm:ComputeBackend',
  /** `Codec` (multi: every codec plugin adds its codecs). */
  Codec: 'layerswarm:Codec',
  /** `Scheduler` (single). */
  Scheduler: 'layerswarm:Scheduler'
} as const

/** Tokens for which several providers are collected rather than chosen between. */
export const MultiTokens: ReadonlySet<string> = new Set([Tokens.Codec])
