// The stage a training node serves, over its life: which stage (a pin, or the scheduler's
// assignment), the PipelineNode serving it, and moves between stages.
//
//   assignment   pinned (--stage N): serve N for life (a pinned late joiner fetches its stage's state
//                first, as a move does: serveStage). Otherwise Tokens.Scheduler decides: the host
//                fills its move hooks and serves what `onAssignment` / `currentStage()` say.
//   join/move    scheduler: joining(s) -> fetchStageState(s, peers) -> serving(s) -> onAssignment.
//                fetchStageState downloads stage s's weights over state sync (stage-state.ts: the
//                agreed snapshot a majority of its serving peers vouch for, else one peer's live
//                state that fits and is finite), or takes the seeded init when no peer serves s,
//                then starts the PipelineNode, so it handles microbatches before the scheduler
//                announces `serving`.
//   leaving      beforeMove(from, to): the scheduler has already announced `leaving` (peers stop
//                routing here); a stage >= 1 finishes the microbatches it holds (at most drainMs),
//                stage 0 drops its own in-flight ones (it is their origin: nothing else waits on
//                them); then the PipelineNode stops. A node whose run is over refuses to move.
//   serving      every node runs a state-sync server for the stage it serves, so later joiners
//                and movers can fetch from it: its live state, and the parameters of its last
//                averaging round in which every shard arrived (the agreed snapshot).
//   load         microbatches per busy second of the serving stage (BusyRate), reported through
//                `setLoadSource`.
// Status: the serving pipeline's TrainingStatus plus `assignment` and `moves`; traffic and
// microbatch counters add up over every stage this node served (every pipeline counts into the
// node's one metrics registry).
import type { ComputeBackend } from '../contracts/backend.ts'
import type { Logger } from '../contracts/logger.ts'
import type { Scheduler, StageAssignment } from '../contracts/scheduler.ts'
import { ConfigError, LayerswarmError } from '../errors.ts'
import { serializeState, StateServer, type AgreedSnapshot, type RobustAveragingOptions, type StateSnapshot } from '../averaging/index.ts'
import { loadTrainData } from '../data/index.ts'
import type { LayerswarmNode } from '../node/create-node.ts'
import { PipelineNode, type PipelineData } from '../pipeline/pipeline-node.ts'
import type { AgreedRound } from '../pipeline/stage-averaging.ts'
import { PipelineMetrics } from '../pipeline/pipeline-metrics.ts'
import type { RetryPolicy } from '../pipeline/dispatch.ts'
import type { Adversary } from '../pipeline/adversary.ts'
import type { HostStatus } from '../pipeline/training-status.ts'
import type { HopCommitment } from '../verify/commitment.ts'
import { MetricsRegistry } from '../metrics/registry.ts'
import { PeerJudge } from '../peer-judge.ts'
import { Tokens } from '../contracts/tokens.ts'
import { runId as manifestRunId, type RunManifest } from '../run/manifest.ts'
import { silentLogger } from '../logger.ts'
import { pause, withDeadline } from '../timers.ts'
import { MoveAfterRunError, StageStateMismatchError } from './runtime-errors.ts'
import { BusyRate, cachedLoad, isSteerable } from './scheduling.ts'
import type { Member, Membership } from '../contracts/membership.ts'
import { createMembership, pinnedPlacement, type MembershipService } from '../membership/index.ts'
import { agreedSnapshot, fetchStageState, joinState, type FetchedState } from './stage-state.ts'

export interface StageHostInit {
  readonly node: Pick<LayerswarmNode, 'libp2p' | 'peerId' | 'container' | 'rebootstrap'> & Partial<Pick<LayerswarmNode, 'privateKey'>>
  readonly backend: ComputeBackend
  readonly manifest: RunManifest
  /** Serve this stage for life; without it the scheduler assigns the stage. */
  readonly pin?: number
  /** Assigns stages (and is told this node's load); required without a pin. */
  readonly scheduler?: Scheduler
  /**
   * The run's membership view: routing, averaging and the end of the run read it. Default the
   * node's (Tokens.Membership, which createNode makes when its runtime names the run); a node that
   * has none (given the run only now: the API, tests) gets one for the host's life.
   */
  readonly membership?: Membership
  /** PipelineNode settings that do not change with the stage. */
  readonly pipeline: {
    readonly microbatches: number
    readonly maxInflight: number
    readonly maxMemory?: number // the node's budget: how many microbatches' activations a stage keeps
    readonly evalBatches: number
    readonly evalEvery: number
    readonly retry?: Partial<RetryPolicy>
    /** A cheating node (verification tests and bench only). */
    readonly adversary?: Adversary
    /** Averaging's combination rule; default robust (`{ enabled: false }`: the plain mean, bench verify's unverified baseline). */
    readonly robust?: RobustAveragingOptions
  }
  /** Every hop commitment the serving pipeline accepted from a peer (the work ledger). */
  readonly onReceipt?: (c: HopCommitment, tokens: number) => void
  /** Corpus path (stage 0 reads it); default the manifest's, or the shipped corpus. */
  readonly data?: string
  /** Node id of the batch sampler key; default the peer id. */
  readonly sampleNodeId?: string
  /** A pinned node listens this long at most for its stage's peers before it starts (ms). Default 1500. */
  readonly joinListenMs?: number
  /** How long a leaving stage >= 1 waits for its in-flight microbatches (ms). Default 5000. */
  readonly drainMs?: number
  readonly log?: Logger
}

export type { HostStatus } from '../pipeline/training-status.ts'

/** The status of a node that serves no stage now (between stages, or a validator): its counters so far. */
export function idleStatus (o: { runId: string, peerId: string, manifest: RunManifest, judge: PeerJudge, metrics?: MetricsRegistry, maxInflight: number }): HostStatus {
  return {
    runId: o.runId,
    peerId: o.peerId,
    stage: null,
    stages: o.manifest.stages.count,
    state: 'starting',
    roles: [],
    step: 0,
    steps: o.manifest.optimizer.steps,
    ...new PipelineMetrics(o.metrics).snapshot(),
    peersPerStage: {},
    throughput: 0,
    maxInflight: o.maxInflight,
    queue: 0,
    penalties: o.judge.penalties(),
    codecs: null,
    bottleneck: null,
    averaging: null,
    swarm: null,
    assignment: null,
    moves: 0
  }
}

/** A stage's snapshot is kept this long, so the chunks a joiner asks for after the manifest still match it. */
const SNAPSHOT_TTL_MS = 5000

export class StageHost {
  readonly runId: string
  /** Resolves when the run is over for this node (its pipeline reached done or failed), or on stop. */
  readonly done: Promise<void>
  private readonly log: Logger
  private readonly me: string
  private current: PipelineNode | undefined
  private assignment: StageAssignment | null = null
  private moves = 0
  private moving: { from: number, to: number } | undefined
  private stopped = false
  /** Why the last attempt to serve a stage failed (cleared by a success). */
  private error: string | undefined
  private finish!: () => void
  private lane: Promise<unknown> = Promise.resolve()
  private readonly judge: PeerJudge
  private readonly metrics: MetricsRegistry
  private readonly membership: Membership
  private readonly ownMembership: MembershipService | undefined
  /** Swarm steps behind the serving stage's weights (from its optimizer step records). */
  private swarmStep = 0
  private data: Promise<PipelineData> | undefined
  private snapshotCache: { pipeline: PipelineNode, at: number, snap: Promise<StateSnapshot> } | undefined
  /** The serving pipeline's last agreed round (StageAveraging's onAgreed), and its snapshot once asked for. */
  private agreed: { pipeline: PipelineNode, round: AgreedRound, snap?: Promise<AgreedSnapshot> } | undefined
  private readonly rate = new BusyRate()
  private readonly stateServer: StateServer
  private unsubscribe: (() => void) | undefined
  private readonly pipelineListeners = new Set<() => void>()
  /** Aborted at stop(): a state fetch in progress must not hold up the node's shutdown. */
  private readonly abort = new AbortController()

  constructor (private readonly init: StageHostInit) {
    this.runId = manifestRunId(init.manifest)
    this.me = init.node.peerId
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:runtime:stage')
    if (init.pin == null && init.scheduler == null) throw new ConfigError('without --stage a scheduler assigns the stage: load the scheduler plugin')
    this.done = new Promise(resolve => { this.finish = resolve })
    const c = init.node.container
    this.judge = c.isRegistered(Tokens.PeerJudge, true) ? c.resolve<PeerJudge>(Tokens.PeerJudge) : new PeerJudge()
    this.metrics = c.isRegistered(Tokens.Metrics, true) ? c.resolve<MetricsRegistry>(Tokens.Metrics) : new MetricsRegistry()
    if (init.membership != null) {
      this.membership = init.membership
    } else if (c.isRegistered(Tokens.Membership, true)) {
      this.membership = c.resolve<Membership>(Tokens.Membership)
    } else {
      this.ownMembership = createMembership(init.node.libp2p as never, { runId: this.runId, stages: init.manifest.stages.count, log: init.log })
      this.membership = this.ownMembership
    }
    if (this.membership.runId !== this.runId) throw new ConfigError(`the node's membership view is of run ${this.membership.runId}, this host trains run ${this.runId}`)
    this.stateServer = new StateServer(init.node.libp2p, { runId: this.runId, snapshot: async stage => await this.snapshot(stage), agreed: async stage => await this.agreedSnapshot(stage), log: init.log, admit: async (p, s) => { await this.judge.admit(p, s, 'state-sync') } })
  }

  /** The pipeline serving now (undefined before the first assignment and during a move). */
  get pipeline (): PipelineNode | undefined {
    return this.current
  }

  /** Calls `listener` whenever the serving pipeline (and so the running roles) changes; returns the unsubscribe function. */
  onPipelineChanged (listener: () => void): () => void {
    this.pipelineListeners.add(listener)
    return () => { this.pipelineListeners.delete(listener) }
  }

  private setCurrent (p: PipelineNode | undefined): void {
    this.current = p
    for (const l of this.pipelineListeners) l()
  }

  async start (): Promise<void> {
    this.ownMembership?.start()
    await this.stateServer.start()
    const s = this.init.scheduler
    if (s == null) {
      // without a scheduler the pin is this node's placement
      const pin = this.init.pin as number
      this.unsubscribe = this.membership.providePlacement(pinnedPlacement(pin))
      this.assignment = { stage: pin, reason: 'pinned' }
      await this.serveStage(pin, true)
      return
    }
    if (isSteerable(s)) {
      s.setMoveHooks({
        beforeMove: async (from, to, signal) => { await this.serialized(async () => { await this.leave(from, to, signal) }) },
        fetchStageState: async (stage, peers, signal) => { await this.serialized(async () => { await withDeadline(undefined, [signal, this.abort.signal], async s => { await this.enter(stage, peers, s) }) }) }
      })
      s.setLoadSource(cachedLoad(() => this.load()))
    }
    this.unsubscribe = s.onAssignment(a => { void this.assigned(a).catch(() => {}) })
    // a pinned scheduler assigns during its start, before this listener existed; a pinned stage that
    // cannot be served fails the start, as without a scheduler
    const stage = s.currentStage()
    if (stage !== undefined && this.assignment == null) await this.assigned({ stage, reason: stage === this.init.pin ? 'pinned' : 'join' })
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.abort.abort()
    this.unsubscribe?.()
    await this.serialized(async () => {
      const p = this.current
      this.setCurrent(undefined)
      await p?.stop()
    })
    await this.stateServer.stop()
    this.ownMembership?.stop()
    this.finish()
  }

  status (): HostStatus {
    const p = this.current
    const extra = { assignment: this.assignment, moves: this.moves, ...(this.init.scheduler != null ? { servingPerStage: this.servingPerStage(this.init.scheduler) } : {}) }
    if (p != null) return { ...p.status(), ...extra }
    // between stages (or before the first): the counters so far, nothing serving
    return {
      ...idleStatus({ runId: this.runId, peerId: this.me, manifest: this.init.manifest, judge: this.judge, metrics: this.metrics, maxInflight: this.init.pipeline.maxInflight }),
      stage: this.moving?.to ?? this.assignment?.stage ?? null,
      state: this.error != null ? 'failed' : 'starting',
      ...extra,
      ...(this.error != null ? { error: this.error } : {})
    }
  }

  private servingPerStage (s: Scheduler): number[] {
    const view = s.view()
    const out = new Array<number>(view.stages).fill(0)
    for (const p of view.peers) if (p.state === 'serving' && p.stage >= 0 && p.stage < view.stages) out[p.stage]++
    return out
  }

  // ---- assignment ------------------------------------------------------------------------------

  private async assigned (a: StageAssignment): Promise<void> {
    if (this.assignment != null && this.assignment.stage !== a.stage) this.moves++
    this.assignment = a
    this.log.info('assigned', { stage: a.stage, reason: a.reason, moves: this.moves })
    // hooks normally started the pipeline already; this covers pins and a scheduler without hooks
    await this.serveStage(a.stage, a.stage === this.init.pin)
  }

  /** Serves `stage`. A pinned node whose stage's peers trained (step > 0) takes their state first, as a scheduler move does. */
  private async serveStage (stage: number, pinned: boolean): Promise<void> {
    const donors = pinned && this.current == null && !this.stopped ? await this.trainedPeers(stage) : []
    await this.serialized(async () => {
      if (this.stopped || this.current?.stage === stage) return
      await this.retire()
      const fetched = donors.length > 0 ? await this.fetchState(stage, donors, this.abort.signal) : undefined
      if (this.stopped) return
      await this.serve(stage, fetched)
    })
  }

  /** beforeMove: drain, then stop the old stage's pipeline. */
  private async leave (from: number, to: number, signal: AbortSignal): Promise<void> {
    const p = this.current
    if (p == null) return
    const state = p.status().state
    if (state === 'done' || state === 'failed') throw new MoveAfterRunError(from, to, state)
    this.moving = { from, to }
    if (!p.isFirst) {
      // peers saw `leaving` and route elsewhere; finish what this stage already holds
      const until = Date.now() + (this.init.drainMs ?? 5000)
      while (p.status().queue > 0 && Date.now() < until && !signal.aborted) await pause(100, signal)
    }
    this.log.info('leaving stage', { from, to, queue: p.status().queue })
    await this.retire()
  }

  /** fetchStageState: the stage's state from a serving peer (else the seeded init), then serve it. */
  private async enter (stage: number, peers: readonly string[], signal: AbortSignal): Promise<void> {
    if (this.stopped || this.current?.stage === stage) return
    await this.retire()
    const fetched = await this.fetchState(stage, peers, signal)
    if (this.stopped) return
    await this.serve(stage, fetched)
  }

  /** Peers serving `stage` that took optimizer steps, most first, once the view heard the swarm (joinListenMs): none for a run's first nodes. */
  private async trainedPeers (stage: number): Promise<string[]> {
    const until = Date.now() + (this.init.joinListenMs ?? 1500)
    const of = (): Member[] => this.membership.members().filter(m => m.stage === stage && m.phase !== 'failed')
    while (of().length === 0 && Date.now() < until && !this.abort.signal.aborted) await pause(100, this.abort.signal).catch(() => {})
    return of().filter(m => m.step > 0).sort((a, b) => b.step - a.step).map(m => m.peer)
  }

  private async fetchState (stage: number, peers: readonly string[], signal: AbortSignal): Promise<FetchedState | undefined> {
    return await fetchStageState({ libp2p: this.init.node.libp2p, runId: this.runId, manifest: this.init.manifest, stage, peers, judge: this.judge, signal, log: this.log })
  }

  // ---- the pipeline ------------------------------------------------------------------------

  /** Starts the pipeline of `stage`; a failure shows in `status` (state failed, error) until a later start succeeds. */
  private async serve (stage: number, fetched?: FetchedState): Promise<void> {
    try {
      await this.startPipeline(stage, fetched)
      this.error = undefined
    } catch (err) {
      this.error = (err as Error).message
      this.log.error('cannot serve the stage', { stage, code: (err as LayerswarmError).code, error: this.error })
      throw err
    }
  }

  private async startPipeline (stage: number, fetched?: FetchedState): Promise<void> {
    const m = this.init.manifest
    const o = this.init.pipeline
    const data = stage === 0 ? await this.stageData() : undefined
    this.rate.reset()
    this.swarmStep = fetched?.step ?? 0
    let p: PipelineNode
    try {
      p = new PipelineNode({
        libp2p: this.init.node.libp2p,
        backend: this.init.backend,
        manifest: m,
        stage,
        data,
        microbatches: o.microbatches,
        maxInflight: o.maxInflight, maxMemory: o.maxMemory,
        evalBatches: o.evalBatches,
        evalEvery: o.evalEvery,
        retry: o.retry,
        adversary: o.adversary,
        container: this.init.node.container,
        membership: this.membership,
        params: fetched?.params,
        startStep: fetched?.step,
        judge: this.judge,
        metrics: this.metrics,
        privateKey: this.init.node.privateKey,
        onReceipt: this.init.onReceipt,
        log: this.init.log,
        rendezvous: { rebootstrap: () => { this.init.node.rebootstrap() } },
        onStep: r => { this.swarmStep = Math.max(this.swarmStep, r.step) },
        averaging: { onAgreed: a => { this.recordAgreed(p, a) }, robust: o.robust, faults: o.adversary?.averagingFaults }
      })
    } catch (err) {
      throw fetched != null ? new StageStateMismatchError(stage, fetched.peer, (err as Error).message) : err
    }
    if (fetched != null) {
      try {
        await p.worker.stage.optimizer.importState(fetched.optimizer)
      } catch (err) {
        await p.stop()
        throw new StageStateMismatchError(stage, fetched.peer, (err as Error).message)
      }
    }
    this.setCurrent(p)
    this.moving = undefined
    void p.finished.then(() => {
      // a pipeline stopped for a move or at stop() is no longer current
      const state = p.status().state
      if (p === this.current && (state === 'done' || state === 'failed')) this.finish()
    })
    await p.start()
    this.log.info('serving stage', { stage, from: fetched?.peer ?? 'init', step: this.swarmStep })
  }

  /** Stops the current pipeline (its counters live on in the node's registry). */
  private async retire (): Promise<void> {
    const p = this.current
    if (p == null) return
    this.setCurrent(undefined)
    await p.stop()
  }

  private async stageData (): Promise<PipelineData> {
    this.data ??= (async () => {
      const m = this.init.manifest
      const path = this.init.data ?? (m.data.corpus.startsWith('builtin:') ? undefined : m.data.corpus)
      const nodeId = this.init.sampleNodeId ?? this.me
      // a run that pins prepared data (data.dataId) refuses any other data (DataIdMismatchError)
      const corpus = await loadTrainData({ path, tokenizer: m.data.tokenizer, seed: m.data.seed, nodeId, dataId: m.data.dataId })
      if (corpus.tokenizer.vocabSize > Number(m.model.vocabSize)) {
        throw new ConfigError(`the ${corpus.tokenizer.name} tokenizer has ${corpus.tokenizer.vocabSize} tokens but the model's vocabulary is ${String(m.model.vocabSize)}`)
      }
      this.log.info('data', { path: corpus.path, dataId: corpus.dataId, trainTokens: corpus.trainTokens, heldOutTokens: corpus.heldOutTokens, sampleNodeId: nodeId })
      return corpus.data
    })()
    this.data.catch(() => { this.data = undefined }) // a failed load is tried again at the next assignment
    return await this.data
  }

  private load (): { throughput: number, queueLength: number } {
    const p = this.current
    if (p == null) return { throughput: 0, queueLength: 0 }
    const st = p.status()
    return { throughput: this.rate.update({ done: st.microbatchesDone, busyMs: p.worker.busyMs }, Date.now()), queueLength: st.queue }
  }

  /** State-sync server: this node's state of `stage` while it serves it (weights, AdamW moments, step). */
  private async snapshot (stage: number): Promise<StateSnapshot | undefined> {
    const p = this.current
    if (p == null || p.stage !== stage || this.moving != null || p.status().state === 'failed') return undefined
    const c = this.snapshotCache
    if (c != null && c.pipeline === p && Date.now() - c.at < SNAPSHOT_TTL_MS) return await c.snap
    const snap = p.worker.exclusive(async () => {
      const stageModel = p.worker.stage
      const params = await stageModel.params.download()
      const opt = await stageModel.optimizer.exportState()
      return { version: opt.step, bytes: serializeState({ version: opt.step, step: this.swarmStep, tensors: joinState(params, opt.m, opt.v) }) }
    })
    this.snapshotCache = { pipeline: p, at: Date.now(), snap }
    snap.catch(() => { if (this.snapshotCache?.snap === snap) this.snapshotCache = undefined })
    return await snap
  }

  /** Keeps a copy of the round's result: the vector is the averager's, and the next round replaces it. */
  private recordAgreed (pipeline: PipelineNode, a: AgreedRound): void {
    this.agreed = { pipeline, round: { ...a, group: [...a.group], params: a.params.slice() } }
  }

  /** State-sync server: the agreed snapshot of `stage` while this node serves it (stage-state.ts). */
  private async agreedSnapshot (stage: number): Promise<AgreedSnapshot | undefined> {
    const a = this.agreed
    const p = this.current
    if (a == null || p == null || a.pipeline !== p || p.stage !== stage || this.moving != null) return undefined
    a.snap ??= agreedSnapshot(stage, a.round, p.worker.stage.params.specs)
    return await a.snap
  }

  /** Lifecycle steps run one at a time (hooks and assignment events may overlap). */
  private async serialized<R> (fn: () => Promise<R>): Promise<R> {
    const run = this.lane.then(fn, fn)
    this.lane = run.catch(() => {})
    return await run
  }
}
