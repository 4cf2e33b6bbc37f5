// The networked scheduler: gossips this node's heartbeat, validates and collects the others' into
// the view, and applies the pure rule (rule.ts) to it: pick a stage when joining, move when the rule
// elects this node at an epoch. Data enters in `validate` (gossipsub topic validator), is kept in
// HeartbeatView, and leaves as heartbeats (`publish`) and assignment events (`onAssignment`).
//
// Life of a node:   joining(-1) --listen--> joining(s) --fetchStageState--> serving(s)
//                   serving(a) --elected--> leaving(a, to b) --beforeMove--> joining(b) --fetch--> serving(b)
//                   pinned (--stage N): serving(N) from the start, never moves
//                   stop(): leaving (no target), then silent; others drop it at once
import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub'
import { createTopicScoreParams, type TopicScoreParams } from '@libp2p/gossipsub/score'
import type { PeerId } from '@libp2p/interface'
import type { Logger } from '../../core/contracts/logger.ts'
import type { NodeState, PeerStageInfo, Scheduler, StageAssignment, SwarmView } from '../../core/contracts/scheduler.ts'
import { heartbeatVerdict, HeartbeatUnsignedError, SchedulerPubsubMissingError, SchedulerStateError, StageMoveError } from './errors.ts'
import { encodeHeartbeat, schedulerTopic, validateHeartbeat, type Heartbeat } from './heartbeat.ts'
import {
  assignJoiners, DEFAULT_COOLDOWN_MS, DEFAULT_HYSTERESIS, electedMove, epochOf, stageCosts, stageThroughputs, type RuleConfig
} from './rule.ts'
import { HeartbeatView } from './view.ts'

export const SCHEDULER_VERSION = '0.1.0'

/** Seams the training runtime fills in (a move is safe only once both are in place). */
export interface MoveHooks {
  /** Finish or hand off in-flight work of stage `from` before the node leaves it. */
  beforeMove?: (from: number, to: number, signal: AbortSignal) => Promise<void>
  /**
   * Load stage `stage`'s current weights (and optimizer state) from `peers`, which serve it, before
   * serving it; `peers` is empty when nobody does (start from the checkpoint or the init).
   * The training runtime implements it with the state-sync protocol (core/runtime/stage-host.ts).
   */
  fetchStageState?: (stage: number, peers: readonly string[], signal: AbortSignal) => Promise<void>
}

/** This node's load as the runtime measures it. */
export interface LoadReport {
  /** Microbatches per second of busy time at the current stage. */
  readonly throughput: number
  readonly queueLength: number
}

export interface GossipSchedulerInit {
  readonly runId: string
  readonly stages: number
  /** Relative work per microbatch per stage (rule.ts); default all 1. */
  readonly stageCosts?: readonly number[]
  /** --stage N: serve N from the start and never move. */
  readonly pinnedStage?: number
  /** Estimated capacity before measurement: microbatches/s at a stage of cost 1 (0: unknown). */
  readonly capacity?: number
  /** Heartbeat period (ms). Default 5000. */
  readonly heartbeatMs?: number
  /** Forget a peer this long after its last heartbeat (ms). Default 4 x heartbeat. */
  readonly ttlMs?: number
  /** Rebalancing period (ms). Default 60000. */
  readonly epochMs?: number
  /** A node checks the plan at a random delay in [0, jitter) after an epoch starts (ms). Default min(epoch/4, 10000). */
  readonly epochJitterMs?: number
  /** A joining node listens at least this long, then until it has heard every subscribed neighbour, at most 4x as long (ms). Default 2 x heartbeat + 500. */
  readonly joinListenMs?: number
  readonly hysteresis?: number
  readonly cooldownMs?: number
  readonly maxMovesPerEpoch?: number
  /** Clock skew tolerated in heartbeat times (ms). Default 30000. */
  readonly maxSkewMs?: number
  /** Gossipsub score weight of one invalid heartbeat (squared with the count). Default -10. */
  readonly invalidMessageWeight?: number
  readonly version?: string
  readonly log?: Logger
  /** Clock (unix ms). Default Date.now. */
  readonly now?: () => number
  /** Random numbers in [0, 1) for the epoch jitter. Default Math.random. */
  readonly rng?: () => number
}

export interface SchedulerStats {
  readonly state: NodeState
  readonly stage: number | undefined
  readonly pinned: boolean
  readonly published: number
  readonly accepted: number
  /** Refused heartbeats by error code. */
  readonly rejected: Readonly<Record<string, number>>
  readonly ignored: Readonly<Record<string, number>>
  readonly moves: number
}

/** The libp2p parts the scheduler uses (it gets the node from the container as Tokens.Libp2p). */
export interface PubsubHost {
  readonly peerId: PeerId
  readonly services: { readonly pubsub?: GossipSub }
}

/** The gossipsub class exposes its peer score; its public interface does not. */
type ScoredGossipSub = GossipSub & { score?: { params?: { topics?: Record<string, TopicScoreParams> } } }

type Listener = (a: StageAssignment) => void

export class GossipScheduler implements Scheduler {
  readonly topic: string
  readonly me: string
  private readonly pubsub: ScoredGossipSub
  private readonly cfg: RuleConfig
  private readonly costs: number[]
  private readonly view_: HeartbeatView
  private readonly log: Logger
  private readonly now: () => number
  private readonly rng: () => number
  private readonly o: Required<Pick<GossipSchedulerInit, 'heartbeatMs' | 'epochMs' | 'epochJitterMs' | 'joinListenMs' | 'maxSkewMs' | 'invalidMessageWeight' | 'version'>>
  private readonly listeners = new Set<Listener>()
  private hooks: MoveHooks = {}
  private load: (() => LoadReport) | undefined
  private readonly abort = new AbortController()

  private stage = -1
  private to: number | undefined
  private state_: NodeState = 'joining'
  private since = 0
  private seq = 0
  private startedAt = 0
  private running = false
  private stopped = false
  private stopping: Promise<void> | undefined
  private busy = false
  private checkedEpoch = -1
  private checkTimer: NodeJS.Timeout | undefined
  private timer: NodeJS.Timeout | undefined
  private counters = { published: 0, accepted: 0, moves: 0 }
  private readonly rejected: Record<string, number> = {}
  private readonly ignored: Record<string, number> = {}

  constructor (private readonly host: PubsubHost, private readonly init: GossipSchedulerInit) {
    if (host.services.pubsub == null) throw new SchedulerPubsubMissingError()
    this.pubsub = host.services.pubsub
    if (!Number.isSafeInteger(init.stages) || init.stages < 1) throw new RangeError(`stages must be a positive integer, got ${init.stages}`)
    if (init.pinnedStage !== undefined && !(Number.isSafeInteger(init.pinnedStage) && init.pinnedStage >= 0 && init.pinnedStage < init.stages)) {
      throw new RangeError(`pinned stage ${init.pinnedStage} is outside [0, ${init.stages - 1}]`)
    }
    this.topic = schedulerTopic(init.runId)
    this.me = host.peerId.toString()
    this.cfg = {
      stages: init.stages,
      stageCosts: init.stageCosts,
      hysteresis: init.hysteresis ?? DEFAULT_HYSTERESIS,
      cooldownMs: init.cooldownMs ?? DEFAULT_COOLDOWN_MS,
      maxMovesPerEpoch: init.maxMovesPerEpoch
    }
    this.costs = stageCosts(this.cfg)
    const heartbeatMs = init.heartbeatMs ?? 5000
    const epochMs = init.epochMs ?? 60_000
    this.o = {
      heartbeatMs,
      epochMs,
      epochJitterMs: init.epochJitterMs ?? Math.min(epochMs / 4, 10_000),
      joinListenMs: init.joinListenMs ?? 2 * heartbeatMs + 500,
      maxSkewMs: init.maxSkewMs ?? 30_000,
      invalidMessageWeight: init.invalidMessageWeight ?? -10,
      version: init.version ?? SCHEDULER_VERSION
    }
    this.view_ = new HeartbeatView(init.ttlMs ?? 4 * heartbeatMs)
    this.log = (init.log ?? silent).forComponent('layerswarm:scheduler')
    this.now = init.now ?? Date.now
    this.rng = init.rng ?? Math.random
  }

  async start (): Promise<void> {
    if (this.running || this.stopped) throw new SchedulerStateError('start() is allowed once')
    this.running = true
    const now = this.now()
    this.startedAt = now
    // seq starts at the clock so a restarted node's heartbeats still count as newer
    this.seq = now
    this.since = now
    this.configureScoring()
    this.pubsub.topicValidators.set(this.topic, (_peer, msg) => this.validate(msg))
    this.pubsub.subscribe(this.topic)
    if (this.init.pinnedStage !== undefined) {
      this.stage = this.init.pinnedStage
      this.state_ = 'serving'
      this.emit({ stage: this.stage, reason: 'pinned' })
    }
    this.log.info('scheduler started', { topic: this.topic, stages: this.init.stages, pinned: this.init.pinnedStage ?? null })
    this.publish()
    this.timer = setInterval(() => { this.tick() }, this.o.heartbeatMs)
    this.timer.unref?.()
  }

  /** Says goodbye (state leaving, no target: others stop counting this node at once), then goes quiet. */
  async stop (): Promise<void> {
    this.stopping ??= this.shutdown()
    await this.stopping
  }

  private async shutdown (): Promise<void> {
    this.stopped = true
    this.abort.abort()
    clearInterval(this.timer)
    clearTimeout(this.checkTimer)
    if (!this.running) return
    this.running = false
    this.state_ = 'leaving'
    this.to = undefined
    await this.publishNow().catch(() => {})
    try {
      this.pubsub.unsubscribe(this.topic)
    } catch {}
    this.pubsub.topicValidators.delete(this.topic)
    this.log.info('scheduler stopped')
  }

  currentStage (): number | undefined {
    return this.stage >= 0 && this.state_ !== 'leaving' ? this.stage : undefined
  }

  get nodeState (): NodeState {
    return this.state_
  }

  get pinned (): boolean {
    return this.init.pinnedStage !== undefined
  }

  view (): SwarmView {
    return { stages: this.init.stages, peers: this.heartbeats().map(toInfo) }
  }

  peersForStage (stage: number): string[] {
    return this.heartbeats()
      .filter(h => h.state === 'serving' && h.stage === stage)
      .sort((a, b) => score(b) - score(a) || (a.peer < b.peer ? -1 : 1))
      .map(h => h.peer)
  }

  /** Gossiped throughput of a peer at its stage (a prior for the router). */
  throughputOf (peer: string): number | undefined {
    return peer === this.me ? this.self().tput : this.view_.get(peer, this.now())?.tput
  }

  onAssignment (listener: Listener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** The runtime's seams for moving (see MoveHooks). */
  setMoveHooks (hooks: MoveHooks): void {
    this.hooks = { ...hooks }
  }

  /** Where measured throughput and queue length come from (default: the capacity estimate, queue 0). */
  setLoadSource (fn: () => LoadReport): void {
    this.load = fn
  }

  /** T(s) in this node's view (microbatches/s each stage can run). */
  stageThroughputs (): number[] {
    return stageThroughputs(this.heartbeats(), this.cfg)
  }

  stats (): SchedulerStats {
    return {
      state: this.state_,
      stage: this.currentStage(),
      pinned: this.pinned,
      ...this.counters,
      rejected: { ...this.rejected },
      ignored: { ...this.ignored }
    }
  }

  /** Every live heartbeat, this node's own (fresh) included. */
  heartbeats (): Heartbeat[] {
    return [...this.view_.live(this.now()).filter(e => e.peer !== this.me), this.self()]
  }

  /** This node's heartbeat as of now (without advancing seq). */
  private self (): Heartbeat {
    const load = this.load?.()
    const estimate = this.init.capacity ?? 0
    const tput = load != null && load.throughput > 0
      ? load.throughput
      : this.stage >= 0 ? estimate / this.costs[this.stage] : estimate
    return {
      v: 1,
      run: this.init.runId,
      peer: this.me,
      stage: this.stage,
      ...(this.state_ === 'leaving' && this.to !== undefined ? { to: this.to } : {}),
      tput: Number.isFinite(tput) && tput >= 0 ? Math.min(tput, 1e6) : 0,
      queue: Math.max(0, Math.min(1_000_000, Math.round(load?.queueLength ?? 0))),
      state: this.state_,
      pinned: this.pinned,
      ver: this.o.version,
      time: this.now(),
      since: Math.min(this.since, this.now()),
      seq: this.seq
    }
  }

  private publish (): void {
    this.publishNow().catch(err => { this.log.debug('heartbeat not published', { error: (err as Error).message }) })
  }

  private async publishNow (): Promise<void> {
    this.seq++
    const bytes = encodeHeartbeat(this.self())
    this.counters.published++
    await this.pubsub.publish(this.topic, bytes)
  }

  /** Gossipsub topic validator: typed errors -> REJECT / IGNORE; accepted heartbeats enter the view here. */
  private validate (msg: Message): TopicValidatorResult {
    try {
      if (msg.type !== 'signed') throw new HeartbeatUnsignedError()
      const from = msg.from.toString()
      const now = this.now()
      const hb = validateHeartbeat(msg.data, {
        runId: this.init.runId,
        stages: this.init.stages,
        now,
        ttlMs: this.view_.ttlMs,
        maxSkewMs: this.o.maxSkewMs,
        from,
        lastSeq: this.view_.lastSeq(from)
      })
      this.view_.put(hb, now)
      this.counters.accepted++
      // a stage left empty is filled without waiting for the next epoch
      if (hb.state === 'leaving' && this.state_ === 'serving') this.scheduleCheck(false)
      return TopicValidatorResult.Accept
    } catch (err) {
      const verdict = heartbeatVerdict(err)
      const code = (err as { code?: string }).code ?? 'ERR_UNKNOWN'
      const tally = verdict === 'reject' ? this.rejected : this.ignored
      tally[code] = (tally[code] ?? 0) + 1
      this.log.debug('heartbeat refused', { verdict, code, error: (err as Error).message })
      return verdict === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
    }
  }

  private tick (): void {
    if (!this.running) return
    this.publish()
    if (this.busy) return
    const now = this.now()
    if (this.state_ === 'joining' && this.stage === -1) {
      // a joiner waits until it has heard every subscribed neighbour (still connecting ones too);
      // after 4 listen periods it decides with what it has (a first node hears no one)
      const listened = now - this.startedAt
      if (listened >= 4 * this.o.joinListenMs || (listened >= this.o.joinListenMs && this.heardNeighbours(now))) void this.join()
      return
    }
    if (this.state_ === 'joining') {
      void this.enter(this.stage, 'join') // a failed state fetch is retried every heartbeat
      return
    }
    if (this.state_ !== 'serving' || this.pinned) return
    const epoch = epochOf(now, this.o.epochMs)
    const empty = this.stageThroughputs().some(t => t === 0)
    if (epoch !== this.checkedEpoch || empty) this.scheduleCheck(true)
  }

  /** Whether the view holds a heartbeat of every gossipsub neighbour subscribed to the topic (and at least one). */
  private heardNeighbours (now: number): boolean {
    const live = new Set(this.view_.live(now).map(e => e.peer))
    let neighbours: string[]
    try {
      neighbours = this.pubsub.getSubscribers(this.topic).map(p => p.toString())
    } catch {
      neighbours = []
    }
    return live.size > 0 && neighbours.every(p => live.has(p))
  }

  /** Check the plan after a random delay (so elected movers' announcements spread first). */
  private scheduleCheck (jitter: boolean): void {
    if (this.checkTimer !== undefined || this.pinned) return
    const delay = jitter ? this.rng() * this.o.epochJitterMs : 0
    this.checkTimer = setTimeout(() => {
      this.checkTimer = undefined
      void this.checkPlan()
    }, delay)
    this.checkTimer.unref?.()
  }

  private async checkPlan (): Promise<void> {
    if (!this.running || this.busy || this.state_ !== 'serving' || this.pinned) return
    const now = this.now()
    const epoch = epochOf(now, this.o.epochMs)
    this.checkedEpoch = epoch
    const move = electedMove(this.heartbeats(), this.me, this.cfg, now, epoch)
    if (move === undefined) return
    this.log.info('rebalancing: elected to move', { from: move.from, to: move.to, level: round(move.level), throughputs: this.stageThroughputs().map(round) })
    await this.move(move.to)
  }

  private async join (): Promise<void> {
    const now = this.now()
    const stage = assignJoiners(this.heartbeats(), this.cfg, epochOf(now, this.o.epochMs)).get(this.me)
    if (stage === undefined) return
    this.log.info('joining stage', { stage, throughputs: this.stageThroughputs().map(round) })
    this.stage = stage
    this.since = now
    await this.enter(stage, 'join')
  }

  /** serving(a) -> leaving(a, to) -> beforeMove -> joining(to) -> fetch -> serving(to). */
  private async move (to: number): Promise<void> {
    const from = this.stage
    this.busy = true
    try {
      this.state_ = 'leaving'
      this.to = to
      await this.publishNow().catch(() => {})
      try {
        await this.hooks.beforeMove?.(from, to, this.abort.signal)
      } catch (err) {
        this.state_ = 'serving'
        this.to = undefined
        throw new StageMoveError(from, to, { cause: err })
      }
      this.to = undefined
      this.stage = to
      this.since = this.now()
      this.counters.moves++
    } catch (err) {
      this.log.warn('move aborted; still serving the old stage', { error: (err as Error).message })
      return
    } finally {
      this.busy = false
    }
    await this.enter(to, 'rebalance')
  }

  /** joining(stage) -> fetch its state -> serving(stage), then tell the listeners. */
  private async enter (stage: number, reason: string): Promise<void> {
    if (this.busy || !this.running) return
    this.busy = true
    try {
      this.state_ = 'joining'
      await this.publishNow().catch(() => {})
      const peers = this.peersForStage(stage).filter(p => p !== this.me)
      await this.hooks.fetchStageState?.(stage, peers, this.abort.signal)
      if (!this.running) return
      this.state_ = 'serving'
      await this.publishNow().catch(() => {})
      this.log.info('serving stage', { stage, reason })
      this.emit({ stage, reason })
    } catch (err) {
      if (this.running) this.log.warn('fetching stage state failed; retrying', { error: new StageMoveError(undefined, stage, { cause: err }).message })
    } finally {
      this.busy = false
    }
  }

  private emit (a: StageAssignment): void {
    for (const l of this.listeners) {
      try {
        l(a)
      } catch (err) {
        this.log.warn('assignment listener threw', { error: (err as Error).message })
      }
    }
  }

  /** Score the topic so that each REJECTed heartbeat costs its forwarder (P4, invalid deliveries). */
  private configureScoring (): void {
    const topics = this.pubsub.score?.params?.topics
    if (topics == null) {
      this.log.warn('gossipsub exposes no peer score; invalid heartbeats will not lower scores')
      return
    }
    topics[this.topic] = createTopicScoreParams({
      topicWeight: 1,
      // heartbeats are sparse and mesh quality matters little here: score only invalid deliveries
      timeInMeshWeight: 0,
      firstMessageDeliveriesWeight: 0,
      meshMessageDeliveriesWeight: 0,
      meshFailurePenaltyWeight: 0,
      invalidMessageDeliveriesWeight: this.o.invalidMessageWeight,
      // the count halves in about 11 minutes (decay applies every decayInterval, 1 s by default)
      invalidMessageDeliveriesDecay: 0.999
    })
  }
}

function toInfo (h: Heartbeat): PeerStageInfo {
  return { peerId: h.peer, stage: h.stage, throughput: h.tput, queueLength: h.queue, state: h.state, version: h.ver, time: h.time }
}

/** Routing preference: throughput discounted by the queue it already has. */
function score (h: Heartbeat): number {
  return h.tput / (1 + h.queue)
}

function round (x: number): number {
  return Math.round(x * 1000) / 1000
}

const silent: Logger = {
  trace () {}, debug () {}, info () {}, warn () {}, error () {}, forComponent () { return silent }
}
