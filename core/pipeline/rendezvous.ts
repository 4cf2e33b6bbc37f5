// Run rendezvous: how a training node meets the other nodes of its run, and what it does when it has
// none. Gossip (the stage directory's heartbeats) only flows over direct connections between nodes
// subscribed to the run's topic; a bootstrap node does not subscribe to run topics, so two training
// nodes that both know only the bootstrap node never hear each other. kad-dht's background lookups
// usually connect them within a second or two, but nothing guaranteed it: a node whose bootstrap
// connection dropped before its first lookups stayed unknown for the whole run (docs/node.md,
// "Meeting the swarm").
//
//   announce   provide the DHT key `/layerswarm/<runId>/members` (at start, then every announceMs)
//   search     findProviders on that key and dial the providers this node is not connected to
//              (at most maxDials a search); every searchMs while the node knows no peer of the
//              run, every idleSearchMs once it does (a later joiner announces itself the same way)
//   lonely     no peer of the run for lonelyAfterMs: log what is missing, ask the node to redial its
//              bootstrap peers and look itself up (`rebootstrap`), announce and search again;
//              repeated with doubling back-off (capped) while it stays alone
//
// Deadlines are from measured figures: on loopback and a loaded 2-core machine, nodes see each other's
// heartbeats 1-2 s after start; a provide + findProviders round trip took 0.02-0.5 s. A search is
// bounded by searchTimeoutMs, a dial by dialTimeoutMs.
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { dhtKey } from '../node/dht-keys.ts'
import { pause, withDeadline } from '../timers.ts'

export interface RendezvousInit {
  readonly runId: string
  /** Peers of the run this node knows now (the directory's live entries), by stage. */
  readonly view: () => { peers: number, stagePeers: Record<string, number> }
  /** Stages of the run (to name the ones nobody serves). */
  readonly stages: number
  /** Redial the bootstrap peers and look this node up in the DHT (LayerswarmNode.rebootstrap). */
  readonly rebootstrap?: () => void
  /** Republishes this node's heartbeat at once. */
  readonly reannounce?: () => void
  readonly announceMs?: number
  readonly searchMs?: number
  readonly idleSearchMs?: number
  readonly lonelyAfterMs?: number
  readonly maxBackoffMs?: number
  readonly searchTimeoutMs?: number
  readonly dialTimeoutMs?: number
  readonly maxDials?: number
  readonly log?: Logger
}

export interface RendezvousStatus {
  /** Peers of the run known (directory), this node excluded. */
  readonly peers: number
  /** Other peers per stage. */
  readonly stagePeers: Record<string, number>
  /** Stages no known peer serves (this node's own counts as served). */
  readonly missingStages: number[]
  /** Seconds this node has known no peer of its run (0 when it knows one). */
  readonly aloneS: number
  /** Times it re-bootstrapped because it was alone. */
  readonly rebootstraps: number
  /** Providers of the run key found by the last search, and dials made from searches. */
  readonly lastSearchFound: number
  readonly dials: number
}

type RendezvousLibp2p = Pick<Libp2p, 'contentRouting' | 'peerId' | 'dial' | 'getConnections'>

export class RunRendezvous {
  private readonly log: Logger
  private readonly abort = new AbortController()
  private loop: Promise<void> | undefined
  private key: Awaited<ReturnType<typeof dhtKey>> | undefined
  private aloneSince: number | null = null
  private rebootstraps = 0
  private lastSearchFound = 0
  private dials = 0
  /** Why the last search or dial failed (the lonely warning says it: a run that never met its peers must show where it stopped). */
  private lastFailure: string | undefined
  private lastAnnounce = 0
  private nextLonelyAt = 0
  private backoffMs: number
  private readonly o: Required<Omit<RendezvousInit, 'rebootstrap' | 'reannounce' | 'log'>>

  constructor (private readonly libp2p: RendezvousLibp2p, private readonly init: RendezvousInit, private readonly myStage: number) {
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:pipeline:rendezvous')
    this.o = {
      announceMs: 60_000,
      searchMs: 2_000,
      idleSearchMs: 30_000,
      lonelyAfterMs: 10_000,
      maxBackoffMs: 60_000,
      searchTimeoutMs: 5_000,
      dialTimeoutMs: 5_000,
      maxDials: 8,
      ...init
    }
    this.backoffMs = this.o.lonelyAfterMs
  }

  start (): void {
    if (this.loop != null) return
    this.loop = this.run(this.abort.signal).catch(err => {
      if (!this.abort.signal.aborted) this.log.error('rendezvous loop failed', { error: (err as Error).message })
    })
  }

  async stop (): Promise<void> {
    this.abort.abort()
    await this.loop
  }

  status (): RendezvousStatus {
    const v = this.init.view()
    return {
      peers: v.peers,
      stagePeers: v.stagePeers,
      missingStages: this.missing(v.stagePeers),
      aloneS: this.aloneSince == null ? 0 : Math.round((Date.now() - this.aloneSince) / 1000),
      rebootstraps: this.rebootstraps,
      lastSearchFound: this.lastSearchFound,
      dials: this.dials
    }
  }

  private missing (stagePeers: Record<string, number>): number[] {
    const out: number[] = []
    for (let s = 0; s < this.init.stages; s++) if (s !== this.myStage && (stagePeers[String(s)] ?? 0) === 0) out.push(s)
    return out
  }

  private async run (signal: AbortSignal): Promise<void> {
    this.key = await dhtKey(`/layerswarm/${this.init.runId}/members`)
    let lastSearch = 0
    // a search runs beside the loop (a DHT with no peers takes its whole deadline to give up)
    let searching: Promise<void> | undefined
    while (!signal.aborted) {
      const now = Date.now()
      const { peers, stagePeers } = this.init.view()
      if (peers === 0) {
        this.aloneSince ??= now
      } else if (this.aloneSince != null) {
        this.log.info('met the run', { afterS: Math.round((now - this.aloneSince) / 1000), peers })
        this.aloneSince = null
        this.backoffMs = this.o.lonelyAfterMs
        this.nextLonelyAt = 0
      }
      if (now - this.lastAnnounce >= this.o.announceMs) this.announce(signal)
      const searchEvery = peers === 0 || this.missing(stagePeers).length > 0 ? this.o.searchMs : this.o.idleSearchMs
      if (now - lastSearch >= searchEvery && searching == null) {
        lastSearch = now
        searching = this.search(signal).finally(() => { searching = undefined })
      }
      if (this.aloneSince != null && now - this.aloneSince >= this.o.lonelyAfterMs && now >= this.nextLonelyAt) {
        this.rebootstraps++
        this.log.warn('no peer of the run: re-bootstrapping and announcing again', {
          runId: this.init.runId, aloneS: Math.round((now - this.aloneSince) / 1000), peers: 0, stagePeers: JSON.stringify(stagePeers),
          missingStages: this.missing(stagePeers).join(',') || 'none', connections: this.libp2p.getConnections().length, nextTryS: this.backoffMs / 1000,
          lastSearchFound: this.lastSearchFound, dials: this.dials, lastFailure: this.lastFailure ?? 'none'
        })
        this.nextLonelyAt = now + this.backoffMs
        this.backoffMs = Math.min(this.o.maxBackoffMs, 2 * this.backoffMs)
        try { this.init.rebootstrap?.() } catch (err) { this.log.warn('rebootstrap failed', { error: (err as Error).message }) }
        this.init.reannounce?.()
        this.announce(signal)
        lastSearch = 0
      }
      await pause(500, signal)
    }
    await searching
  }

  /** Publishes our provider record in the background (bounded). */
  private announce (signal: AbortSignal): void {
    const key = this.key
    if (key == null) return
    this.lastAnnounce = Date.now()
    void withDeadline(this.o.searchTimeoutMs * 2, [signal], async s => { await this.libp2p.contentRouting.provide(key, { signal: s }) })
      .then(() => { this.log.trace('run key provided') })
      .catch(err => { if (!signal.aborted) this.log.debug('providing the run key failed', { error: (err as Error).message }) })
  }

  /** Finds the run's providers and dials those we are not connected to. */
  private async search (signal: AbortSignal): Promise<void> {
    const key = this.key
    if (key == null) return
    const me = this.libp2p.peerId.toString()
    const found: PeerId[] = []
    try {
      await withDeadline(this.o.searchTimeoutMs, [signal], async s => {
        for await (const p of this.libp2p.contentRouting.findProviders(key, { signal: s })) {
          if (p.id.toString() !== me && !found.some(f => f.equals(p.id))) found.push(p.id)
        }
      })
    } catch (err) {
      if (signal.aborted) return
      if (found.length === 0) {
        this.lastFailure = `search: ${(err as Error).message}`
        this.log.debug('run key search failed', { error: (err as Error).message })
      }
    }
    this.lastSearchFound = found.length
    const unconnected = found.filter(p => this.libp2p.getConnections(p).length === 0).slice(0, this.o.maxDials)
    await Promise.all(unconnected.map(async p => {
      try {
        await withDeadline(this.o.dialTimeoutMs, [signal], async s => { await this.libp2p.dial(p, { signal: s }) })
        this.dials++
        this.log.debug('dialed a peer of the run', { peer: p.toString() })
      } catch (err) {
        if (signal.aborted) return
        this.lastFailure = `dial ${p.toString()}: ${(err as Error).message}`
        this.log.debug('dialing a peer of the run failed', { peer: p.toString(), error: (err as Error).message })
      }
    }))
  }
}
