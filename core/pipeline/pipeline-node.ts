// A pipeline node: one stage of a run, assembled from parts that each do one job and none of which
// imports this file back:
//
//   stage-worker.ts     the stage's compute (forward, backward, optimizer step) behind one lock
//   stage-server.ts     the stage role's inbound side (stage >= 1): validate, compute, reply
//   dispatch.ts         the outbound hop: route, send, await the reply, retry per RetryPolicy
//   data-role.ts        the data role (stage 0): sample microbatches, step, evaluate
//   run-end.ts          when the run is over for this node, read from the membership view
//   pipeline-metrics.ts counters and curves; status() builds the one TrainingStatus from them
//   hop-commits.ts      signed commitments on every training hop, what was sent (for reveal) and received
//   stage-averaging.ts  averaging rounds with the stage's other nodes
//   rendezvous.ts       meeting the run's other nodes through the DHT
//
// The node wires them, owns their lifecycle (start/stop), and answers status() and checkpoint().
// Stage peers come from the run's one membership view (stage-peers.ts says who reads what).
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import type { GossipSub } from '@libp2p/gossipsub'
import type { DependencyContainer } from 'tsyringe'
import type { ComputeBackend } from '../contracts/backend.ts'
import type { Logger } from '../contracts/logger.ts'
import type { Role } from '../contracts/role.ts'
import { ConfigError } from '../errors.ts'
import { silentLogger } from '../logger.ts'
import type { MetricsRegistry } from '../metrics/registry.ts'
import { PeerJudge } from '../peer-judge.ts'
import { validateModelConfig, type ModelConfig } from '../model/config.ts'
import type { LrSchedule } from '../model/lr-schedule.ts'
import { keptSetsThatFit } from '../model/memory-estimate.ts'
import { Stage } from '../model/stage.ts'
import { stageLayouts, type StageLayout } from '../model/stage-split.ts'
import { runId as manifestRunId, type RunManifest } from '../run/manifest.ts'
import { boundaryCodecs, type BoundaryCodecs } from '../codecs/tensor-codecs.ts'
import { saveStageCheckpoint } from './checkpoint.ts'
import { DataRole, type PipelineData } from './data-role.ts'
import type { Membership } from '../contracts/membership.ts'
import { createMembership, pinnedPlacement, type MembershipService } from '../membership/index.ts'
import { averagingPartners, peersPerStage, runEndView } from './stage-peers.ts'
import { Dispatcher, retryPolicy, type RetryPolicy } from './dispatch.ts'
import { HopCommitter, HopStore, ParamsWitness, ReceiptStore } from './hop-commits.ts'
import type { Adversary } from './adversary.ts'
import type { HopRecordSource } from '../verify/hop-records.ts'
import type { HopCommitment } from '../verify/commitment.ts'
import { PipelineStoppedError } from './errors.ts'
import { PipelineMetrics } from './pipeline-metrics.ts'
import { profiledCodecs } from './pipeline-profile.ts'
import { boundsFor, microbatchIdFactory, type MicrobatchMeta } from './protocol.ts'
import { Router, type PeerSource, type RouterOptions } from './router.ts'
import { RunEnd } from './run-end.ts'
import { RunRendezvous, type RendezvousInit } from './rendezvous.ts'
import { StageAveraging, type StageAveragingOptions } from './stage-averaging.ts'
import { StageServer } from './stage-server.ts'
import { OriginSigner, RouteAuth } from './route-auth.ts'
import { StageWorker, type StepRecordOut } from './stage-worker.ts'
import type { TrainingState, TrainingStatus } from './training-status.ts'

export type { PipelineData } from './data-role.ts'
export type { TrainingStatus } from './training-status.ts'

export interface PipelineNodeInit {
  readonly libp2p: Libp2p
  readonly backend: ComputeBackend
  readonly manifest: RunManifest
  /** This node's stage (a pin, or the scheduler's assignment: core/runtime/stage-host.ts). */
  readonly stage: number
  /** Stage 0: where microbatches come from; with it, stage 0 runs the data role. */
  readonly data?: PipelineData
  /** Microbatches per optimizer step (the origin's M). Default 1. */
  readonly microbatches?: number
  /** Most microbatches this stage-0 node keeps in flight. 1 = synchronous. Default 4. */
  readonly maxInflight?: number
  /** Memory budget (bytes): a non-last stage keeps up to maxInflight microbatches' activations, as many as it holds. */
  readonly maxMemory?: number
  /** Held-out batches of the final eval (stage 0). Default 8; 0 = none. */
  readonly evalBatches?: number
  /** Eval every this many steps as well (0 = final only). */
  readonly evalEvery?: number
  /**
   * The run's membership view (the node's, Tokens.Membership). Without it, a node with gossipsub
   * runs one of its own with this stage pinned (heartbeatMs); a node without gossipsub needs `source`.
   */
  readonly membership?: Membership
  /** Peers to route to instead of the membership's (tests without gossip: no run end, no averaging). */
  readonly source?: PeerSource
  /** Stage 0: the swarm step to continue from (a state fetched from stage peers). Default 0. */
  readonly startStep?: number
  /** Plugin codecs, for manifests that name a codec other than `none`. */
  readonly container?: DependencyContainer
  readonly codecs?: BoundaryCodecs
  readonly router?: RouterOptions
  /** Attempts per hop and how long to wait for a peer (dispatch.ts); defaults DEFAULT_RETRY_POLICY. */
  readonly retry?: Partial<RetryPolicy>
  /** How long an inbound stream may take to deliver its request (ms). Default 30000. */
  readonly requestTimeoutMs?: number
  /** Heartbeat period of a membership of its own (ms). Default 1000. */
  readonly heartbeatMs?: number
  /** After the run, wait this long at most for the other nodes to report done (ms). Default 15000. */
  readonly lingerMs?: number
  /** Initial parameters (e.g. a stage checkpoint). */
  readonly params?: ReadonlyMap<string, Float32Array>
  /**
   * The node's identity key: with it, every training hop this node sends carries its signed
   * commitment and every hop it receives must carry the sender's (verification); without it, none.
   */
  readonly privateKey?: PrivateKey
  /** Makes this node cheat (verification tests and `bench verify` only: adversary.ts). */
  readonly adversary?: Adversary
  /** The node's judge of peers (one per node); default one of its own. */
  readonly judge?: PeerJudge
  /** The node's metrics registry (counts add up over the stages it serves); default one of its own. */
  readonly metrics?: MetricsRegistry
  readonly log?: Logger
  readonly onStep?: (r: StepRecordOut) => void
  readonly onEval?: (step: number, loss: number) => void
  /** Every hop commitment accepted from a peer, with the hop's tokens (the work ledger). */
  readonly onReceipt?: (c: HopCommitment, tokens: number) => void
  /** Averaging within the stage every manifest.averaging.period steps (stage-averaging.ts); false = off. */
  readonly averaging?: StageAveragingOptions | false
  /** Meeting the run's other nodes through the DHT (rendezvous.ts); false = off. Needs gossipsub and a DHT. */
  readonly rendezvous?: Partial<Omit<RendezvousInit, 'runId' | 'view' | 'stages' | 'reannounce'>> | false
}

export class PipelineNode {
  readonly runId: string
  readonly stage: number
  readonly stages: number
  readonly config: ModelConfig
  readonly layout: StageLayout
  readonly router: Router
  readonly worker: StageWorker
  readonly schedule: LrSchedule
  readonly judge: PeerJudge
  readonly metrics: PipelineMetrics
  /** Resolves when this node's part of the run is over (see docs/pipeline.md, "Ending a run"). */
  readonly finished: Promise<void>
  private readonly me: string
  private readonly log: Logger
  private readonly codecs: BoundaryCodecs
  private readonly membership: Membership | undefined
  /** A membership this node runs itself (none was given): started and stopped with it. */
  private readonly ownMembership: MembershipService | undefined
  private readonly detach: Array<() => void> = []
  private readonly rendezvous: RunRendezvous | undefined
  private readonly source: PeerSource
  private readonly abort = new AbortController()
  private readonly maxInflight: number
  private readonly dispatcher: Dispatcher
  private readonly server: StageServer
  private readonly dataRole: DataRole | undefined
  private readonly runEnd: RunEnd | undefined
  private readonly averaging: StageAveraging | undefined
  private readonly unjudge: () => void
  private readonly hops: { store: HopStore, receipts: ReceiptStore, committer: HopCommitter } | undefined
  private state: TrainingState = 'starting'
  private error: string | undefined
  private finish!: () => void
  private dataLoop: Promise<void> | undefined
  private doneTimer: NodeJS.Timeout | undefined
  private started = false
  private readonly evalAcc = new Map<string, { sum: number, n: number, of: number }>()

  constructor (private readonly init: PipelineNodeInit) {
    const m = init.manifest
    this.runId = manifestRunId(m)
    this.me = init.libp2p.peerId.toString()
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:pipeline')
    this.config = validateModelConfig(m.model)
    this.stages = m.stages.count
    if (m.stages.split != null) throw new ConfigError('uneven stage splits (stages.split) are not supported yet; use null')
    if (!Number.isSafeInteger(init.stage) || init.stage < 0 || init.stage >= this.stages) {
      throw new ConfigError(`stage ${init.stage} is outside [0, ${this.stages - 1}] for a ${this.stages}-stage run`)
    }
    this.stage = init.stage
    this.layout = stageLayouts(this.config, this.stages, m.bottleneck ?? 0)[this.stage]
    const M = init.microbatches ?? 1
    this.maxInflight = init.maxInflight ?? 4
    for (const [name, v] of [['microbatches', M], ['maxInflight', this.maxInflight]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new ConfigError(`${name} must be a positive integer, got ${v}`)
    }
    const retry = retryPolicy(init.retry)
    if (this.stage === 0 && init.data == null) throw new ConfigError('a stage-0 node needs data (it starts the microbatches)')
    this.schedule = { maxLr: m.optimizer.lr, minLr: m.optimizer.lr / 10, warmupSteps: m.optimizer.warmup, totalSteps: m.optimizer.steps }
    this.judge = init.judge ?? new PeerJudge()
    this.metrics = new PipelineMetrics(init.metrics)
    const witness = init.privateKey != null ? new ParamsWitness() : undefined
    if (init.privateKey != null && witness != null) {
      const store = new HopStore(witness)
      const receipts = new ReceiptStore()
      this.hops = { store, receipts, committer: new HopCommitter({ runId: this.runId, stage: this.stage, me: this.me, key: init.privateKey, store, receipts, onReceipt: init.onReceipt }) }
    }
    // the last stage runs forward and backward as one unit: one set; the others one per microbatch in flight
    const keep = this.stage === this.stages - 1 ? 1 : keptSetsThatFit(this.config, this.layout, { batch: m.data.batchSize, seqLen: m.data.seqLen }, this.maxInflight, init.maxMemory)
    const stage = new Stage(init.backend, this.layout, {
      keep,
      seed: m.data.seed,
      params: init.params,
      // inputs reach the stage decoded by the codec adapter, which checked them finite
      inputsChecked: true,
      optimizer: { beta1: m.optimizer.beta1, beta2: m.optimizer.beta2, eps: m.optimizer.eps, weightDecay: m.optimizer.weightDecay, gradClip: m.optimizer.clip }
    })
    this.worker = new StageWorker(stage, {
      schedule: this.schedule,
      auto: this.stage > 0,
      log: init.log,
      witness,
      profile: this.metrics.profile,
      onStep: r => { this.recordStep(r) }
    })
    this.codecs = profiledCodecs(init.codecs ?? boundaryCodecs({ activation: m.codecs.activation, 'activation-grad': m.codecs['activation-grad'] }, init.container), this.metrics.profile)
    const bounds = boundsFor(m, this.stage, stage.boundaryWidth)
    ;({ membership: this.membership, own: this.ownMembership } = this.findMembership())
    const source = init.source ?? this.membership
    if (source == null) throw new ConfigError('no peer source: give `membership` or `source`, or a libp2p node with gossipsub (services.pubsub)')
    this.source = source
    this.rendezvous = this.makeRendezvous()
    this.router = new Router(this.source, init.router)
    // the router bans whom the judge finds at fault in the pipeline (inbound or on a reply)
    this.unjudge = this.judge.onJudgement(j => { if (j.area === 'pipeline' && j.stage != null) this.router.failed(j.peer, j.stage, j.verdict) })
    const nextId = microbatchIdFactory()
    this.dispatcher = new Dispatcher({ libp2p: init.libp2p, runId: this.runId, router: this.router, codecs: this.codecs, metrics: this.metrics, judge: this.judge, retry, committer: this.hops?.committer, log: this.log, wireLog: init.log,
      averagingPeriod: init.averaging === false || m.averaging.period > m.optimizer.steps ? 0 : m.averaging.period })
    // a period beyond the run's last step would never fire: no averager then
    this.averaging = init.averaging === false || m.averaging.period > m.optimizer.steps ? undefined : new StageAveraging({
      ...init.averaging, libp2p: init.libp2p, runId: this.runId, manifest: m, stage: this.stage, worker: this.worker,
      source: this.membership != null ? averagingPartners(this.membership) : this.source,
      startStep: init.startStep, container: init.container, judge: this.judge, log: init.log
    })
    this.server = new StageServer({
      libp2p: init.libp2p, runId: this.runId, me: this.me, stage: this.stage, stages: this.stages, bounds, codecs: this.codecs,
      worker: this.worker, dispatcher: this.dispatcher, metrics: this.metrics, judge: this.judge, committer: this.hops?.committer, adversary: init.adversary,
      routeAuth: new RouteAuth({ runId: this.runId, stage: this.stage, source: this.source, verifyOrigin: init.privateKey != null }),
      requestTimeoutMs: init.requestTimeoutMs ?? 30_000, signal: this.abort.signal, log: this.log, wireLog: init.log,
      onTrainStep: step => { this.averaging?.observe(step) },
      onEval: (meta, loss) => { this.recordEval(meta, loss) }
    })
    this.dataRole = this.stage !== 0 ? undefined : new DataRole({
      me: this.me, manifest: m, stages: this.stages, width: bounds.width, data: init.data as PipelineData, worker: this.worker,
      dispatcher: this.dispatcher, router: this.router, metrics: this.metrics, nextId, microbatches: M, maxInflight: this.maxInflight,
      evalBatches: init.evalBatches ?? 8, evalEvery: init.evalEvery ?? 0, startStep: init.startStep ?? 0, signal: this.abort.signal,
      adversary: init.adversary,
      signer: init.privateKey != null ? new OriginSigner(this.runId, init.privateKey) : undefined,
      setState: s => { this.state = s },
      onEval: (step, loss) => { this.setEval(step, loss) },
      log: this.log
    })
    this.runEnd = this.membership == null ? undefined : new RunEnd({ view: runEndView(this.membership), heartbeatMs: init.heartbeatMs ?? 1000, lingerMs: init.lingerMs ?? 15_000, signal: this.abort.signal, log: this.log })
    this.finished = new Promise(resolve => { this.finish = resolve })
  }

  get isFirst (): boolean { return this.stage === 0 }
  get isLast (): boolean { return this.stage === this.stages - 1 }

  /** The hops this node sent, retained for reveal (undefined without commitments, or when it withholds). */
  hopRecords (): HopRecordSource | undefined {
    return this.init.adversary?.withholds === true ? undefined : this.hops?.store
  }

  /** The commitments this node accepted from its peers (undefined without commitments). */
  receipts (): ReceiptStore | undefined {
    return this.hops?.receipts
  }

  /** The roles this node runs: the stage server, and on stage 0 the data role. */
  roles (): Role[] {
    return this.dataRole != null ? [this.server, this.dataRole] : [this.server]
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.server.start()
    const mb = this.membership
    if (mb != null) {
      this.detach.push(mb.provideRun(() => ({ phase: this.state, step: this.worker.steps, throughput: this.metrics.throughput(), queue: this.queue() })))
      // a data node's step count is the swarm's step: it starts averaging rounds here too
      this.detach.push(mb.onMember(member => { if (member.stage === 0) this.averaging?.observe(member.step) }))
      if (this.ownMembership != null) {
        this.detach.push(mb.providePlacement(pinnedPlacement(this.stage)))
        this.ownMembership.start()
      } else {
        void mb.publish()
      }
    }
    this.rendezvous?.start()
    await this.averaging?.start()
    this.state = this.isFirst ? 'waiting-peers' : 'training'
    this.log.info('pipeline node started', { runId: this.runId, stage: this.stage, stages: this.stages, blocks: `${this.layout.range.firstBlock}..${this.layout.range.endBlock - 1}` })
    if (this.dataRole != null) {
      this.dataLoop = this.runData(this.dataRole)
    } else if (this.runEnd != null) {
      this.doneTimer = setInterval(() => { this.checkDownstreamDone() }, 250)
    }
  }

  async stop (): Promise<void> {
    if (this.abort.signal.aborted) return
    this.abort.abort(new PipelineStoppedError())
    clearInterval(this.doneTimer)
    await this.server.stop()
    await this.dataLoop
    await this.averaging?.stop()
    await this.rendezvous?.stop()
    for (const d of this.detach.splice(0)) d()
    this.ownMembership?.stop()
    this.unjudge()
    // wait for the stage to be idle before its memory goes
    await this.worker.exclusive(async () => {})
    this.worker.stage.dispose()
    this.finish()
  }

  status (): TrainingStatus {
    return {
      runId: this.runId,
      peerId: this.me,
      stage: this.stage,
      stages: this.stages,
      state: this.state,
      roles: this.roles().map(r => r.name),
      step: this.worker.steps,
      steps: this.init.manifest.optimizer.steps,
      ...this.metrics.snapshot(),
      peersPerStage: this.peersPerStage(),
      throughput: this.metrics.throughput(),
      maxInflight: this.maxInflight,
      queue: this.queue(),
      penalties: this.judge.penalties(),
      codecs: { activation: this.codecs.name('activation'), 'activation-grad': this.codecs.name('activation-grad') },
      bottleneck: this.layout.bottleneck > 0 ? this.layout.bottleneck : null,
      averaging: this.averaging?.status() ?? null,
      swarm: this.rendezvous?.status() ?? null,
      profile: this.metrics.profile.snapshot(),
      ...(this.error != null ? { error: this.error } : {})
    }
  }

  /** Writes this stage's checkpoint into `dir` between microbatches; returns the model file path. */
  async checkpoint (dir: string, info: Record<string, unknown> = {}): Promise<string> {
    return await this.worker.exclusive(async () => await saveStageCheckpoint(dir, this.worker.stage, {
      config: this.config,
      stages: this.stages,
      bottleneck: this.layout.bottleneck,
      step: this.worker.steps,
      train: { runId: this.runId, tokens: this.metrics.snapshot().tokens, manifest: this.init.manifest },
      info: { runId: this.runId, tokenizer: this.init.manifest.data.tokenizer, ...info }
    }))
  }

  // ---- wiring ------------------------------------------------------------------------------------

  private findMembership (): { membership: Membership | undefined, own: MembershipService | undefined } {
    const init = this.init
    if (init.membership != null) return { membership: init.membership, own: undefined }
    const services = (init.libp2p as unknown as { services?: { pubsub?: GossipSub } }).services
    if (services?.pubsub == null) return { membership: undefined, own: undefined }
    const intervalMs = init.heartbeatMs ?? 1000
    const own = createMembership(init.libp2p as never, { runId: this.runId, stages: this.stages, intervalMs, ttlMs: 3 * intervalMs + 1000, log: init.log })
    return { membership: own, own }
  }

  private makeRendezvous (): RunRendezvous | undefined {
    const mb = this.membership
    const hasDht = (this.init.libp2p as unknown as { services?: { dht?: unknown } }).services?.dht != null
    if (mb == null || !hasDht || this.init.rendezvous === false) return undefined
    return new RunRendezvous(this.init.libp2p, {
      ...this.init.rendezvous,
      runId: this.runId,
      stages: this.stages,
      log: this.init.log,
      reannounce: () => { void mb.publish() },
      view: () => {
        // whom this node knows: the others, per stage
        const stagePeers = peersPerStage(mb, this.stages)
        return { peers: Object.values(stagePeers).reduce((a, b) => a + b, 0), stagePeers }
      }
    }, this.stage)
  }

  // ---- the data role's loop and the end of the run -------------------------------------------------

  private async runData (role: DataRole): Promise<void> {
    try {
      await role.run()
      if (this.abort.signal.aborted) return
      this.state = 'done'
      this.log.info('run done', { steps: this.worker.steps, lossLast: this.metrics.lossLast, evalLoss: this.metrics.evalLoss })
      await this.runEnd?.linger()
    } catch (err) {
      if (this.abort.signal.aborted) return
      this.state = 'failed'
      this.error = (err as Error).message
      this.log.error('training failed', { error: (err as Error).stack ?? String(err) })
      void this.membership?.publish()
    }
    this.finish()
  }

  private checkDownstreamDone (): void {
    if (this.state !== 'training' || this.runEnd == null || !this.runEnd.downstreamDone(this.server.inFlight)) return
    clearInterval(this.doneTimer)
    this.state = 'done'
    const runEnd = this.runEnd
    void (async () => {
      if (this.worker.pending > 0) await this.worker.flushPending()
      this.log.info('run done', { steps: this.worker.steps, lossLast: this.metrics.lossLast, evalLoss: this.metrics.evalLoss })
      await runEnd.linger()
      this.finish()
    })().catch(err => { this.log.error('finishing failed', { error: (err as Error).message }); this.finish() })
  }

  // ---- bookkeeping ---------------------------------------------------------------------------------

  private queue (): number {
    return this.server.inFlight + this.dispatcher.inFlight
  }

  private recordStep (r: StepRecordOut): void {
    this.metrics.stepped(r.step, r.loss, r.lr)
    this.averaging?.stepped(r.step, r.microbatches * this.init.manifest.data.batchSize)
    this.log.debug('optimizer step', { step: r.step, loss: r.loss, lr: r.lr, microbatches: r.microbatches, gradNorm: r.gradNorm, applied: r.applied })
    this.init.onStep?.(r)
  }

  /** The last stage's share of an eval pass: the pass's loss once every batch of it came through. */
  private recordEval (meta: MicrobatchMeta, loss: number): void {
    const key = `${meta.origin}:${meta.step}`
    const acc = this.evalAcc.get(key) ?? { sum: 0, n: 0, of: meta.evalCount as number }
    acc.sum += loss
    acc.n++
    this.evalAcc.set(key, acc)
    if (acc.n >= acc.of) {
      this.evalAcc.delete(key)
      this.setEval(meta.step, acc.sum / acc.n)
    }
  }

  private setEval (step: number, loss: number): void {
    this.metrics.evaluated(step, loss)
    this.log.info('eval', { step, loss })
    this.init.onEval?.(step, loss)
  }

  private peersPerStage (): Record<string, number> {
    if (this.membership != null) return peersPerStage(this.membership, this.stages, this.stage)
    const out: Record<string, number> = {}
    for (let s = 0; s < this.stages; s++) out[String(s)] = (s === this.stage ? 1 : 0) + this.source.peersForStage(s).length
    return out
  }
}
