// createNode: assembles one layerswarm node: identity (data dir), libp2p (TCP + WebSockets + circuit
// relay + WebRTC transports, TLS or noise, yamux, optional pre-shared key, identify, ping, the network's private
// Kademlia DHT, gossipsub, relay server on bootstrap nodes), the plugin host (tsyringe container), the
// bootstrap dialer and the local control endpoint; with `chain`, the chain service (core/chain/chain-node.ts:
// binding, metagraph, bootstrap targets, admission), up right after libp2p. start() brings them up in
// that order, stop() takes them down in reverse; a failed start() leaves nothing running.
import '../polyfills.ts'
import './websocket-global.ts'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { connectionEncrypters } from './encrypters.ts'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper, type KadDHT } from '@libp2p/kad-dht'
import { gossipsub } from '@libp2p/gossipsub'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { autoNATFreshDialBack } from './autonat-dial-back.ts'
import { dcutr } from '@libp2p/dcutr'
import { preSharedKey } from '@libp2p/pnet'
import { webrtcParts, type WebRTCOptions } from './webrtc-transport.ts'
import type { AbortOptions } from '@libp2p/interface'
import { PeerJudge } from '../peer-judge.ts'
import { timingFor } from '../net/peer-timing.ts'
import { createMembership, membershipInit } from '../membership/index.ts'
import { TimedBans } from '../timed-bans.ts'
import { MetricsRegistry } from '../metrics/registry.ts'
import { container as rootContainer } from 'tsyringe'
import type { Logger } from '../contracts/logger.ts'
import { Tokens } from '../contracts/tokens.ts'
import { silentLogger } from '../logger.ts'
import { PluginHost } from './plugin-host.ts'
import { isBuiltinPlugin } from './plugin-registry.ts'
import { backendSpec, resolveBackend } from './backend-choice.ts'
import { PluginNotFoundError } from './plugin-errors.ts'
import { defaultDataDir, ensureDataDir } from './data-dir.ts'
import { loadOrCreateIdentity } from './identity.ts'
import { lockDataDir, type DataDirLock } from './data-dir-lock.ts'
import { loadNetworkProfile, loadSwarmKey, type NetworkProfile } from './network-profile.ts'
import { parseMultiaddrs } from './multiaddrs.ts'
import { BootstrapDialer, selfLookup, type BootstrapDialerInit } from './bootstrap-dialer.ts'
import { startControlServer, type ControlServer } from './control-endpoint.ts'
import { NodeStateError } from './node-errors.ts'
import { summarizeConnections } from './connections.ts'
import { dialableAddrs, NatMonitor, NAT_MONITOR_TOKEN } from './nat-status.ts'
import { GossipStreamKeeper, type GossipInternals } from './gossip-streams.ts'
import { attachWireBudget, WireBudget, type WireBudgetOptions } from '../wire/budget.ts'
import { deadline } from '../timers.ts'
import type { ChainNode, ChainOptions } from '../chain/chain-node.ts'
import type { LayerswarmNode, NodeConfig, NodeServices, NodeStatus } from './node-types.ts'

/** The plugin a training node loads when none are named. */
export const DEFAULT_BACKEND_PLUGIN = 'backend-cpu'
/** How often the DHT looks itself up (refreshing its neighbourhood); kad-dht's default is 5 min. */
export const QUERY_SELF_INTERVAL_MS = 30_000

export interface CreateNodeOptions extends WebRTCOptions {
  /** Identity key, lock and control socket live here. Default ~/.layerswarm. */
  dataDir?: string
  /** Built-in network name ('local', 'testnet'), a profile file path, or a loaded profile. Default 'local'. */
  network?: string | NetworkProfile
  /** Listen multiaddrs; default: the network profile's. */
  listen?: readonly string[]
  /** Addresses to announce instead of the listen addresses (public IP or DNS name behind a port forward). */
  announce?: readonly string[]
  /** Bootstrap multiaddrs, added to the network profile's. */
  bootstrap?: readonly string[]
  /** Serve others only: DHT server, gossip, relay server; no default plugins. */
  bootstrapNode?: boolean
  /** Serve as a circuit relay for peers behind NAT. Default: bootstrapNode. */
  relayServer?: boolean
  /** Reserve a slot on relays (listen on /p2p-circuit) so peers behind NAT are reachable. Default false. */
  relayListen?: boolean
  /** Pre-shared key (swarm.key text or path, relative to cwd); overrides the profile's. */
  psk?: string
  /** Plugin specs (built-in names, paths, packages). Default: ['backend-cpu'] when the registry knows it; none on a bootstrap node. */
  plugins?: readonly string[]
  /** Compute backend: a plugin name ('backend-cpu'), a short name ('cpu'), a path or a package. */
  backend?: string
  /** plugin name -> options. */
  pluginOptions?: Record<string, Record<string, unknown>>
  /** Tune bootstrap redials (tests shorten them). */
  bootstrapRetry?: Omit<BootstrapDialerInit, 'addrs'>
  /** Serve `layerswarm status` on a unix socket in the data dir. Default true. */
  controlEndpoint?: boolean
  /** Seam for the training runtime (stage, run manifest, ...): passed through in NodeConfig.runtime. */
  runtime?: Readonly<Record<string, unknown>>
  logger?: Logger
  /** Join a Bittensor subnet: bootstrap from its metagraph, admit only its registered hotkeys' peers. */
  chain?: ChainOptions
  /** Base for relative paths (psk, network file, plugin paths). Default process.cwd(). */
  cwd?: string
  /** Inbound bytes in flight, streams and rate limits per peer and node-wide (core/wire/budget.ts); default sized from memory. */
  wireBudget?: Partial<WireBudgetOptions>
  /** --metrics: libp2p's metrics module (core/metrics/prometheus-exporter.ts libp2pPrometheus), passed to createLibp2p as `metrics`. */
  libp2pMetrics?: (components: any) => unknown
}

export type { NodeConfig, NodeServices, NodeStatus, LayerswarmNode } from './node-types.ts'

/** Protocol id of a network's DHT; never the public IPFS one. */
export function dhtProtocol (profile: Pick<NetworkProfile, 'protocolPrefix'>): string {
  return `${profile.protocolPrefix}/kad/1.0.0`
}

// the public API (core/index.ts) has always exported it from here
export { backendSpec }

export async function createNode (options: CreateNodeOptions = {}): Promise<LayerswarmNode> {
  const logger = options.logger ?? silentLogger
  const log = logger.forComponent('layerswarm:node')
  const cwd = options.cwd ?? process.cwd()

  const network = typeof options.network === 'object' ? options.network : await loadNetworkProfile(options.network ?? 'local', cwd)
  const listen = [...(options.listen ?? network.listen)]
  const announce = [...(options.announce ?? [])]
  const bootstrap = [...new Set([...network.bootstrap, ...(options.bootstrap ?? [])])]
  parseMultiaddrs(listen, 'the listen addresses')
  parseMultiaddrs(announce, 'the announce addresses')
  const bootstrapAddrs = parseMultiaddrs(bootstrap, 'the bootstrap addresses')
  const psk = options.psk != null ? await loadSwarmKey(options.psk, cwd, 'the pre-shared key option') : network.psk

  const bootstrapNode = options.bootstrapNode === true
  const relayServer = options.relayServer ?? bootstrapNode
  const relayListen = options.relayListen === true
  const defaults = options.plugins == null
  // the backend is loaded and checked before the node is built, and chosen by the name it declares
  const backendChoice = options.backend != null ? await resolveBackend(options.backend, cwd, options.plugins ?? []) : undefined
  const backend = backendChoice?.spec
  let plugins: string[] = defaults
    ? (bootstrapNode ? [] : [backend ?? DEFAULT_BACKEND_PLUGIN].filter(s => s !== DEFAULT_BACKEND_PLUGIN || isBuiltinPlugin(s)))
    : [...options.plugins!]
  if (backend != null && !plugins.includes(backend)) plugins.push(backend)
  plugins = plugins.filter(p => p.trim() !== '')

  const dataDir = await ensureDataDir(options.dataDir ?? defaultDataDir())
  const identity = await loadOrCreateIdentity(dataDir)
  if (identity.created) log.info('created a new identity', { peerId: identity.peerId, file: identity.file })

  const config: NodeConfig = Object.freeze({
    dataDir,
    network: { name: network.name, protocolPrefix: network.protocolPrefix, lan: network.lan, private: psk != null },
    listen,
    announce,
    bootstrap,
    bootstrapNode,
    relayServer,
    relayListen,
    plugins,
    backend,
    runtime: { ...options.runtime }
  })

  // the node's one judge of peers and one metrics registry, shared by every part through the container
  const judge = new PeerJudge()
  const floodBans = new TimedBans()
  const metrics = new MetricsRegistry()
  const services: Record<string, (components: any) => unknown> = {
    identify: identify(),
    // the connection monitor's keep-alive ping and the RTT probes (core/net/rtt-probe.ts) share the
    // ping protocol's stream limit (default 1 out, 2 in): at 400 ms round trips they overlapped, the
    // monitor's ping failed with TooManyOutboundProtocolStreams and libp2p aborted the whole
    // connection, resetting every pipeline stream on it (docs/networks.md, "Across slow links")
    ping: ping({ maxOutboundStreams: 4, maxInboundStreams: 4 }),
    dht: kadDHT({
      protocol: dhtProtocol(network),
      // a node of a private swarm is dialable by its peers, so serve the DHT from the start
      clientMode: false,
      // the default (5 min) leaves a node that missed its peers' first lookups unknown for minutes
      querySelfInterval: QUERY_SELF_INTERVAL_MS,
      // the default mapper drops private and loopback addresses: right on the internet, fatal on a LAN
      peerInfoMapper: network.lan ? passthroughMapper : removePrivateAddressesMapper
    }),
    // a lone node (first of a swarm, or its peers all gone) publishes heartbeats without failing;
    // peers this node's judge penalized score lower (core/peer-judge.ts)
    // gossipsub's IP colocation penalty (many peers on one IP) protects an internet swarm from Sybils on
    // one host, but on a LAN or loopback every honest peer shares the address and is penalised with them
    pubsub: gossipsub({
      allowPublishToZeroTopicPeers: true,
      scoreParams: { appSpecificScore: peer => judge.score(peer), ...(network.lan ? { IPColocationFactorWeight: 0 } : {}) }
    })
  }
  // AutoNAT: peers dial our public addresses back (a fresh connection: autonat-dial-back.ts). DCUtR
  // (TCP) cannot go direct in js-libp2p 3; WebRTC punches UDP holes instead (docs/networks.md, NAT).
  services.autoNAT = autoNATFreshDialBack({ protocolPrefix: network.protocolPrefix.replace(/^\//, '') })
  services.dcutr = dcutr()
  // relays carry training where no direct path exists: no circuit v2 limits (2 min, 128 KiB cut tensors)
  if (relayServer) services.relay = circuitRelayServer({ reservations: { maxReservations: 128, applyDefaultLimit: false } })
  const webrtc = await webrtcParts(options, network, logger, services)

  const libp2p = await createLibp2p({
    start: false,
    privateKey: identity.privateKey,
    addresses: {
      listen: relayListen ? [...listen, '/p2p-circuit'] : listen,
      announce
    },
    transports: [tcp(), webSockets(), circuitRelayTransport(), ...webrtc.transports],
    connectionEncrypters: connectionEncrypters(), // TLS first, then noise (encrypters.ts)
    connectionManager: webrtc.connectionManager,
    streamMuxers: [yamux()],
    connectionProtector: psk != null ? preSharedKey({ psk }) : undefined,
    // libp2p aborts a connection whose keep-alive ping takes over ~5 s. A volunteer machine busy with
    // training (or encrypting a large transfer) can be that slow to answer, and the abort killed
    // all-reduce and pipeline transfers mid-stream; dead peers are still found by the transfers' own
    // timeouts and TCP errors.
    connectionMonitor: { pingTimeout: { minTimeout: 30_000, maxTimeout: 120_000 } },
    // a peer cut off for flooding the membership topic stays off for a while (core/timed-bans.ts, membership-service.ts)
    connectionGater: { denyInboundEncryptedConnection: p => floodBans.isBanned(p.toString()), denyOutboundEncryptedConnection: p => floodBans.isBanned(p.toString()) },
    services, metrics: options.libp2pMetrics as never // --metrics only: libp2p's metrics module
  }) as unknown as Libp2p<NodeServices>

  const container = rootContainer.createChildContainer()
  container.register(Tokens.Logger, { useValue: logger })
  container.register(Tokens.NodeConfig, { useValue: config })
  container.register(Tokens.Libp2p, { useValue: libp2p })
  container.register(Tokens.PeerJudge, { useValue: judge })
  container.register(Tokens.Metrics, { useValue: metrics })
  // the deadlines of every exchange with a peer follow its measured link (docs/networks.md)
  container.register(Tokens.PeerTiming, { useValue: timingFor(libp2p) })
  // what any peer may make this node hold, enforced by every framed protocol on this libp2p
  const wireBudget = new WireBudget(options.wireBudget)
  attachWireBudget(libp2p, wireBudget)
  container.register(Tokens.WireBudget, { useValue: wireBudget })
  const nat = new NatMonitor(libp2p as unknown as Libp2p, { relayListen, log: logger.forComponent('layerswarm:nat') })
  const gossipStreams = new GossipStreamKeeper(libp2p as unknown as Libp2p, libp2p.services.pubsub as unknown as GossipInternals, logger.forComponent('layerswarm:gossip'))
  container.register(NAT_MONITOR_TOKEN, { useValue: nat })
  // a training node (its runtime names a run) has the run's one membership view, for the runtime and
  // the plugins (the scheduler) alike; it starts with libp2p, before the plugins
  const mInit = bootstrapNode ? undefined : membershipInit(config.runtime, logger)
  const membership = mInit != null
    ? createMembership(libp2p as never, { ...mInit, admission: judge, floodBans, onFlood: peer => { judge.record({ peer, verdict: 'reject', area: 'gossip', code: 'ERR_MEMBER_HB_FLOOD' }) } })
    : undefined
  if (membership != null) container.register(Tokens.Membership, { useValue: membership })
  const choices: Record<string, string> = {}
  if (backendChoice != null) choices[Tokens.ComputeBackend] = backendChoice.name
  const choiceHints = {
    [Tokens.ComputeBackend]: (providers: ReadonlyArray<{ name: string, spec?: string }>) =>
      `choose one with --backend (or LAYERSWARM_BACKEND, or "backend" in the config file): ${providers.map(p => `--backend ${p.spec ?? p.name}`).join(' or ')}`
  }
  const host = new PluginHost({ container, logger, choices, choiceHints, pluginOptions: options.pluginOptions, cwd })
  try {
    if (defaults) {
      // a default plugin missing from this installation is not the user's error: run without it
      for (const spec of plugins) {
        try {
          await host.load([spec])
        } catch (err) {
          if (!(err instanceof PluginNotFoundError)) throw err
          log.warn('default plugin is not available; running without it', { plugin: spec, error: err.message })
        }
      }
    } else {
      await host.load(plugins)
    }
  } catch (err) {
    await stopQuietly(libp2p)
    throw err
  }

  const bootstrapDialer = new BootstrapDialer(libp2p as unknown as Libp2p, logger, {
    ...options.bootstrapRetry,
    addrs: bootstrapAddrs,
    // on every (re)connect, look ourselves up at once: the lookup connects us to our DHT neighbours
    // and tells them about us (the DHT's own first self-lookup may have run while we were cut off)
    onConnected: (addr, peer) => { chain?.onConnected(addr, peer); void selfLookup(libp2p.services.dht as KadDHT, libp2p.peerId, log) }
  })
  // loaded only with --chain: it pulls in @polkadot's crypto
  const chain: ChainNode | undefined = options.chain == null ? undefined : new (await import('../chain/chain-node.ts')).ChainNode({
    ...options.chain, libp2p, privateKey: identity.privateKey, judge, log: logger, setTargets: addrs => { bootstrapDialer.setAddrs([...bootstrapAddrs, ...addrs]) }
  })
  if (chain != null) { container.register(Tokens.Chain, { useValue: chain }); container.register(Tokens.Admission, { useValue: chain.admission }) }
  let state: 'idle' | 'starting' | 'started' | 'stopping' | 'stopped' = 'idle'
  let lock: DataDirLock | undefined
  let control: ControlServer | undefined
  let startedAt = 0
  let startPromise: Promise<void> | undefined
  const startAbort = new AbortController()
  let stopPromise: Promise<void> | undefined

  const addresses = (): string[] => dialableAddrs(libp2p as unknown as Libp2p)
  const status = (): NodeStatus => {
    const dht = libp2p.services.dht as KadDHT & { routingTable?: { size: number } }
    return {
      peerId: identity.peerId,
      network: network.name,
      protocolPrefix: network.protocolPrefix,
      bootstrapNode,
      started: state === 'started',
      addresses: addresses(),
      peers: libp2p.getPeers().map(p => p.toString()),
      plugins: host.names(),
      topics: state === 'started' ? libp2p.services.pubsub.getTopics() : [],
      dht: { mode: dht.getMode(), protocol: dhtProtocol(network), routingTableSize: dht.routingTable?.size ?? 0 },
      bootstrap: bootstrapDialer.status(),
      dataDir,
      pid: process.pid,
      uptimeS: startedAt > 0 ? Math.round((Date.now() - startedAt) / 1000) : 0,
      ...(chain != null ? { chain: chain.status() } : {}),
      nat: nat.status(),
      connections: summarizeConnections(libp2p.getConnections())
    }
  }

  // Takes down whatever is up, last first; used by stop() and by a failed start().
  const teardown = async (): Promise<void> => {
    await bootstrapDialer.stop()
    await control?.close().catch(err => { log.warn('closing the control endpoint failed', { error: String(err) }) })
    control = undefined
    await host.stop().catch(err => { log.warn('stopping plugins failed', { error: (err as Error).message }) })
    membership?.stop()
    nat.stop()
    gossipStreams.stop()
    await chain?.stop().catch(err => { log.warn('stopping the chain service failed', { error: (err as Error).message }) })
    await stopQuietly(libp2p, err => { log.warn('stopping libp2p failed', { error: String(err) }) })
    await lock?.release()
    lock = undefined
  }

  const node: LayerswarmNode = {
    peerId: identity.peerId,
    libp2p,
    plugins: host,
    container,
    config,
    network,
    privateKey: identity.privateKey,
    addresses,
    status,
    rebootstrap () {
      if (state !== 'started') return
      log.info('re-bootstrapping', { bootstrap: bootstrapDialer.status().map(b => `${b.addr} ${b.connected ? 'connected' : 'disconnected'}`).join(', ') || 'no bootstrap peers' })
      bootstrapDialer.redialNow()
      void selfLookup(libp2p.services.dht as KadDHT, libp2p.peerId, log)
    },
    isStarted: () => state === 'started',
    async start (opts: AbortOptions = {}) {
      if (state !== 'idle') throw new NodeStateError(`start() is allowed once, on a new node (this node is ${state})`)
      state = 'starting'
      startPromise = bringUp(opts)
      await startPromise
    },
    async stop () {
      if (stopPromise != null) return await stopPromise
      stopPromise = (async () => {
        startAbort.abort()
        await startPromise?.catch(() => {}) // a stop during start cuts it short, then undoes it
        if (state === 'stopped') return
        if (state === 'idle') { state = 'stopped'; await stopQuietly(libp2p); return }
        state = 'stopping'
        log.info('node stopping', { peerId: identity.peerId })
        await teardown()
        state = 'stopped'
        log.info('node stopped', { peerId: identity.peerId })
      })()
      return await stopPromise
    }
  }

  async function bringUp (opts: AbortOptions): Promise<void> {
    const guard = deadline(undefined, startAbort.signal, opts.signal)
    const signal = guard.signal
    try {
      signal.throwIfAborted()
      lock = await lockDataDir(dataDir)
      await libp2p.start()
      nat.start()
      gossipStreams.start()
      await chain?.start(signal)
      membership?.start()
      signal.throwIfAborted()
      await host.start()
      signal.throwIfAborted()
      if (options.controlEndpoint !== false) control = await startControlServer(dataDir, status, logger)
      bootstrapDialer.start()
      startedAt = Date.now()
      state = 'started'
      log.info('node started', {
        peerId: identity.peerId, network: network.name, bootstrapNode, plugins: host.names(), addrs: addresses()
      })
    } catch (err) {
      state = 'stopping'
      await teardown()
      state = 'stopped'
      throw err
    } finally {
      guard.clear()
    }
  }
  return node
}

async function stopQuietly (libp2p: { stop: () => void | Promise<void> }, onError: (err: unknown) => void = () => {}): Promise<void> {
  try {
    await libp2p.stop()
  } catch (err) {
    onError(err)
  }
}
