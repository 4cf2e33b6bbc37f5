// The networked scheduler: reads the node's membership view (Tokens.Membership, the run's one
// gossip view of the swarm), writes this node's placement into it, and applies the pure rule
// (rule.ts) to it: pick a stage when joining, move when the rule elects this node at an epoch. Data
// enters through the Membership (its members and onMember), and leaves as this node's placement
// fields (published with every heartbeat) and assignment events (`onAssignment`).
//
// Life of a node:   joining(-1) --listen--> joining(s) --fetchStageState--> serving(s)
//                   serving(a) --elected--> leaving(a, to b) --beforeMove--> joining(b) --fetch--> serving(b)
//                   pinned (--stage N): serving(N) from the start, never moves
//                   stop(): leaving (no target), then silent; others drop it at once
import type { Logger } from '../../core/contracts/logger.ts'
import type { Member, Membership, MembershipStats, PlacementFields } from '../../core/contracts/membership.ts'
import type { NodeState, PeerStageInfo, Scheduler, StageAssignment, SwarmView } from '../../core/contracts/scheduler.ts'
import { SchedulerStateError, StageMoveError } from './errors.ts'
import {
  assignJoiners, DEFAULT_COOLDOWN_MS, DEFAULT_HYSTERESIS, electedMove, epochOf, publishedThroughput, stageCosts, stageThroughputs, type RuleConfig
} from './rule.ts'

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
  /** How often the scheduler looks at the view (join, epoch checks, retries) (ms). Default 5000. */
  readonly heartbeatMs?: number
  /** Rebalancing period (ms). Default 60000. */
  readonly epochMs?: number
  /** A node checks the plan at a random delay in [0, jitter) after an epoch starts (ms). Default min(epoch/4, 10000). */
  readonly epochJitterMs?: number
  /** A joining node listens at least this long, then until it has heard every subscribed neighbour, at most 4x as long (ms). Default 2 x heartbeat + 500. */
  readonly joinListenMs?: number
  readonly hysteresis?: number
  readonly cooldownMs?: number
  readonly maxMovesPerEpoch?: number
  /** --max-memory (bytes): gossiped; the rule gives this node only stages whose stageMemory fits it. */
  readonly maxMemory?: number
  /** Estimated memory (bytes) of each stage (core/runtime/stage-memory.ts), the same on every node of the run. */
  readonly stageMemory?: readonly number[]
  /** True while this node is reachable only through relays (core/node/nat-status.ts): it publishes its throughput x RELAYED_CAPACITY_FACTOR. */
  readonly relayedOnly?: () => boolean
  readonly log?: Logger
  /** Clock (unix ms). Default Date.now. */
  readonly now?: () => number
  /** Random numbers in [0, 1) for the epoch jitter. Default Math.random. */
  readonly rng?: () => number
}

/** The scheduler's state, with the membership's heartbeat counters (published, accepted, refused by code). */
export interface SchedulerStats extends MembershipStats {
  readonly state: NodeState
  readonly stage: number | undefined
  readonly pinned: boolean
  readonly moves: number
}

type Listener = (a: StageAssignment) => void

export class GossipScheduler implements Scheduler {
  readonly me: string
  private readonly cfg: RuleConfig
  private readonly costs: number[]
  private readonly log: Logger
  private readonly now: () => number
  private readonly rng: () => number
  private readonly o: Required<Pick<GossipSchedulerInit, 'heartbeatMs' | 'epochMs' | 'epochJitterMs' | 'joinListenMs'>>
  private readonly listeners = new Set<Listener>()
  private hooks: MoveHooks = {}
  private load: (() => LoadReport) | undefined
  private readonly abort = new AbortController()

  private stage = -1
  private to: number | undefined
  private state_: NodeState = 'joining'
  private since = 0
  private startedAt = 0
  private running = false
  private stopped = false
  private stopping: Promise<void> | undefined
  private busy = false
  private checkedEpoch = -1
  private checkTimer: NodeJS.Timeout | undefined
  private timer: NodeJS.Timeout | undefined
  private moves = 0
  private warnedFit = false
  /** Detaches this scheduler's provider and listener from the membership. */
  private detach: Array<() => void> = []

  constructor (private readonly membership: Membership, private readonly init: GossipSchedulerInit) {
    if (!Number.isSafeInteger(init.stages) || init.stages < 1) throw new RangeError(`stages must be a positive integer, got ${init.stages}`)
    if (init.pinnedStage !== undefined && !(Number.isSafeInteger(init.pinnedStage) && init.pinnedStage >= 0 && init.pinnedStage < init.stages)) {
      throw new RangeError(`pinned stage ${init.pinnedStage} is outside [0, ${init.stages - 1}]`)
    }
    if (membership.runId !== init.runId || membership.stages !== init.stages) {
      throw new RangeError(`the membership view is of run ${membership.runId} with ${membership.stages} stages, not run ${init.runId} with ${init.stages}`)
    }
    this.me = membership.me
    this.cfg = {
      stages: init.stages,
      stageCosts: init.stageCosts,
      hysteresis: init.hysteresis ?? DEFAULT_HYSTERESIS,
      cooldownMs: init.cooldownMs ?? DEFAULT_COOLDOWN_MS,
      maxMovesPerEpoch: init.maxMovesPerEpoch,
      stageMemory: init.stageMemory
    }
    this.costs = stageCosts(this.cfg)
    const heartbeatMs = init.heartbeatMs ?? 5000
    const epochMs = init.epochMs ?? 60_000
    this.o = {
      heartbeatMs,
      epochMs,
      epochJitterMs: init.epochJitterMs ?? Math.min(epochMs / 4, 10_000),
      joinListenMs: init.joinListenMs ?? 2 * heartbeatMs + 500
    }
    this.log = (init.log ?? silent).forComponent('layerswarm:scheduler')
    this.now = init.now ?? Date.now
    this.rng = init.rng ?? Math.random
  }

  async start (): Promise<void> {
    if (this.running || this.stopped) throw new SchedulerStateError('start() is allowed once')
    this.running = true
    const now = this.now()
    this.startedAt = now
    this.since = now
    if (this.init.pinnedStage !== undefined) {
      this.stage = this.init.pinnedStage
      this.state_ = 'serving'
    }
    this.detach.push(this.membership.providePlacement(() => this.placement()))
    // a stage left empty is filled without waiting for the next epoch
    this.detach.push(this.membership.onMember(m => { if (m.state === 'leaving' && this.state_ === 'serving') this.scheduleCheck(false) }))
    if (this.pinned) this.emit({ stage: this.stage, reason: 'pinned' })
    this.log.info('scheduler started', { run: this.init.runId, stages: this.init.stages, pinned: this.init.pinnedStage ?? null })
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
    await this.publishNow()
    // the membership keeps `leaving` as this node's last placement
    for (const d of this.detach.splice(0)) d()
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
    return peer === this.me ? this.placement().tput : this.membership.member(peer)?.tput
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
    return { ...this.membership.stats(), state: this.state_, stage: this.currentStage(), pinned: this.pinned, moves: this.moves }
  }

  /** Every live member, this node's own (fresh) record included. */
  heartbeats (): Member[] {
    return [...this.membership.members(), this.membership.self()]
  }

  /** This node's placement as of now (the membership publishes it with every heartbeat). */
  private placement (): PlacementFields {
    const load = this.load?.()
    const estimate = this.init.capacity ?? 0
    const tput = load != null && load.throughput > 0
      ? load.throughput
      : this.stage >= 0 ? estimate / this.costs[this.stage] : estimate
    return {
      stage: this.stage,
      ...(this.state_ === 'leaving' && this.to !== undefined ? { to: this.to } : {}),
      state: this.state_,
      pinned: this.pinned,
      since: this.since,
      tput: Number.isFinite(tput) && tput >= 0 ? publishedThroughput(tput, this.init.relayedOnly?.() === true) : 0,
      ...(load != null ? { queue: load.queueLength } : {}),
      ...(this.init.maxMemory !== undefined ? { mem: this.init.maxMemory } : {})
    }
  }

  private publish (): void {
    void this.membership.publish()
  }

  /** Publishes at once (on every state change: peers count this node by its newest state). */
  private async publishNow (): Promise<void> {
    await this.membership.publish()
  }

  private tick (): void {
    if (!this.running) return
    if (this.busy) return
    const now = this.now()
    if (this.state_ === 'joining' && this.stage === -1) {
      // a joiner waits until it has heard every subscribed neighbour (still connecting ones too);
      // after 4 listen periods it decides with what it has (a first node hears no one)
      const listened = now - this.startedAt
      if (listened >= 4 * this.o.joinListenMs || (listened >= this.o.joinListenMs && this.heardNeighbours())) void this.join()
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
  private heardNeighbours (): boolean {
    const live = new Set(this.membership.members().map(m => m.peer))
    return live.size > 0 && this.membership.neighbours().every(p => live.has(p))
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
    if (stage === undefined) {
      if (!this.warnedFit) this.log.warn('no stage fits this node\'s memory budget; staying unassigned', { maxMemory: this.init.maxMemory, stageMemory: this.init.stageMemory })
      this.warnedFit = true
      return
    }
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
      await this.publishNow()
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
      this.moves++
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
      await this.publishNow()
      const peers = this.peersForStage(stage).filter(p => p !== this.me)
      await this.hooks.fetchStageState?.(stage, peers, this.abort.signal)
      if (!this.running) return
      this.state_ = 'serving'
      await this.publishNow()
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
}

function toInfo (m: Member): PeerStageInfo {
  return { peerId: m.peer, stage: m.stage, throughput: m.tput, queueLength: m.queue, state: m.state, version: m.version, time: m.time }
}

/** Routing preference: throughput discounted by the queue it already has. */
function score (m: Member): number {
  return m.tput / (1 + m.queue)
}

function round (x: number): number {
  return Math.round(x * 1000) / 1000
}

const silent: Logger = {
  trace () {}, debug () {}, info () {}, warn () {}, error () {}, forComponent () { return silent }
}
