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
  Scheduler: 'layerswarm:Scheduler',
  /** `Membership` (core, bound for a training node before plugins start): the run's one view of the swarm. */
  Membership: 'layerswarm:Membership',
  /** `RuntimeAccess` (core, bound once the node trains): the running roles. */
  Runtime: 'layerswarm:Runtime',
  /** `PeerJudge` (core): the node's one place where verdicts on peers become penalties and bans. */
  PeerJudge: 'layerswarm:PeerJudge',
  /** `PeerTiming` (core/net/peer-timing.ts): the node's per-peer round trips, throughputs and deadline rule. */
  PeerTiming: 'layerswarm:PeerTiming',
  /** `MetricsRegistry` (core): the node's counters and gauges. */
  Metrics: 'layerswarm:Metrics',
  /** `WireBudget` (core/wire/budget.ts): inbound bytes in flight, streams and rate limits, per peer and node-wide. */
  WireBudget: 'layerswarm:WireBudget',
  /** `ChainNode` (core/chain/chain-node.ts; bound when the node runs with --chain): metagraph, binding, admission. */
  Chain: 'layerswarm:Chain',
  /** `PeerAdmission` (core, bound with --chain): who may take part (contracts/admission.ts). */
  Admission: 'layerswarm:Admission'
} as const

/** Tokens for which several providers are collected rather than chosen between. */
export const MultiTokens: ReadonlySet<string> = new Set([Tokens.Codec])
