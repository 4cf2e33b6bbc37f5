// Keeps this node connected to its bootstrap peers. Each address has its own loop: dial; on failure log
// and retry after an exponential backoff (capped, with jitter so a restarted swarm does not redial in
// lockstep); once connected, wait for the disconnect and start over. Never throws: an unreachable
// bootstrap peer must not take the node down. setAddrs() replaces the list at run time (with --chain,
// the axons served on the subnet): loops of addresses that left end, new ones start. An address
// without /p2p/ is dialed all the same: libp2p learns the peer id in the noise handshake.
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '../contracts/logger.ts'
import { peerIdOf } from './multiaddrs.ts'
import { pause, withDeadline } from '../timers.ts'

export interface BootstrapDialerInit {
  addrs: readonly Multiaddr[]
  /** First retry delay; doubles per failure. Default 1000 ms. */
  initialDelayMs?: number
  /** Cap of the retry delay. Default 60000 ms. */
  maxDelayMs?: number
  /** Bound of one dial. Default 10000 ms. */
  dialTimeoutMs?: number
  /** Source of jitter in [0, 1) (tests pin it). */
  random?: () => number
  /**
   * Called after every successful dial. The node runs a DHT self-lookup here: the DHT's own runs at
   * start and then only every QUERY_SELF_INTERVAL_MS, so a node whose bootstrap connection dropped
   * early would stay unknown to the swarm until then.
   */
  onConnected?: (addr: Multiaddr, peer: PeerId) => void
}

export interface BootstrapPeerState {
  readonly addr: string
  readonly connected: boolean
  /** Failed dials since the last success. */
  readonly failures: number
  readonly lastError?: string
  /** Unix ms of the next dial while disconnected. */
  readonly nextDialAt?: number
}

/** Delay before retry `failures` (1-based): initial * 2^(failures-1), capped, times a jitter in [0.5, 1). */
export function backoffDelay (failures: number, initialMs: number, maxMs: number, random: () => number): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, failures - 1))
  return Math.round(base * (0.5 + random() / 2))
}

export class BootstrapDialer {
  private readonly libp2p: Libp2p
  private readonly log: Logger
  private readonly init: Required<BootstrapDialerInit>
  private readonly states = new Map<string, { connected: boolean, failures: number, lastError?: string, nextDialAt?: number }>()
  private controller?: AbortController
  /** Per running address: its loop and what ends it. */
  private readonly running = new Map<string, { loop: Promise<void>, stop: AbortController }>()
  private addrs: readonly Multiaddr[]
  /** Aborted by redialNow(): cuts the back-off wait of every disconnected address. */
  private wake = new AbortController()

  constructor (libp2p: Libp2p, logger: Logger, init: BootstrapDialerInit) {
    this.libp2p = libp2p
    this.log = logger.forComponent('layerswarm:bootstrap')
    this.init = { initialDelayMs: 1000, maxDelayMs: 60_000, dialTimeoutMs: 10_000, random: Math.random, onConnected: () => {}, ...init }
    this.addrs = init.addrs
  }

  start (): void {
    if (this.controller != null) return
    this.controller = new AbortController()
    this.sync()
  }

  /** Replaces the address list; while started, dials new addresses at once and ends the loops of removed ones. */
  setAddrs (addrs: readonly Multiaddr[]): void {
    this.addrs = [...addrs]
    if (this.controller != null) this.sync()
  }

  async stop (): Promise<void> {
    this.controller?.abort()
    await Promise.all([...this.running.values()].map(async r => { await r.loop }))
    this.running.clear()
    this.controller = undefined
  }

  /** Starts a loop per listed address that has none, and ends those no longer listed. */
  private sync (): void {
    const parent = this.controller!.signal
    const self = this.libp2p.peerId.toString()
    const wanted = new Map<string, Multiaddr>()
    for (const ma of this.addrs) {
      if (peerIdOf(ma) === self) continue // a bootstrap node finds itself in its network's list
      wanted.set(ma.toString(), ma)
    }
    for (const [key, r] of this.running) {
      if (wanted.has(key)) continue
      r.stop.abort()
      this.running.delete(key)
      this.states.delete(key)
    }
    for (const [key, ma] of wanted) {
      if (this.running.has(key)) continue
      const stop = new AbortController()
      parent.addEventListener('abort', () => { stop.abort() }, { once: true })
      this.states.set(key, { connected: false, failures: 0 })
      this.running.set(key, { loop: this.run(ma, stop.signal), stop })
    }
  }

  /** Disconnected addresses dial again now instead of after their back-off. */
  redialNow (): void {
    this.wake.abort()
    this.wake = new AbortController()
  }

  status (): BootstrapPeerState[] {
    return [...this.states].map(([addr, s]) => ({ addr, ...s }))
  }

  private async run (ma: Multiaddr, signal: AbortSignal): Promise<void> {
    const key = ma.toString()
    const state = this.states.get(key)!
    let connections = 0
    while (!signal.aborted) {
      let delay: number
      try {
        const conn = await withDeadline(this.init.dialTimeoutMs, [signal], async s => await this.libp2p.dial(ma, { signal: s }))
        const reconnect = connections++ > 0
        if (state.failures > 0) this.log.info('bootstrap peer reachable again', { addr: key, after: state.failures })
        else if (reconnect) this.log.info('reconnected to bootstrap peer', { addr: key })
        else this.log.debug('connected to bootstrap peer', { addr: key })
        Object.assign(state, { connected: true, failures: 0, lastError: undefined, nextDialAt: undefined })
        try { this.init.onConnected(ma, conn.remotePeer) } catch (err) { this.log.warn('onConnected failed', { error: String(err) }) }
        await this.waitForDisconnect(conn.remotePeer, signal)
        state.connected = false
        if (signal.aborted) return
        this.log.info('bootstrap peer disconnected; redialing', { addr: key })
        delay = this.init.initialDelayMs
      } catch (err: any) {
        state.connected = false
        if (signal.aborted) return
        state.failures++
        state.lastError = err?.message ?? String(err)
        delay = backoffDelay(state.failures, this.init.initialDelayMs, this.init.maxDelayMs, this.init.random)
        this.log.warn('bootstrap peer unreachable; will retry', {
          addr: key, failures: state.failures, retryInS: delay / 1000, error: `${err?.name ?? 'Error'}: ${state.lastError}`
        })
      }
      state.nextDialAt = Date.now() + delay
      await withDeadline(undefined, [signal, this.wake.signal], async s => { await pause(delay, s) })
    }
  }

  private async waitForDisconnect (peer: PeerId, signal: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => {
      const done = (): void => {
        this.libp2p.removeEventListener('peer:disconnect', onDisconnect)
        signal.removeEventListener('abort', done)
        resolve()
      }
      const onDisconnect = (evt: CustomEvent<PeerId>): void => { if (evt.detail.equals(peer)) done() }
      this.libp2p.addEventListener('peer:disconnect', onDisconnect)
      signal.addEventListener('abort', done, { once: true })
      // the connection may have closed before the listener was attached
      if (signal.aborted || this.libp2p.getConnections(peer).length === 0) done()
    })
  }
}

/** Bound of the self-lookup run after each bootstrap (re)connect. */
const SELF_LOOKUP_TIMEOUT_MS = 10_000

/** Runs one DHT lookup of our own id (connects us to, and announces us to, our nearest peers). */
export async function selfLookup (dht: Pick<KadDHT, 'getClosestPeers'>, self: { toMultihash: () => { bytes: Uint8Array } }, log: Logger): Promise<void> {
  let peers = 0
  try {
    await withDeadline(SELF_LOOKUP_TIMEOUT_MS, [], async signal => {
      for await (const e of dht.getClosestPeers(self.toMultihash().bytes, { signal })) {
        if (e.name === 'FINAL_PEER') peers++
      }
    })
    log.debug('self-lookup after a bootstrap connect', { peers })
  } catch (err) {
    log.debug('self-lookup after a bootstrap connect failed', { peers, error: (err as Error).message })
  }
}
