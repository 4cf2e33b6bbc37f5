// Is this node reachable from the internet, or only through a relay? A volunteer behind a home
// router should not have to know: the node works it out and, when it is behind NAT, takes a relay
// reservation itself (listens on /p2p-circuit), as `--relay` does by hand.
//
// Two signals, because libp2p's AutoNAT (v1) alone says nothing about a node behind NAT over TCP:
// it tests only public addresses, and identify drops observed TCP addresses (js-libp2p #2620: a TCP
// dial leaves from an ephemeral port, not the listen port), so a NATed node has no public address
// for AutoNAT to reject.
// - public: AutoNAT confirmed one of our public addresses (a peer dialed it back), or the user
//   announced one (--announce: a port forward);
// - private: a peer we dialed ourselves saw our connection come from an IP that none of our
//   interfaces has: an address translation (NAT) sits between us. Only peers we dialed count (our
//   bootstrap peers, at first), so a stranger cannot talk a public node into relaying;
// - unknown: neither yet (loopback and LAN swarms stay here, and nothing changes for them).
import { networkInterfaces } from 'node:os'
import { multiaddr } from '@multiformats/multiaddr'
import { isPrivate } from '@libp2p/utils'
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { isRelayedAddr } from './connections.ts'

export type Reachability = 'public' | 'private' | 'unknown'

/** Where createNode binds its NatMonitor in the plugin container (the scheduler reads relayedOnly()). */
export const NAT_MONITOR_TOKEN = 'layerswarm:NatMonitor'

export interface NatStatus {
  readonly reachability: Reachability
  /** Our public addresses confirmed by AutoNAT (or announced). */
  readonly publicAddrs: string[]
  /** IPs peers we dialed saw us come from that no interface of ours has (the NAT's public side). */
  readonly translatedIps: string[]
  /** True once this node listens through relays (asked for with --relay, or because it is private). */
  readonly relayListen: boolean
  /** Why it listens through relays: 'asked' (--relay), 'private' (found behind NAT), or none. */
  readonly relayReason?: 'asked' | 'private'
  /** Our /p2p-circuit addresses (relay reservations held). */
  readonly relayAddrs: string[]
}

/** The rule, pure: a confirmed public address wins; a translated source IP means NAT; else unknown. */
export function reachabilityOf (publicAddrs: readonly string[], translatedIps: readonly string[]): Reachability {
  if (publicAddrs.length > 0) return 'public'
  if (translatedIps.length > 0) return 'private'
  return 'unknown'
}

/** The IP of a multiaddr string (/ip4/x or /ip6/x), or undefined. */
export function ipOf (addr: string): string | undefined {
  const m = /^\/ip[46]\/([^/]+)/.exec(addr)
  return m?.[1]
}

/** Every IP address of this host's (this namespace's) interfaces. */
export function localIps (): Set<string> {
  const ips = new Set<string>()
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) ips.add(i.address)
  return ips
}

interface AddressManagerLike {
  getAddressesWithMetadata(): Array<{ multiaddr: { toString: () => string }, verified: boolean, type: string }>
}
interface TransportManagerLike {
  listen(addrs: unknown[]): Promise<void>
}
interface IdentifyEventDetail {
  observedAddr?: { toString: () => string }
  connection?: { direction?: string, remoteAddr: { toString: () => string } }
}

export interface NatMonitorInit {
  /** Already listening on /p2p-circuit (--relay). */
  readonly relayListen: boolean
  /** Take a relay reservation when found private. Default true. */
  readonly autoRelay?: boolean
  readonly log: Logger
  /** Seam for tests: this host's IPs. */
  readonly localIps?: () => Set<string>
}

/** Follows what peers observe of us and what AutoNAT confirmed; listens through a relay once private. */
export class NatMonitor {
  private readonly translated = new Set<string>()
  private relayReason: 'asked' | 'private' | undefined
  private readonly onIdentify = (evt: Event): void => { this.observe((evt as CustomEvent<IdentifyEventDetail>).detail) }
  private readonly ownIps: () => Set<string>

  constructor (private readonly libp2p: Libp2p, private readonly init: NatMonitorInit) {
    this.relayReason = init.relayListen ? 'asked' : undefined
    this.ownIps = init.localIps ?? localIps
  }

  start (): void {
    this.libp2p.addEventListener('peer:identify', this.onIdentify)
  }

  stop (): void {
    this.libp2p.removeEventListener('peer:identify', this.onIdentify)
  }

  /** True when this node is reachable only through relays (the scheduler discounts its capacity). */
  relayedOnly (): boolean {
    return this.reachability() === 'private'
  }

  reachability (): Reachability {
    return reachabilityOf(this.publicAddrs(), [...this.translated])
  }

  status (): NatStatus {
    const publicAddrs = this.publicAddrs()
    return {
      reachability: reachabilityOf(publicAddrs, [...this.translated]),
      publicAddrs,
      translatedIps: [...this.translated],
      relayListen: this.relayReason != null,
      ...(this.relayReason != null ? { relayReason: this.relayReason } : {}),
      relayAddrs: dialableAddrs(this.libp2p).filter(isRelayedAddr)
    }
  }

  /** An identify answer: where the remote peer saw our connection come from. */
  observe (detail: IdentifyEventDetail | undefined): void {
    const observed = detail?.observedAddr?.toString()
    const conn = detail?.connection
    if (observed == null || conn == null || conn.direction !== 'outbound' || isRelayedAddr(conn.remoteAddr.toString())) return
    const ip = ipOf(observed)
    if (ip == null || isPrivate(multiaddr(observed)) === true || this.ownIps().has(ip) || this.translated.has(ip)) return
    this.translated.add(ip)
    this.init.log.info('behind NAT: a peer sees our connections come from another address', { observed: ip, reachability: this.reachability() })
    if (this.init.autoRelay !== false && this.relayReason == null && this.relayedOnly()) void this.listenViaRelay()
  }

  private async listenViaRelay (): Promise<void> {
    this.relayReason = 'private'
    try {
      const tm = (this.libp2p as unknown as { components: { transportManager: TransportManagerLike } }).components.transportManager
      await tm.listen([multiaddr('/p2p-circuit')])
      this.init.log.info('listening through a relay (this node is not reachable directly)', {})
    } catch (err) {
      this.relayReason = undefined
      this.init.log.warn('listening through a relay failed', { error: (err as Error).message })
    }
  }

  private publicAddrs (): string[] {
    const am = (this.libp2p as unknown as { components?: { addressManager?: AddressManagerLike } }).components?.addressManager
    if (am == null) return []
    return [...new Set(am.getAddressesWithMetadata()
      .filter(a => a.verified && !isRelayedAddr(a.multiaddr.toString()) && !isPrivate(multiaddr(a.multiaddr.toString())))
      .map(a => a.multiaddr.toString()))]
  }
}

/**
 * What others can dial: libp2p's own list (confirmed addresses) first, then our public listen
 * addresses that AutoNAT has not confirmed yet. libp2p leaves those out until a peer has dialed them
 * back, which a bootstrap node on a public IP (everyone's first contact) would wait for forever.
 */
export function dialableAddrs (libp2p: Libp2p): string[] {
  const out = libp2p.getMultiaddrs().map(String)
  const am = (libp2p as unknown as { components?: { addressManager?: AddressManagerLike } }).components?.addressManager
  const self = `/p2p/${libp2p.peerId.toString()}`
  for (const a of am?.getAddressesWithMetadata() ?? []) {
    if (a.type !== 'transport' || a.verified) continue
    const s = a.multiaddr.toString()
    const full = s.endsWith(self) ? s : s + self
    if (!out.includes(full)) out.push(full)
  }
  return out
}
