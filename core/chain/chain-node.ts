// The node's chain service with `start --chain` (createNode builds it, bound as Tokens.Chain):
//
//   binding    this node's peer-id <-> hotkey binding, served on the binding protocol
//   metagraph  read before the node serves anything (start() fails with ChainUnreachableError when
//              the chain does not answer in connectTimeoutMs), then kept fresh (metagraph-watch.ts);
//              while the chain is away the node works from the last one
//   bootstrap  every axon served on the subnet (not this node's) is a dial target for the node's
//              BootstrapDialer: `/ip4/<ip>/tcp/<port>` without /p2p/ (the axon names no peer id;
//              libp2p learns it in the noise handshake). The peer that answers there must be bound to
//              the axon's hotkey, else it is refused
//   admission  core/chain/admission.ts, installed as the judge's policy once the metagraph is known
//   weights    the validator's WeightSetter (started by the runtime) shows its status here
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { KeyringPair } from '@polkadot/keyring/types'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { deadline } from '../timers.ts'
import type { PeerJudge } from '../peer-judge.ts'
import { ChainAdmission } from './admission.ts'
import { createBinding, decodeBinding, encodeBinding } from './binding.ts'
import { fetchBinding, serveBinding } from './binding-protocol.ts'
import { MetagraphWatch, type MetagraphWatchStatus, type WatchedReader } from './metagraph-watch.ts'
import type { ChainReader, Metagraph, PeerBinding, WeightsWriter } from './types.ts'

/** createNode's `chain` option. */
export interface ChainOptions {
  /** ws:// or wss:// URL of a subtensor node. */
  readonly endpoint: string
  readonly netuid: number
  /** The hotkey this node is bound to (core/chain/wallet.ts loadHotkey). */
  readonly hotkey: KeyringPair
  /** Blocks between metagraph refreshes. Default 5. */
  readonly refreshBlocks?: number
  /** How long start() tries to read the first metagraph (ms). Default 60000. */
  readonly connectTimeoutMs?: number
  /** Reads the chain instead of a client of `endpoint` (tests inject one); no weights can be set then. */
  readonly reader?: ChainReader
  /** Period of the head poll (ms). Default 12000. */
  readonly pollMs?: number
  /** A refused peer is asked again after this long (ms). Default 60000. */
  readonly recheckMs?: number
}

/** The part of core/chain/chain-client.ts's ChainClient the node uses. */
export interface ChainConnection extends WatchedReader {
  close: () => Promise<void>
  writer: (hotkey: KeyringPair) => WeightsWriter
}

export interface ChainNodeInit extends ChainOptions {
  readonly libp2p: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId'>
  readonly privateKey: PrivateKey
  readonly judge: PeerJudge
  /** Replaces the chain's part of the bootstrap dial list. */
  readonly setTargets: (addrs: Multiaddr[]) => void
  /** Opens a client of `endpoint` (default: core/chain/chain-client.ts connectChain). */
  readonly connect?: (endpoint: string, signal: AbortSignal, log: Logger) => Promise<ChainConnection>
  readonly log?: Logger
}

export interface ChainStatus {
  endpoint: string
  netuid: number
  hotkey: string
  /** This node's uid on the subnet; null while its hotkey is not registered. */
  uid: number | null
  connected: boolean
  metagraph: MetagraphWatchStatus & { neurons?: number }
  peers: { admitted: number, refused: number }
  /** Axons of the subnet this node dials (ip:port -> hotkey). */
  bootstrap: Array<{ addr: string, hotkey: string }>
  /** The validator's weight setter, where one runs. */
  weights?: unknown
}

export class ChainNode {
  readonly admission: ChainAdmission
  readonly hotkey: string
  private binding: PeerBinding | undefined
  private client: ChainConnection | undefined
  private watch: MetagraphWatch | undefined
  private unserve: (() => Promise<void>) | undefined
  private targets = new Map<string, string>()
  private weightSetter: { status: () => unknown } | undefined
  private readonly log: Logger
  private readonly self: string

  constructor (private readonly init: ChainNodeInit) {
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:chain')
    this.hotkey = init.hotkey.address
    this.self = init.libp2p.peerId.toString()
    this.admission = new ChainAdmission({
      self: this.self,
      fetchBinding: async (peer, signal) => await fetchBinding(init.libp2p, peer, { signal, log: init.log }),
      verify: async (raw, peer) => await decodeBinding(raw as Uint8Array, peer),
      recheckMs: init.recheckMs,
      log: init.log
    })
  }

  /** Serves the binding, reads the first metagraph, installs admission (see the top of this file). */
  async start (signal?: AbortSignal): Promise<void> {
    const { init } = this
    this.binding = await createBinding(init.privateKey, init.hotkey)
    this.unserve = await serveBinding(init.libp2p, encodeBinding(this.binding), init.log)
    const timeoutMs = init.connectTimeoutMs ?? 60_000
    let reader: WatchedReader | undefined = init.reader
    if (reader == null) {
      const connect = init.connect ?? defaultConnect(timeoutMs)
      this.client = await connect(init.endpoint, signal ?? new AbortController().signal, init.log ?? silentLogger)
      reader = this.client
    }
    this.watch = new MetagraphWatch({
      reader,
      netuid: init.netuid,
      refreshBlocks: init.refreshBlocks,
      pollMs: init.pollMs,
      endpoint: init.endpoint,
      onMetagraph: m => { this.onMetagraph(m) },
      log: init.log
    })
    const m = await this.watch.start(timeoutMs, signal)
    init.judge.useAdmission(this.admission)
    const me = m.neurons.find(n => n.hotkey === this.hotkey)
    if (me == null) this.log.warn('this node\'s hotkey is not registered on the subnet: peers will refuse it', { hotkey: this.hotkey, netuid: init.netuid })
    this.log.info('chain connected', { endpoint: init.endpoint, netuid: init.netuid, block: m.block, neurons: m.neurons.length, uid: me?.uid ?? null, axons: this.targets.size })
  }

  async stop (): Promise<void> {
    this.admission.stop()
    await this.watch?.stop()
    await this.unserve?.()
    this.unserve = undefined
    await this.client?.close().catch(err => { this.log.debug('closing the chain client failed', { error: (err as Error).message }) })
    this.client = undefined
  }

  metagraph (): Metagraph | undefined {
    return this.watch?.current()
  }

  hotkeyOf (peer: string): string | undefined {
    return peer === this.self ? this.hotkey : this.admission.hotkeyOf(peer)
  }

  /** What the node reads the chain through (its client, or the injected reader). */
  reader (): ChainReader | undefined {
    return this.client ?? this.init.reader
  }

  get netuid (): number {
    return this.init.netuid
  }

  /** Signs weights with this node's hotkey; undefined when the chain is read through an injected reader. */
  writer (): WeightsWriter | undefined {
    return this.client?.writer(this.init.hotkey)
  }

  /** The validator's weight setter, whose status joins this node's chain status. */
  attachWeightSetter (ws: { status: () => unknown } | undefined): void {
    this.weightSetter = ws
  }

  /** The bootstrap dialer reached `addr` (peer `peer`): a subnet axon's peer must be bound to the axon's hotkey. */
  onConnected (addr: Multiaddr, peer: PeerId): void {
    const expected = this.targets.get(addr.toString())
    if (expected == null) return
    const id = peer.toString()
    this.init.judge.admit(id).then(() => {
      const bound = this.admission.hotkeyOf(id)
      if (bound !== expected) this.admission.refuse(id, `it answered at the axon of hotkey ${expected} but is bound to ${bound ?? 'no hotkey'}`)
    }, err => { this.log.debug('axon peer not admitted', { addr: addr.toString(), peer: id, error: (err as Error).message }) })
  }

  status (): ChainStatus {
    const m = this.watch?.current()
    const ws = this.watch?.status() ?? { connected: false, failures: 0 }
    return {
      endpoint: this.init.endpoint,
      netuid: this.init.netuid,
      hotkey: this.hotkey,
      uid: m?.neurons.find(n => n.hotkey === this.hotkey)?.uid ?? null,
      connected: ws.connected,
      metagraph: { ...ws, ...(m != null ? { neurons: m.neurons.length } : {}) },
      peers: this.admission.counts(),
      bootstrap: [...this.targets].map(([addr, hotkey]) => ({ addr, hotkey })),
      ...(this.weightSetter != null ? { weights: this.weightSetter.status() } : {})
    }
  }

  private onMetagraph (m: Metagraph): void {
    this.admission.setMetagraph(m)
    const next = axonTargets(m, this.hotkey)
    const same = next.size === this.targets.size && [...next].every(([a, h]) => this.targets.get(a) === h)
    this.targets = next
    if (!same) {
      this.log.info('bootstrap targets from the metagraph', { block: m.block, targets: next.size })
      this.init.setTargets([...next.keys()].map(a => multiaddr(a)))
    }
  }
}

/** Dialable axons of a metagraph (multiaddr text -> hotkey), leaving out `ownHotkey`'s. */
export function axonTargets (m: Metagraph, ownHotkey: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const n of m.neurons) {
    const a = n.axon
    if (a == null || n.hotkey === ownHotkey || !(a.port > 0 && a.port < 65536)) continue
    if (a.ipType === 4 && a.ip !== '0.0.0.0') out.set(`/ip4/${a.ip}/tcp/${a.port}`, n.hotkey)
    else if (a.ipType === 6 && a.ip !== '::') out.set(`/ip6/${a.ip}/tcp/${a.port}`, n.hotkey)
  }
  return out
}

/** connectChain from core/chain/chain-client.ts, loaded on first use (it pulls in @polkadot/api). */
function defaultConnect (timeoutMs: number): NonNullable<ChainNodeInit['connect']> {
  return async (endpoint, signal, log) => {
    const { connectChain } = await import('./chain-client.ts')
    // retries with backoff inside the client, bounded here by the same deadline as the first metagraph
    const guard = deadline(timeoutMs, signal)
    try {
      return await connectChain(endpoint, { signal: guard.signal, log }) as unknown as ChainConnection
    } finally {
      guard.clear()
    }
  }
}
