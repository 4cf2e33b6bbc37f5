// The types of a layerswarm node (createNode in create-node.ts builds one): its resolved configuration,
// its libp2p services, its status (`layerswarm status --json`) and the node object itself.
import type { Libp2p } from 'libp2p'
import type { Identify } from '@libp2p/identify'
import type { Ping } from '@libp2p/ping'
import type { KadDHT } from '@libp2p/kad-dht'
import type { GossipSub } from '@libp2p/gossipsub'
import type { AbortOptions, PrivateKey, ServiceMap } from '@libp2p/interface'
import type { DependencyContainer } from 'tsyringe'
import type { PluginHost } from './plugin-host.ts'
import type { NetworkProfile } from './network-profile.ts'
import type { BootstrapPeerState } from './bootstrap-dialer.ts'
import type { ConnectionSummary } from './connections.ts'
import type { NatStatus } from './nat-status.ts'
import type { ChainStatus } from '../chain/chain-node.ts'

/** The resolved configuration, bound as Tokens.NodeConfig for plugins. */
export interface NodeConfig {
  readonly dataDir: string
  readonly network: { readonly name: string, readonly protocolPrefix: string, readonly lan: boolean, readonly private: boolean }
  readonly listen: readonly string[]
  readonly announce: readonly string[]
  readonly bootstrap: readonly string[]
  readonly bootstrapNode: boolean
  readonly relayServer: boolean
  readonly relayListen: boolean
  readonly plugins: readonly string[]
  readonly backend?: string
  readonly runtime: Readonly<Record<string, unknown>>
}

export interface NodeServices extends ServiceMap {
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
}

export interface NodeStatus {
  peerId: string
  network: string
  protocolPrefix: string
  bootstrapNode: boolean
  started: boolean
  addresses: string[]
  peers: string[]
  plugins: string[]
  topics: string[]
  dht: { mode: 'client' | 'server', protocol: string, routingTableSize: number }
  bootstrap: BootstrapPeerState[]
  dataDir: string
  pid: number
  uptimeS: number
  chain?: ChainStatus
  /** Reachability (AutoNAT, observed addresses) and relay listening (core/node/nat-status.ts). */
  nat: NatStatus
  /** Direct vs relayed connections, one entry per connected peer (core/node/connections.ts). */
  connections: ConnectionSummary
}

export interface LayerswarmNode {
  readonly peerId: string
  readonly libp2p: Libp2p<NodeServices>
  readonly plugins: PluginHost
  readonly container: DependencyContainer
  readonly config: NodeConfig
  readonly network: NetworkProfile
  /** The node's identity key (its peer id's): signs the node's work (hop commitments). Never sent anywhere. */
  readonly privateKey: PrivateKey
  /** Multiaddr strings (with /p2p/<peerId>) others can dial; empty until started. */
  addresses(): string[]
  status(): NodeStatus
  /**
   * Redials every bootstrap peer it is not connected to now (skipping the back-off) and runs a DHT
   * self-lookup: what a node cut off from its run does (core/pipeline/rendezvous.ts). No-op unless started.
   */
  rebootstrap(): void
  isStarted(): boolean
  start(options?: AbortOptions): Promise<void>
  /** Idempotent. Order: bootstrap dialer, control endpoint, plugins (reverse), libp2p, lock. */
  stop(): Promise<void>
}
