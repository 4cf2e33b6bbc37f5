// WebRTC between nodes behind NAT (private-to-private, @libp2p/webrtc). Two homes that meet through a
// circuit relay exchange SDP offers and ICE candidates over the relayed connection, then ICE punches a
// UDP hole between their routers (their public address:port comes from a STUN server,
// core/node/stun-servers.ts) and a direct connection of SCTP data channels replaces the relay for
// new streams. libp2p counts such a connection as direct and opens new streams on a direct connection
// first, so pipeline and averaging traffic moves to it without any change of theirs. Where the NAT maps
// each destination to another port (symmetric NAT) ICE fails and the relayed connection stays.
// Nodes do NOT advertise /webrtc addresses: libp2p's dialer would then dial one from both ends at once
// whenever two homes look each other up, and in the NAT test bed such crossed attempts each took ~6 s
// (ICE under load), ran into libp2p's 6 s per-address dial timeout, and left each side holding the
// other's half-made connection, on which no data channel ever opened (all streams to the peer then
// hung). The upgrader below makes one attempt per pair instead, from the smaller peer id, with a
// timeout of its own.
import type { Connection, PeerId, Transport } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '../contracts/logger.ts'
import { DEFAULT_STUN_SERVERS, parseStunServers } from './stun-servers.ts'

type TransportFactory = (components: any) => Transport
export interface WebRTCModule { webRTC: (init: { rtcConfiguration?: { iceServers: Array<{ urls: string[] }> } }) => TransportFactory }

/**
 * The WebRTC transport with these STUN servers, or undefined where @libp2p/webrtc or its native
 * node-datachannel binary cannot load (another platform, a broken install): the node then runs
 * without it, and peers behind NAT stay on the relay. Loaded on demand: the import takes ~0.6 s.
 */
export async function loadWebRTCTransport (stun: readonly string[], log: Logger,
  importer: () => Promise<WebRTCModule> = async () => await import('@libp2p/webrtc') as unknown as WebRTCModule): Promise<TransportFactory | undefined> {
  try {
    const mod = await importer()
    // always explicit: libp2p's default list would send STUN requests to four public servers
    return mod.webRTC({ rtcConfiguration: { iceServers: stun.map(url => ({ urls: [url] })) } })
  } catch (err) {
    log.warn('WebRTC transport cannot load; running without it (peers behind NAT stay relayed)', { error: (err as Error).message })
    return undefined
  }
}

export interface WebRTCUpgraderInit {
  log: Logger
  /** Give up one attempt after this long (ICE through a NAT that will not open). Default 30 s. */
  attemptTimeoutMs?: number
  /** After a failed attempt, wait this long before trying the same peer again. Default 1 min. */
  retryAfterMs?: number
  /** Look over all relayed-only peers this often (catches peers identified late). Default 30 s. */
  sweepMs?: number
}

/** The protocol over which @libp2p/webrtc exchanges SDP and ICE candidates: a peer that handles it can answer. */
export const WEBRTC_SIGNALING = '/webrtc-signaling/0.0.1'

/** What the upgrader uses of libp2p's components (it runs as a libp2p service: starts and stops with it). */
export interface UpgraderComponents {
  peerId: PeerId
  events: EventTarget
  connectionManager: { getConnections: (peer?: PeerId) => Connection[] }
  /** Dials the transport straight (libp2p's dial queue would cut ICE off at its 6 s per-address timeout). */
  transportManager: { dial: (ma: Multiaddr, o: { signal: AbortSignal }) => Promise<Connection> }
  peerStore: { get: (peer: PeerId) => Promise<{ protocols: string[] }> }
}

/** `<relay>/p2p-circuit/p2p/<peer>` -> `<relay>/p2p-circuit/webrtc/p2p/<peer>`. */
export function webrtcAddrOf (relayed: Multiaddr, peer: string): Multiaddr {
  const parts = relayed.getComponents()
  const last = parts.at(-1)
  const base = last?.name === 'p2p' && last.value === peer ? relayed.decapsulateCode(last.code) : relayed
  return base.encapsulate(`/webrtc/p2p/${peer}`)
}

/**
 * Upgrades relayed-only connections to WebRTC, once per pair: when a peer that can answer WebRTC
 * signalling is reached only through a relay, the node with the smaller peer id dials it over the
 * relayed connection; a failed attempt waits retryAfterMs before the next.
 */
export class WebRTCUpgrader {
  private readonly inFlight = new Map<string, AbortController>()
  private readonly failedAt = new Map<string, number>()
  private timer: ReturnType<typeof setInterval> | undefined
  private running = false
  private readonly onEvent = (evt: Event): void => {
    const d = (evt as CustomEvent<Connection | { peerId: PeerId }>).detail
    void this.consider('peerId' in d ? d.peerId : d.remotePeer)
  }

  constructor (private readonly c: UpgraderComponents, private readonly init: WebRTCUpgraderInit) {}

  start (): void {
    if (this.running) return
    this.running = true
    this.c.events.addEventListener('connection:open', this.onEvent)
    this.c.events.addEventListener('peer:identify', this.onEvent)
    this.timer = setInterval(() => { for (const conn of this.c.connectionManager.getConnections()) void this.consider(conn.remotePeer) }, this.init.sweepMs ?? 30_000)
    this.timer.unref()
  }

  stop (): void {
    this.running = false
    this.c.events.removeEventListener('connection:open', this.onEvent)
    this.c.events.removeEventListener('peer:identify', this.onEvent)
    clearInterval(this.timer)
    for (const ac of this.inFlight.values()) ac.abort()
    this.inFlight.clear()
  }

  private async consider (peer: PeerId): Promise<void> {
    const key = peer.toString()
    // the larger id only answers: two crossed attempts both fail (see the top of this file)
    if (!this.running || this.inFlight.has(key) || this.c.peerId.toString() > key) return
    if (Date.now() - (this.failedAt.get(key) ?? -Infinity) < (this.init.retryAfterMs ?? 60_000)) return
    const conns = this.c.connectionManager.getConnections(peer).filter(conn => conn.status === 'open')
    const relayed = conns.find(conn => !conn.direct)
    if (relayed == null || conns.some(conn => conn.direct)) return
    const ac = new AbortController()
    this.inFlight.set(key, ac)
    const timer = setTimeout(() => { ac.abort() }, this.init.attemptTimeoutMs ?? 30_000)
    try {
      const known = await this.c.peerStore.get(peer).catch(() => undefined)
      if (known?.protocols.includes(WEBRTC_SIGNALING) !== true) return
      const conn = await this.c.transportManager.dial(webrtcAddrOf(relayed.remoteAddr, key), { signal: ac.signal })
      this.init.log.info('upgraded a relayed connection to a direct WebRTC one (UDP hole punched)', { peer: key, addr: conn.remoteAddr.toString() })
    } catch (err) {
      this.failedAt.set(key, Date.now())
      if (this.running) this.init.log.info('WebRTC upgrade failed; staying on the relay', { peer: key, error: (err as Error).message })
    } finally {
      clearTimeout(timer)
      this.inFlight.delete(key)
    }
  }
}

/** createNode's WebRTC options. */
export interface WebRTCOptions {
  /** WebRTC hole punching between peers behind NAT; default on, except on LAN networks and bootstrap nodes (public relays). */
  webrtc?: boolean
  /** STUN servers (stun:HOST[:PORT]) ICE asks; default the network profile's, else DEFAULT_STUN_SERVERS. */
  stun?: readonly string[]
}

/** What createNode adds to libp2p for WebRTC. */
export interface WebRTCParts {
  transports: TransportFactory[]
  /**
   * The answering side of a WebRTC dial must finish ICE within libp2p's inbound upgrade timeout
   * (10 s by default): ICE through two NATs on a loaded machine took 6 s to over 10 s in the NAT test.
   */
  connectionManager?: { inboundUpgradeTimeout: number }
}

/** How long the answering side gives ICE (libp2p's inbound upgrade timeout, for every transport). */
export const WEBRTC_ANSWER_TIMEOUT_MS = 30_000

/**
 * The WebRTC pieces of a node (none when disabled or when the transport cannot load); adds the
 * upgrader to `services`.
 */
export async function webrtcParts (options: WebRTCOptions & { bootstrapNode?: boolean }, network: { lan: boolean, stun?: readonly string[] },
  logger: Logger, services: Record<string, (components: any) => unknown>, importer?: () => Promise<WebRTCModule>): Promise<WebRTCParts> {
  const log = logger.forComponent('layerswarm:webrtc')
  const stun = parseStunServers(options.stun ?? network.stun ?? DEFAULT_STUN_SERVERS, 'the STUN servers')
  const transport = (options.webrtc ?? (!network.lan && options.bootstrapNode !== true)) ? await loadWebRTCTransport(stun, log, importer) : undefined
  if (transport == null) return { transports: [] }
  services.webrtcUpgrade = (c: UpgraderComponents) => new WebRTCUpgrader(c, { log })
  return { transports: [transport], connectionManager: { inboundUpgradeTimeout: WEBRTC_ANSWER_TIMEOUT_MS } }
}
