// Admission with --chain (contract: core/contracts/admission.ts): a peer is admitted iff it presented
// a binding that verifies for its peer id AND the binding's hotkey is registered on the netuid in the
// current metagraph.
//
//   ask       an unknown peer is asked for its binding (fetchBinding: the binding protocol); concurrent
//             asks of one peer share one exchange, bounded by fetchTimeoutMs whoever waits
//   cache     verified bindings and verdicts are kept; a metagraph update re-decides every peer whose
//             binding is known (a hotkey that registers later is admitted, one that leaves the
//             metagraph loses admission at once)
//   re-check  a refusal reads as 'unknown' again after recheckMs, so the peer is asked anew (it may
//             have fixed its binding, or bound another hotkey)
//   no answer the peer could not be asked (AdmissionPendingError, 'ignore'): nothing is cached
import type { AdmissionState, PeerAdmission } from '../contracts/admission.ts'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { deadline } from '../timers.ts'
import { AdmissionPendingError, BindingError, NotAdmittedError } from './errors.ts'
import type { Metagraph, PeerBinding } from './types.ts'

export interface ChainAdmissionInit {
  /** This node's peer id: always admitted. */
  readonly self: string
  /** Asks `peer` for its binding (raw, not yet verified). A BindingError is a refusal; anything else means no answer. */
  readonly fetchBinding: (peer: string, signal: AbortSignal) => Promise<unknown>
  /** Verifies a binding for `peer` (core/chain/binding.ts verifyBinding); throws BindingError. */
  readonly verify: (value: unknown, peer: string) => Promise<PeerBinding>
  /** A refusal stands this long before the peer is asked again (ms). Default 60000. */
  readonly recheckMs?: number
  /** Bound of one binding exchange (ms). Default 10000. */
  readonly fetchTimeoutMs?: number
  readonly now?: () => number
  readonly log?: Logger
}

interface Verdict {
  readonly state: 'admitted' | 'refused'
  readonly reason: string
  readonly at: number
}

export interface AdmissionCounts {
  admitted: number
  refused: number
}

export class ChainAdmission implements PeerAdmission {
  private readonly verdicts = new Map<string, Verdict>()
  private readonly bindings = new Map<string, PeerBinding>()
  private readonly asking = new Map<string, Promise<Verdict>>()
  private registered = new Set<string>()
  private graph: Metagraph | undefined
  private readonly recheckMs: number
  private readonly fetchTimeoutMs: number
  private readonly now: () => number
  private readonly log: Logger
  private readonly stopper = new AbortController()

  constructor (private readonly init: ChainAdmissionInit) {
    this.recheckMs = init.recheckMs ?? 60_000
    this.fetchTimeoutMs = init.fetchTimeoutMs ?? 10_000
    this.now = init.now ?? Date.now
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:chain:admission')
  }

  /** The metagraph decisions are made against; re-decides every peer with a known binding. */
  setMetagraph (m: Metagraph): void {
    this.graph = m
    this.registered = new Set(m.neurons.map(n => n.hotkey))
    for (const [peer, b] of this.bindings) {
      const before = this.verdicts.get(peer)
      const next = this.decide(peer, b)
      if (before?.state !== next.state) this.log.info(next.state === 'admitted' ? 'peer admitted' : 'peer refused', { peer, hotkey: b.hotkey, reason: next.reason, block: m.block })
    }
  }

  metagraph (): Metagraph | undefined {
    return this.graph
  }

  state (peer: string): AdmissionState {
    if (peer === this.init.self) return 'admitted'
    const v = this.verdicts.get(peer)
    if (v == null) return 'unknown'
    if (v.state === 'refused' && this.now() - v.at >= this.recheckMs) return 'unknown'
    return v.state
  }

  async admit (peer: string, signal?: AbortSignal): Promise<void> {
    const s = this.state(peer)
    if (s === 'admitted') return
    if (s === 'refused') throw new NotAdmittedError(peer, this.verdicts.get(peer)?.reason ?? 'refused')
    signal?.throwIfAborted()
    // nobody can be judged before the first metagraph (the chain node reads it before it serves anything)
    if (this.graph == null) throw new AdmissionPendingError(peer, { cause: new Error('no metagraph read yet') })
    let pending = this.asking.get(peer)
    if (pending == null) {
      pending = this.ask(peer).finally(() => { this.asking.delete(peer) })
      this.asking.set(peer, pending)
    }
    const v = await raceSignal(pending, signal)
    if (v.state === 'refused') throw new NotAdmittedError(peer, v.reason)
  }

  hotkeyOf (peer: string): string | undefined {
    return this.bindings.get(peer)?.hotkey
  }

  /** The peer id whose verified binding names `hotkey`, if any. */
  peerOf (hotkey: string): string | undefined {
    for (const [peer, b] of this.bindings) if (b.hotkey === hotkey) return peer
    return undefined
  }

  /** Refuses `peer` for a reason found elsewhere (a dialed axon answered with another hotkey's binding). */
  refuse (peer: string, reason: string): void {
    // forgotten with its binding: metagraph updates leave the refusal alone until the re-check asks anew
    this.bindings.delete(peer)
    this.verdicts.set(peer, { state: 'refused', reason, at: this.now() })
    this.log.info('peer refused', { peer, reason })
  }

  counts (): AdmissionCounts {
    let admitted = 0
    let refused = 0
    for (const peer of this.verdicts.keys()) {
      const s = this.state(peer)
      if (s === 'admitted') admitted++
      else if (s === 'refused') refused++
    }
    return { admitted, refused }
  }

  /** Ends pending asks (the node stops). */
  stop (): void {
    this.stopper.abort()
  }

  private async ask (peer: string): Promise<Verdict> {
    const guard = deadline(this.fetchTimeoutMs, this.stopper.signal)
    try {
      let raw: unknown
      try {
        raw = await this.init.fetchBinding(peer, guard.signal)
      } catch (err) {
        if (err instanceof BindingError) return this.refuseBinding(peer, err)
        this.log.debug('binding not fetched', { peer, error: (err as Error).message })
        throw new AdmissionPendingError(peer, { cause: err })
      }
      let b: PeerBinding
      try {
        b = await this.init.verify(raw, peer)
      } catch (err) {
        if (err instanceof BindingError) return this.refuseBinding(peer, err)
        throw err
      }
      this.bindings.set(peer, b)
      const v = this.decide(peer, b)
      this.log.info(v.state === 'admitted' ? 'peer admitted' : 'peer refused', { peer, hotkey: b.hotkey, reason: v.reason })
      return v
    } finally {
      guard.clear()
    }
  }

  private refuseBinding (peer: string, err: BindingError): Verdict {
    this.bindings.delete(peer)
    const v: Verdict = { state: 'refused', reason: err.message, at: this.now() }
    this.verdicts.set(peer, v)
    this.log.info('peer refused', { peer, reason: err.message })
    return v
  }

  /** The verdict for a verified binding against the current metagraph (recorded). */
  private decide (peer: string, b: PeerBinding): Verdict {
    const v: Verdict = this.registered.has(b.hotkey)
      ? { state: 'admitted', reason: `hotkey ${b.hotkey} is registered on subnet ${this.graph?.netuid ?? '?'}`, at: this.now() }
      : { state: 'refused', reason: `hotkey ${b.hotkey} is not registered on subnet ${this.graph?.netuid ?? '?'}${this.graph != null ? ` (metagraph of block ${this.graph.block})` : ''}`, at: this.now() }
    this.verdicts.set(peer, v)
    return v
  }
}

/** `p`, or the signal's abort, whichever comes first (the shared exchange goes on for other waiters). */
async function raceSignal<T> (p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal == null) return await p
  signal.throwIfAborted()
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => { reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason))) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([p, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort!)
  }
}
