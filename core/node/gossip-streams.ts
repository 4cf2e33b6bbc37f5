// Keeps gossipsub's streams alive across a peer's connection changes. @libp2p/gossipsub 17 keeps one
// outbound stream per peer and, when the stream it reads from dies, forgets the peer (as if it had
// disconnected) even while another connection to it stays open; it takes a peer back only on a new
// connection's identify, which has already happened for the connection that remains. So when a
// relayed connection is replaced by a direct one (DCUtR's direct dial, a WebRTC upgrade) and then
// closed, the two peers stop exchanging gossip for good: in the NAT test bed a public node saw no
// heartbeat from either home for 8 minutes, with both connected to it directly. Here: when a
// connection closes and its peer still has an open one, that one is handed to gossipsub as if it had
// just connected (its own connect handler: add the peer, open an outbound stream), so gossipsub
// reopens the stream on the surviving connection; the peer's side then takes our new stream as its
// inbound one and opens its own outbound stream back.
import type { Connection, Libp2p, PeerId } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'

/** What is used of gossipsub: its peer and stream registries (public) and its connect handler (private in its types). */
export interface GossipInternals {
  readonly peers: Map<string, unknown>
  readonly streamsOutbound: Map<string, unknown>
  readonly protocols: string[]
}

type ConnectHandler = (peer: PeerId, conn: Connection) => void

/** Checks after a close: gossipsub drops the peer when the read side errors, which can come a little later. */
const CHECK_AFTER_MS = [250, 2500]

export class GossipStreamKeeper {
  private readonly timers = new Set<ReturnType<typeof setTimeout>>()
  private running = false
  /** Streams reopened on a surviving connection. */
  reattached = 0
  private readonly onClose = (evt: Event): void => {
    const conn = (evt as CustomEvent<Connection>).detail
    for (const ms of CHECK_AFTER_MS) {
      const t = setTimeout(() => { this.timers.delete(t); void this.check(conn.remotePeer) }, ms)
      t.unref?.()
      this.timers.add(t)
    }
  }

  constructor (private readonly libp2p: Libp2p, private readonly gossip: GossipInternals, private readonly log: Logger) {}

  start (): void {
    if (this.running) return
    if (typeof (this.gossip as unknown as { onPeerConnected?: unknown }).onPeerConnected !== 'function') {
      this.log.warn('gossipsub has no connect handler to call (a new version?): its streams are not reopened after a connection change', {})
      return
    }
    this.running = true
    this.libp2p.addEventListener('connection:close', this.onClose)
  }

  stop (): void {
    this.running = false
    this.libp2p.removeEventListener('connection:close', this.onClose)
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }

  /** Reopens gossip with `peer` on an open connection, if gossipsub lost it and the peer speaks gossipsub. */
  async check (peer: PeerId): Promise<boolean> {
    if (!this.running) return false
    const id = peer.toString()
    if (this.gossip.peers.has(id) && this.gossip.streamsOutbound.has(id)) return false
    const conn = this.libp2p.getConnections(peer).find(c => c.status === 'open')
    if (conn == null) return false
    const known = await this.libp2p.peerStore.get(peer).catch(() => undefined)
    if (known == null || !known.protocols.some(p => this.gossip.protocols.includes(p))) return false
    if (!this.running) return false
    ;(this.gossip as unknown as { onPeerConnected: ConnectHandler }).onPeerConnected(peer, conn)
    this.reattached++
    this.log.debug('gossip stream reopened on a surviving connection', { peer: id, addr: conn.remoteAddr.toString() })
    return true
  }
}
