// The membership service: the one gossip view of a run's swarm (Membership, core/contracts/membership.ts).
//
//   leaves   every `intervalMs` (and on publish()) this node's heartbeat on `/layerswarm/<runId>/members/1.0.0`:
//            the placement provider's fields (scheduler or pin) and the run provider's (pipeline)
//   enters   the gossipsub topic validator (`validate`): the publisher's rate first (publisher-rates.ts:
//            beyond it IGNORE, far beyond REJECT, before any parsing), then typed errors -> REJECT /
//            IGNORE, counted by code; a publisher that floods directly is cut off and banned
//            (core/timed-bans.ts); an accepted heartbeat enters the MemberView and goes to every
//            onMember listener
//   expires  `ttlMs` after it arrived, or at once when the peer's last connection closes (a killed
//            node drops out of routing in milliseconds, not seconds)
//
// One service per node and run: a second one would share the topic's one validator slot. The
// service asks libp2p only for its peer id, gossipsub and the disconnect event.
import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub'
import { scoreInvalidDeliveries } from './topic-score.ts'
import type { PeerId } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import type { Member, Membership, MembershipStats, PlacementFields, RunFields } from '../contracts/membership.ts'
import { silentLogger } from '../logger.ts'
import type { AdmissionState } from '../contracts/admission.ts'
import {
  heartbeatVerdict, HeartbeatAdmissionPendingError, HeartbeatExcludedError, HeartbeatFloodError, HeartbeatNotAdmittedError, HeartbeatUnsignedError,
  MembershipPubsubMissingError, MembershipStateError
} from './errors.ts'
import { encodeHeartbeat, MAX_MEMORY, MAX_QUEUE, MAX_STEP, MAX_THROUGHPUT, membersTopic, validateHeartbeat, type Heartbeat } from './heartbeat.ts'
import { MemberView } from './view.ts'
import { PublisherRates } from './publisher-rates.ts'
import { TimedBans } from '../timed-bans.ts'

export const MEMBERSHIP_VERSION = '0.1.0'

export interface MembershipInit {
  readonly runId: string
  readonly stages: number
  /** Heartbeat period (ms). Default 1000. */
  readonly intervalMs?: number
  /** Forget a peer this long after its last heartbeat arrived (ms). Default 4 x interval. */
  readonly ttlMs?: number
  /** Clock skew tolerated in heartbeat times (ms). Default 30000. */
  readonly maxSkewMs?: number
  /** Gossipsub score weight of one invalid heartbeat (squared with the count). Default -10. */
  readonly invalidMessageWeight?: number
  /** Heartbeats per second one publisher may send; beyond, IGNOREd. Default 4 x this node's own rate, at least 4. */
  readonly maxHeartbeatsPerSec?: number
  /** Heartbeats one publisher may send at once. Default 16. */
  readonly heartbeatBurst?: number
  /** Heartbeats beyond the rate (draining at the rate) above which they are REJECTed. Default 100. */
  readonly heartbeatHardExcess?: number
  /** Software version published. */
  readonly version?: string
  /**
   * Flooders cut off (createNode shares them with its connection gater, which refuses their
   * connections). Default: the service's own, 10-minute bans.
   */
  readonly floodBans?: TimedBans
  /** Told once per ban, when a publisher is cut off for flooding (createNode: a 'reject' judgement). */
  readonly onFlood?: (peer: string) => void
  readonly log?: Logger
  /**
   * Admission (the node's PeerJudge, with --chain): a refused publisher's heartbeats are REJECTed, an
   * unknown one's IGNOREd while it is asked for its binding. Absent: everyone is admitted.
   */
  readonly admission?: {
    admissionOf: (peer: string) => AdmissionState
    admit: (peer: string, signal?: AbortSignal) => Promise<void>
  }
  /** Clock (unix ms). Default Date.now. */
  readonly now?: () => number
}

/** The libp2p parts the service uses. */
export interface MembershipHost {
  readonly peerId: PeerId
  readonly services: { readonly pubsub?: GossipSub }
  /** The connections to `peer` (a flooder's are aborted). */
  getConnections?: (peer: PeerId) => Array<{ abort: (err: Error) => void }>
  addEventListener(type: 'peer:disconnect', listener: (evt: CustomEvent<PeerId>) => void): void
  removeEventListener(type: 'peer:disconnect', listener: (evt: CustomEvent<PeerId>) => void): void
}

/** The gossipsub class exposes its peer score; its public interface does not. */

/** A fixed placement: `--stage N` without the scheduler (serving N from `since` on, never moving). */
export function pinnedPlacement (stage: number, since = Date.now()): () => PlacementFields {
  const fields: PlacementFields = { stage, state: 'serving', pinned: true, since, tput: 0 }
  return () => fields
}

export function createMembership (host: MembershipHost, init: MembershipInit): MembershipService {
  return new MembershipService(host, init)
}

type Listener = (m: Member) => void

export class MembershipService implements Membership {
  readonly me: string
  readonly runId: string
  readonly stages: number
  readonly topic: string
  readonly intervalMs: number
  private readonly pubsub: GossipSub
  private readonly view: MemberView
  private readonly log: Logger
  private readonly now: () => number
  private readonly maxSkewMs: number
  private readonly version: string
  private readonly listeners = new Set<Listener>()
  private readonly startedAt: number
  /** Nothing placed yet: a joiner without a stage, which nobody routes to. */
  private readonly unplaced: () => PlacementFields
  private placement: () => PlacementFields
  private run: () => RunFields = idleRun
  private seq = 0
  private timer: NodeJS.Timeout | undefined
  private state: 'idle' | 'running' | 'stopped' = 'idle'
  private readonly counters = { published: 0, accepted: 0 }
  private readonly rejected: Record<string, number> = {}
  private readonly ignored: Record<string, number> = {}
  private readonly excluded = new Set<string>()
  private readonly rates: PublisherRates
  private readonly bans: TimedBans
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    if (this.view.drop(peer)) this.log.debug('member disconnected', { peer })
  }

  constructor (private readonly host: MembershipHost, private readonly init: MembershipInit) {
    if (host.services.pubsub == null) throw new MembershipPubsubMissingError()
    if (!Number.isSafeInteger(init.stages) || init.stages < 1) throw new RangeError(`stages must be a positive integer, got ${init.stages}`)
    this.pubsub = host.services.pubsub
    this.me = host.peerId.toString()
    this.runId = init.runId
    this.stages = init.stages
    this.topic = membersTopic(init.runId)
    this.intervalMs = init.intervalMs ?? 1000
    this.view = new MemberView(init.ttlMs ?? 4 * this.intervalMs)
    this.maxSkewMs = init.maxSkewMs ?? 30_000
    this.version = init.version ?? MEMBERSHIP_VERSION
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:membership')
    this.now = init.now ?? Date.now
    this.startedAt = this.now()
    this.unplaced = () => ({ stage: -1, state: 'joining', pinned: false, since: this.startedAt, tput: 0 })
    this.placement = this.unplaced
    this.rates = new PublisherRates({
      perSec: init.maxHeartbeatsPerSec ?? Math.max(4, 4000 / this.intervalMs),
      burst: init.heartbeatBurst ?? 16,
      hardExcess: init.heartbeatHardExcess ?? 100,
      now: this.now
    })
    this.bans = init.floodBans ?? new TimedBans({ now: this.now })
  }

  get ttlMs (): number {
    return this.view.ttlMs
  }

  /** Subscribes, validates, publishes now and every interval. */
  start (): void {
    if (this.state !== 'idle') throw new MembershipStateError('start() is allowed once')
    // one view per run and node: a second would fight over the topic's validator
    if (this.pubsub.topicValidators.has(this.topic)) throw new MembershipStateError(`a membership view of run ${this.runId} already runs on this node`)
    this.state = 'running'
    // seq starts at the clock so a restarted node's heartbeats still count as newer
    this.seq = this.now()
    scoreInvalidDeliveries(this.pubsub, this.topic, this.log, 'heartbeats', this.init.invalidMessageWeight ?? -10)
    this.pubsub.topicValidators.set(this.topic, (source, msg) => this.validate(msg, source.toString()))
    this.host.addEventListener('peer:disconnect', this.onDisconnect)
    this.pubsub.subscribe(this.topic)
    void this.publish()
    this.timer = setInterval(() => { void this.publish() }, this.intervalMs)
    this.timer.unref?.()
    this.log.debug('membership started', { topic: this.topic, intervalMs: this.intervalMs, ttlMs: this.view.ttlMs })
  }

  /** Goes quiet (what was last published stands until peers drop this node). Idempotent. */
  stop (): void {
    if (this.state !== 'running') {
      this.state = 'stopped'
      return
    }
    this.state = 'stopped'
    clearInterval(this.timer)
    this.timer = undefined
    this.host.removeEventListener('peer:disconnect', this.onDisconnect)
    try {
      this.pubsub.unsubscribe(this.topic)
    } catch {}
    if (this.pubsub.topicValidators.get(this.topic) != null) this.pubsub.topicValidators.delete(this.topic)
  }

  /** Leaves `peer` out of this view for good (a convicted cheater): routing, averaging, the scheduler and the run end stop seeing it. */
  exclude (peer: string): void {
    if (peer === this.me) return
    this.excluded.add(peer)
    if (this.view.drop(peer)) this.log.info('member excluded', { peer })
  }

  members (): Member[] {
    return this.view.live(this.now()).filter(m => m.peer !== this.me)
  }

  member (peer: string): Member | undefined {
    return peer === this.me ? this.self() : this.view.get(peer, this.now())
  }

  self (): Member {
    return this.heartbeat()
  }

  peersForStage (stage: number): string[] {
    return this.members()
      .filter(m => m.stage === stage && m.state === 'serving' && m.phase !== 'failed')
      .sort((a, b) => score(b) - score(a) || (a.peer < b.peer ? -1 : 1))
      .map(m => m.peer)
  }

  throughputOf (peer: string): number | undefined {
    const m = this.member(peer)
    return m == null ? undefined : rateOf(m)
  }

  onMember (listener: Listener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  async publish (): Promise<void> {
    if (this.state !== 'running') return
    try {
      this.seq++
      const { seen: _, ...member } = this.heartbeat()
      const bytes = encodeHeartbeat({ v: 1, run: this.runId, ...member })
      this.counters.published++
      await this.pubsub.publish(this.topic, bytes)
    } catch (err) {
      this.log.debug('heartbeat not published', { error: (err as Error).message })
    }
  }

  providePlacement (provider: () => PlacementFields): () => void {
    this.placement = provider
    return () => { if (this.placement === provider) this.placement = frozen(provider, this.unplaced) }
  }

  provideRun (provider: () => RunFields): () => void {
    this.run = provider
    return () => { if (this.run === provider) this.run = frozen(provider, idleRun) }
  }

  neighbours (): string[] {
    try {
      return this.pubsub.getSubscribers(this.topic).map(p => p.toString())
    } catch {
      return []
    }
  }

  stats (): MembershipStats {
    return { ...this.counters, rejected: { ...this.rejected }, ignored: { ...this.ignored } }
  }

  /** This node's record from its providers, clamped to what peers accept. */
  private heartbeat (): Member {
    const p = this.placement()
    const r = this.run()
    const now = this.now()
    return {
      peer: this.me,
      stage: p.stage,
      ...(p.state === 'leaving' && p.to !== undefined ? { to: p.to } : {}),
      state: p.state,
      pinned: p.pinned,
      since: Math.max(0, Math.min(Math.round(p.since), now)),
      tput: clampRate(p.tput),
      ...(p.mem !== undefined && Number.isSafeInteger(p.mem) && p.mem >= 1 ? { mem: Math.min(p.mem, MAX_MEMORY) } : {}),
      phase: r.phase,
      step: Math.max(0, Math.min(MAX_STEP, Math.round(r.step))),
      throughput: clampRate(r.throughput),
      queue: Math.max(0, Math.min(MAX_QUEUE, Math.round(p.queue ?? r.queue))),
      version: this.version,
      time: now,
      seq: this.seq,
      seen: now
    }
  }

  /** Gossipsub topic validator: typed errors -> REJECT / IGNORE; accepted heartbeats enter the view here. */
  private validate (msg: Message, source: string): TopicValidatorResult {
    let hb: Heartbeat
    const now = this.now()
    try {
      if (msg.type !== 'signed') throw new HeartbeatUnsignedError()
      const from = msg.from.toString()
      if (this.excluded.has(from)) throw new HeartbeatExcludedError(from)
      this.rates.take(from)
      this.checkAdmission(from)
      hb = validateHeartbeat(msg.data, {
        runId: this.runId, stages: this.stages, now, ttlMs: this.view.ttlMs, maxSkewMs: this.maxSkewMs, from, lastSeq: this.view.lastSeq(from)
      })
    } catch (err) {
      // A REJECT costs the peer that delivered the message, not its publisher. A flood is judged by this
      // node's own clock and bucket: an honest neighbour that forwarded heartbeats its own bucket still
      // took must not pay for it (it did, and a 20,000-heartbeat flood emptied every honest view), so
      // only the publisher itself, delivering directly, is REJECTed for it
      const floodForwarded = err instanceof HeartbeatFloodError && msg.type === 'signed' && msg.from.toString() !== source
      if (err instanceof HeartbeatFloodError && !floodForwarded && msg.type === 'signed') this.cutOff(msg.from, err)
      const verdict = floodForwarded ? 'ignore' : heartbeatVerdict(err)
      const code = (err as { code?: string }).code ?? 'ERR_UNKNOWN'
      const tally = verdict === 'reject' ? this.rejected : this.ignored
      tally[code] = (tally[code] ?? 0) + 1
      this.log.debug('heartbeat refused', { verdict, code, error: (err as Error).message })
      return verdict === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
    }
    const { v: _v, run: _run, ...fields } = hb
    const member: Member = { ...fields, seen: now }
    this.view.put(member)
    this.counters.accepted++
    for (const l of this.listeners) {
      try {
        l(member)
      } catch (err) {
        this.log.warn('member listener threw', { error: (err as Error).message })
      }
    }
    return TopicValidatorResult.Accept
  }

  /**
   * A publisher flooding its own heartbeats: banned, its connections aborted. Its score alone (REJECT) graylists it
   * within about a second, but its connection stays, and every frame it sends is still decrypted and
   * decoded before gossipsub drops it.
   */
  private cutOff (peer: PeerId, err: Error): void {
    const id = peer.toString()
    if (!this.bans.ban(id, 'ERR_MEMBER_HB_FLOOD')) return
    this.log.info('heartbeat flood: publisher cut off', { peer: id, banMs: this.bans.banMs })
    try {
      this.init.onFlood?.(id)
    } catch (err) {
      this.log.warn('onFlood threw', { error: (err as Error).message })
    }
    // aborted, not closed: a graceful close waits on the flooder's own streams, and its flood kept
    // arriving (and being decrypted) for 13 s after the cut in a live swarm
    for (const c of this.host.getConnections?.(peer) ?? []) c.abort(err)
  }

  /** Throws when `from` may not take part (see MembershipInit.admission); asks an unknown one in the background. */
  private checkAdmission (from: string): void {
    const admission = this.init.admission
    if (admission == null) return
    const state = admission.admissionOf(from)
    if (state === 'refused') throw new HeartbeatNotAdmittedError(from)
    if (state === 'unknown') {
      admission.admit(from).catch(() => {}) // the verdict lands in the cache; the next heartbeat reads it
      throw new HeartbeatAdmissionPendingError(from)
    }
  }

}

const IDLE_RUN: RunFields = { phase: 'starting', step: 0, throughput: 0, queue: 0 }
const idleRun = (): RunFields => IDLE_RUN

/** A detached provider's last word, kept (or the one before it, if it throws now). */
function frozen<T> (provider: () => T, fallback: () => T): () => T {
  let last: T
  try {
    last = provider()
  } catch {
    return fallback
  }
  return () => last
}

function clampRate (x: number): number {
  return Number.isFinite(x) && x > 0 ? Math.min(x, MAX_THROUGHPUT) : 0
}

/** A member's microbatches/s as the router's prior: measured capacity, else the pipeline's rate. */
function rateOf (m: Member): number {
  return m.tput > 0 ? m.tput : m.throughput
}

/** Routing preference: throughput discounted by the queue it already has. */
function score (m: Member): number {
  return rateOf(m) / (1 + m.queue)
}
