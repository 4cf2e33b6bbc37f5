// Round-trip samples from libp2p pings: cheap (32 bytes each way on an open connection), so a peer
// this node is about to depend on is pinged once when it has no sample, then at most every
// `everyMs`. Fire and forget: a failed ping says nothing here (the exchange's own deadline judges).
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import type { PeerTiming } from './peer-timing.ts'

/** A libp2p node's ping as a probe function, or undefined when it runs no ping service. */
export function pingerOf (libp2p: unknown): ((peer: string, signal: AbortSignal) => Promise<number>) | undefined {
  const svc = (libp2p as { services?: { ping?: { ping: (peer: PeerId, options?: { signal?: AbortSignal }) => Promise<number> } } }).services?.ping
  if (svc == null || typeof svc.ping !== 'function') return undefined
  return async (peer, signal) => await svc.ping(peerIdFromString(peer), { signal })
}

export class RttProbe {
  private readonly last = new Map<string, number>()
  private readonly inFlight = new Set<string>()

  constructor (private readonly timing: PeerTiming, private readonly ping: ((peer: string, signal: AbortSignal) => Promise<number>) | undefined,
    private readonly everyMs = 30_000, private readonly timeoutMs = 10_000) {}

  /** Pings `peer` in the background when its last sample is older than `everyMs` (or it has none). */
  maybeProbe (peer: string): void {
    if (this.ping == null || this.inFlight.has(peer)) return
    const now = Date.now()
    if (now - (this.last.get(peer) ?? -Infinity) < this.everyMs) return
    this.last.set(peer, now)
    if (this.last.size > 4096) this.last.delete(this.last.keys().next().value as string)
    this.inFlight.add(peer)
    const ctl = new AbortController()
    const t = setTimeout(() => { ctl.abort() }, this.timeoutMs)
    t.unref()
    this.ping(peer, ctl.signal).then(ms => { this.timing.observeRtt(peer, ms) }, () => {}).finally(() => {
      clearTimeout(t)
      this.inFlight.delete(peer)
    })
  }
}
