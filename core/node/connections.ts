// Which of a node's connections are direct and which run through a circuit relay, for
// `status --json` and for the scheduler's capacity discount of nodes reachable only via relays.
// A connection is relayed when its remote address runs through a relay (`/p2p-circuit`); libp2p
// also marks relayed connections that carry a relay's limits (`limits`), but our own relays relay
// without limits (create-node.ts), so the address is the test that holds for both. A WebRTC connection
// signalled through a relay (`.../p2p-circuit/webrtc/...`) is direct: its data flows peer to peer over UDP.

/** What summarizeConnections reads of a libp2p Connection. */
export interface ConnectionLike {
  readonly remotePeer: { toString: () => string }
  readonly remoteAddr: { toString: () => string }
  readonly limits?: unknown
}

export interface PeerConnection {
  readonly peer: string
  /** True when at least one connection to the peer is direct. */
  readonly direct: boolean
  /** The direct connection's remote address when there is one, else a relayed one's. */
  readonly addr: string
  /** Whether the relay limits the connection (time, bytes); false on direct ones. */
  readonly limited: boolean
}

export interface ConnectionSummary {
  /** Peers with at least one direct connection. */
  readonly direct: number
  /** Peers reached only through relays. */
  readonly relayed: number
  readonly peers: PeerConnection[]
}

/** True when `addr` (a multiaddr string) runs through a circuit relay. */
export function isRelayedAddr (addr: string): boolean {
  return addr.includes('/p2p-circuit')
}

/** True when `addr` is a WebRTC one (`/webrtc`, also through a relay: `.../p2p-circuit/webrtc/p2p/<id>`). */
export function isWebRTCAddr (addr: string): boolean {
  return /\/webrtc(\/|$)/.test(addr)
}

/** One entry per peer (a peer with a direct and a relayed connection counts as direct), sorted by peer id. */
export function summarizeConnections (conns: readonly ConnectionLike[]): ConnectionSummary {
  const byPeer = new Map<string, PeerConnection>()
  for (const c of conns) {
    const peer = c.remotePeer.toString()
    const addr = c.remoteAddr.toString()
    const direct = !isRelayedAddr(addr) || isWebRTCAddr(addr)
    const seen = byPeer.get(peer)
    if (seen != null && (seen.direct || !direct)) continue
    byPeer.set(peer, { peer, direct, addr, limited: !direct && c.limits != null })
  }
  const peers = [...byPeer.values()].sort((a, b) => a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0)
  const direct = peers.filter(p => p.direct).length
  return { direct, relayed: peers.length - direct, peers }
}
