// A pipeline node: serves one stage of a run over the pipeline protocol (protocol.ts).
//
//   inbound  (stage >= 1)  handleForward: validate -> forward -> call stage s+1 (or the loss) ->
//                          backward -> reply with the input gradient
//   outbound (stage < S-1) callStage: route (router.ts) -> send -> await the gradient; on failure
//                          ban the peer and retry on another (bounded), else drop the microbatch
//   data role (stage 0)    runData: sample microbatches (seed, node id, step, micro), at most
//                          `maxInflight` in flight, step the optimizer when a step's microbatches
//                          are back, evaluate on held-out batches
//
// Every node steps its own stage (stage-worker.ts). Status for `layerswarm status` comes from
// status(); stage peers come from a PeerSource (the gossip StageDirectory by default).
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import type { GossipSub } from '@libp2p/gossipsub'
import type { DependencyContainer } from 'tsyringe'
import type { ComputeBackend } from '../contracts/backend.ts'
import type { Logger } from '../contracts/logger.ts'
import { AbortError, ConfigError, LayerswarmError } from '../errors.ts'
import { silentLogger } from '../logger.ts'
import { deadline, pause, type Deadline } from '../timers.ts'
import { validateModelConfig, type ModelConfig } from '../model/config.ts'
import type { LrSchedule } from '../model/lr-schedule.ts'
import { Stage } from '../model/stage.ts'
import { stageLayouts, type StageLayout } from '../model/stage-split.ts'
import { runId as manifestRunId, type RunManifest } from '../run/manifest.ts'
import type { Batch } from '../data/index.ts'
import { assertFiniteF32, handleFramed, openFramed, RemoteError, type FramedStream } from '../wire/index.ts'
import { boundaryCodecs, type BoundaryCodecs } from './codecs.ts'
import { saveStageCheckpoint } from './checkpoint.ts'
import { StageDirectory, type TrainingState } from './discovery.ts'
import { isRemoteDrop, MicrobatchDroppedError, pipelineVerdict, PipelineStoppedError } from './errors.ts'
import {
  boundsFor, int32Bytes, microbatchIdFactory, PIPELINE_FORWARD_PROTOCOL, validateActivation, validateEvalReply,
  validateGradReply, validateTargets, type MicrobatchBounds, type MicrobatchMeta, type ReplyMeta
} from './protocol.ts'
import { Router, type PeerSource, type RouterOptions } from './router.ts'
import { StageWorker, type StepRecordOut } from './stage-worker.ts'
import { StageAveraging, type AveragingStatus, type StageAveragingOptions } from './stage-averaging.ts'
import { RunRendezvous, type RendezvousInit, type RendezvousStatus } from './rendezvous.ts'

/** Batches for the data role (core/train's TrainData shape): pure functions of their arguments. */
export interface PipelineData {
  trainBatch(step: number, micro: number, B: number, T: number): Batch | Promise<Batch>
  evalBatch(index: number, B: number, T: number): Batch | Promise<Batch>
  evalBatchCount?(B: number, T: number): number
}

export interface PipelineNodeInit {
  readonly libp2p: Libp2p
  readonly backend: ComputeBackend
  readonly manifest: RunManifest
  /** This node's stage (pinned; the scheduler issue assigns it later). */
  readonly stage: number
  /** Stage 0 only: where microbatches come from. */
  readonly data?: PipelineData
  /** Microbatches per optimizer step (the origin's M). Default 1. */
  readonly microbatches?: number
  /** Most microbatches this stage-0 node keeps in flight. 1 = synchronous. Default 4. */
  readonly maxInflight?: number
  /** Held-out batches of the final eval (stage 0). Default 8; 0 = none. */
  readonly evalBatches?: number
  /** Eval every this many steps as well (0 = final only). */
  readonly evalEvery?: number
  /**
   * Peers per stage; default the gossip StageDirectory (needs libp2p.services.pubsub). A function
   * gets that directory (still run, when gossipsub is there: run end and status use it) and returns
   * the source to route by, e.g. the scheduler's view merged with it.
   */
  readonly source?: PeerSource | ((directory: PeerSource | undefined) => PeerSource)
  /** Stage 0: the swarm step to continue from (a state fetched from stage peers). Default 0. */
  readonly startStep?: number
  /** Plugin codecs, for manifests that name a codec other than `none`. */
  readonly container?: DependencyContainer
  readonly codecs?: BoundaryCodecs
  readonly router?: RouterOptions
  /** Attempts per microbatch and hop before dropping it. Default 3. */
  readonly maxAttempts?: number
  /** How long a microbatch waits for a peer of the next stage to appear (ms). Default 30000. */
  readonly peerWaitMs?: number
  /** How long an inbound stream may take to deliver its request (ms). Default 30000. */
  readonly requestTimeoutMs?: number
  /** Heartbeat period of the StageDirectory (ms). Default 1000. */
  readonly heartbeatMs?: number
  /** After the run, wait this long at most for the other nodes to report done (ms). Default 15000. */
  readonly lingerMs?: number
  /** Initial parameters (e.g. a stage checkpoint). */
  readonly params?: ReadonlyMap<string, Float32Array>
  readonly log?: Logger
  readonly onStep?: (r: StepRecordOut) => void
  readonly onEval?: (step: number, loss: number) => void
  /** Averaging within the stage every manifest.averaging.period steps (stage-averaging.ts); false = off. */
  readonly averaging?: StageAveragingOptions | false
  /** Meeting the run's other nodes through the DHT (rendezvous.ts); false = off. Needs gossipsub and a DHT. */
  readonly rendezvous?: Partial<Omit<RendezvousInit, 'runId' | 'view' | 'stages' | 'reannounce'>> | false
}

export interface TrainingStatus {
  runId: string
  peerId: string
  stage: number
  stages: number
  state: TrainingState
  /** Optimizer steps applied by this node. */
  step: number
  steps: number
  microbatchesStarted: number
  microbatchesDone: number
  microbatchesDropped: number
  microbatchesRetried: number
  lossLast: number | null
  /** [1-based step, mean loss of that step's microbatches] per optimizer step of this node. */
  loss: Array<[number, number]>
  evalLoss: number | null
  evals: Array<[number, number]>
  tokens: number
  /** Payload bytes sent forward (encoded activations + raw targets) and backward (encoded gradients), every attempt. */
  bytesForward: number
  bytesBackward: number
  /**
   * The boundary traffic alone, for bytes per token: encoded activation bytes this node sent and the
   * tokens (B·T) they carried, train and eval, every attempt; the same for the gradients it sent back.
   */
  boundaryBytesForward: number
  boundaryTokensForward: number
  boundaryBytesBackward: number
  boundaryTokensBackward: number
  peersPerStage: Record<string, number>
  /** Microbatches per second (EWMA of intervals between completions). */
  throughput: number
  lr: number | null
  maxInflight: number
  /** Microbatches in flight on this node. */
  queue: number
  penalties: { total: number, byPeer: Record<string, number> }
  codecs: { activation: string, 'activation-grad': string }
  /** k of the learned bottleneck (boundary tensors are [B,T,k]), or null: [B,T,C]. */
  bottleneck: number | null
  /** Averaging rounds with the stage's other nodes (docs/averaging.md, "In the pipeline"); null when off. */
  averaging: AveragingStatus | null
  /** Whom of its run this node knows and what it misses (rendezvous.ts); null without gossip and a DHT. */
  swarm: RendezvousStatus | null
  error?: string
}

const MAX_CURVE = 10_000

export class PipelineNode {
  readonly runId: string
  readonly stage: number
  readonly stages: number
  readonly config: ModelConfig
  readonly layout: StageLayout
  readonly router: Router
  readonly worker: StageWorker
  readonly schedule: LrSchedule
  /** Resolves when this node's part of the run is over (see docs/pipeline.md, "Ending a run"). */
  readonly finished: Promise<void>
  private readonly me: string
  private readonly log: Logger
  private readonly libp2p: Libp2p
  private readonly codecs: BoundaryCodecs
  private readonly directory: StageDirectory | undefined
  private readonly rendezvous: RunRendezvous | undefined
  private readonly source: PeerSource
  private readonly bounds: MicrobatchBounds
  private readonly nextId: () => bigint
  private readonly abort = new AbortController()
  private readonly M: number
  private readonly maxInflight: number
  private readonly maxAttempts: number
  private state: TrainingState = 'starting'
  private error: string | undefined
  private finish!: () => void
  private handling = 0
  private outstanding = 0
  private dataLoop: Promise<void> | undefined
  private doneTimer: NodeJS.Timeout | undefined
  private started = false
  private seenStage0Done = false
  private readonly evalAcc = new Map<string, { sum: number, n: number, of: number }>()
  private lastCompletion = 0
  private intervalEwma = 0
  private readonly penalties = new Map<string, number>()
  private readonly averaging: StageAveraging | undefined
  private readonly s: Omit<TrainingStatus, 'runId' | 'peerId' | 'stage' | 'stages' | 'state' | 'peersPerStage' | 'throughput' | 'maxInflight' | 'queue' | 'penalties' | 'codecs' | 'bottleneck' | 'steps' | 'step' | 'averaging' | 'swarm'> = {
    microbatchesStarted: 0,
    microbatchesDone: 0,
    microbatchesDropped: 0,
    microbatchesRetried: 0,
    lossLast: null,
    loss: [],
    evalLoss: null,
    evals: [],
    tokens: 0,
    bytesForward: 0,
    bytesBackward: 0,
    boundaryBytesForward: 0,
    boundaryTokensForward: 0,
    boundaryBytesBackward: 0,
    boundaryTokensBackward: 0,
    lr: null
  }

  constructor (private readonly init: PipelineNodeInit) {
    const m = init.manifest
    this.runId = manifestRunId(m)
    this.libp2p = init.libp2p
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
    this.M = init.microbatches ?? 1
    this.maxInflight = init.maxInflight ?? 4
    this.maxAttempts = init.maxAttempts ?? 3
    for (const [name, v] of [['microbatches', this.M], ['maxInflight', this.maxInflight], ['maxAttempts', this.maxAttempts]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new ConfigError(`${name} must be a positive integer, got ${v}`)
    }
    if (this.stage === 0 && init.data == null) throw new ConfigError('a stage-0 node needs data (it starts the microbatches)')
    this.schedule = { maxLr: m.optimizer.lr, minLr: m.optimizer.lr / 10, warmupSteps: m.optimizer.warmup, totalSteps: m.optimizer.steps }
    const stage = new Stage(init.backend, this.layout, {
      seed: m.data.seed,
      params: init.params,
      optimizer: { beta1: m.optimizer.beta1, beta2: m.optimizer.beta2, eps: m.optimizer.eps, weightDecay: m.optimizer.weightDecay, gradClip: m.optimizer.clip }
    })
    this.worker = new StageWorker(stage, {
      schedule: this.schedule,
      auto: this.stage > 0,
      log: init.log,
      onStep: r => { this.recordStep(r) }
    })
    this.codecs = init.codecs ?? boundaryCodecs({ activation: m.codecs.activation, 'activation-grad': m.codecs['activation-grad'] }, init.container)
    this.bounds = boundsFor(m, this.stage, stage.boundaryWidth)
    if (init.source != null && typeof init.source !== 'function') {
      this.source = init.source
    } else {
      const services = (init.libp2p as unknown as { services?: { pubsub?: GossipSub } }).services
      if (services?.pubsub == null && init.source == null) throw new ConfigError('no peer source: give `source`, or a libp2p node with gossipsub (services.pubsub)')
      this.directory = services?.pubsub == null ? undefined : new StageDirectory(init.libp2p as never, {
        runId: this.runId,
        stages: this.stages,
        intervalMs: init.heartbeatMs,
        log: init.log,
        self: () => ({ stage: this.stage, state: this.state, step: this.worker.steps, throughput: this.throughput(), queue: this.handling + this.outstanding }),
        // a data node's step count is the swarm's step: it starts averaging rounds here too
        onHeartbeat: e => { if (e.stage === 0) this.averaging?.observe(e.step) }
      })
      this.source = typeof init.source === 'function' ? init.source(this.directory) : this.directory as StageDirectory
    }
    const dir = this.directory
    const hasDht = (init.libp2p as unknown as { services?: { dht?: unknown } }).services?.dht != null
    if (dir != null && hasDht && init.rendezvous !== false) {
      this.rendezvous = new RunRendezvous(init.libp2p, {
        ...init.rendezvous,
        runId: this.runId,
        stages: this.stages,
        log: init.log,
        reannounce: () => { dir.publish() },
        view: () => {
          const stagePeers: Record<string, number> = {}
          for (let s = 0; s < this.stages; s++) stagePeers[String(s)] = 0
          let peers = 0
          for (const e of dir.live()) {
            if (e.state === 'failed') continue
            peers++
            stagePeers[String(e.stage)]++
          }
          return { peers, stagePeers }
        }
      }, this.stage)
    }
    this.router = new Router(this.source, init.router)
    this.nextId = microbatchIdFactory()
    // a period beyond the run's last step would never fire: no averager then. Averaging partners are
    // every node of the stage the directory has heard (joining ones too), not only those the router
    // may send work to: a scheduler view that still lists a peer as joining must not leave it alone.
    this.averaging = init.averaging === false || m.averaging.period > m.optimizer.steps ? undefined : new StageAveraging({
      ...init.averaging, libp2p: init.libp2p, runId: this.runId, manifest: m, stage: this.stage, worker: this.worker, source: this.directory ?? this.source,
      startStep: init.startStep, container: init.container, log: init.log
    })
    this.finished = new Promise(resolve => { this.finish = resolve })
  }

  get isFirst (): boolean { return this.stage === 0 }
  get isLast (): boolean { return this.stage === this.stages - 1 }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    if (!this.isFirst) {
      await handleFramed(this.libp2p, PIPELINE_FORWARD_PROTOCOL, async (fs, connection, signal) => {
        await this.handleForward(fs, connection.remotePeer.toString(), signal)
      }, {
        runId: this.runId,
        log: this.init.log,
        streamOptions: { maxInboundStreams: 256 },
        onError: (err, peer) => { this.onInboundError(err, peer) }
      })
    }
    this.directory?.start()
    this.rendezvous?.start()
    await this.averaging?.start()
    this.state = this.isFirst ? 'waiting-peers' : 'training'
    this.log.info('pipeline node started', { runId: this.runId, stage: this.stage, stages: this.stages, blocks: `${this.layout.range.firstBlock}..${this.layout.range.endBlock - 1}` })
    if (this.isFirst) {
      this.dataLoop = this.runData().catch(err => {
        if (this.abort.signal.aborted) return
        this.state = 'failed'
        this.error = (err as Error).message
        this.log.error('training failed', { error: (err as Error).stack ?? String(err) })
        this.directory?.publish()
        this.finish()
      })
    } else if (this.directory != null) {
      this.doneTimer = setInterval(() => { this.checkDownstreamDone() }, 250)
    }
  }

  async stop (): Promise<void> {
    if (this.abort.signal.aborted) return
    this.abort.abort(new PipelineStoppedError())
    clearInterval(this.doneTimer)
    if (!this.isFirst) await this.libp2p.unhandle(PIPELINE_FORWARD_PROTOCOL).catch(() => {})
    await this.dataLoop
    await this.averaging?.stop()
    await this.rendezvous?.stop()
    this.directory?.stop()
    // wait for the stage to be idle before its memory goes
    await this.worker.exclusive(async () => {})
    this.worker.stage.dispose()
    this.finish()
  }

  status (): TrainingStatus {
    const byPeer: Record<string, number> = Object.fromEntries(this.penalties)
    return {
      runId: this.runId,
      peerId: this.me,
      stage: this.stage,
      stages: this.stages,
      state: this.state,
      step: this.worker.steps,
      steps: this.init.manifest.optimizer.steps,
      ...this.s,
      loss: this.s.loss.slice(),
      evals: this.s.evals.slice(),
      peersPerStage: this.peersPerStage(),
      throughput: this.throughput(),
      maxInflight: this.maxInflight,
      queue: this.handling + this.outstanding,
      penalties: { total: [...this.penalties.values()].reduce((a, b) => a + b, 0), byPeer },
      codecs: { activation: this.codecs.name('activation'), 'activation-grad': this.codecs.name('activation-grad') },
      bottleneck: this.layout.bottleneck > 0 ? this.layout.bottleneck : null,
      averaging: this.averaging?.status() ?? null,
      swarm: this.rendezvous?.status() ?? null,
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
      train: { runId: this.runId, tokens: this.s.tokens, manifest: this.init.manifest },
      info: { runId: this.runId, tokenizer: this.init.manifest.data.tokenizer, ...info }
    }))
  }

  // ---- inbound ---------------------------------------------------------------------------------

  private async handleForward (fs: FramedStream, from: string, handlerSignal: AbortSignal): Promise<void> {
    if (this.abort.signal.aborted) throw new PipelineStoppedError()
    this.handling++
    let work: Deadline | undefined
    try {
      const reading = deadline(this.init.requestTimeoutMs ?? 30_000, handlerSignal, this.abort.signal)
      const readSignal = reading.signal
      let B: number, T: number, meta: MicrobatchMeta, hidden: Float32Array, targets: Int32Array, id: bigint, route: string[]
      try {
        const act = await fs.expect({ signal: readSignal })
        ;({ B, T, meta } = validateActivation(act, this.bounds, from))
        hidden = this.codecs.decode('activation', act)
        const tgt = await fs.expect({ signal: readSignal })
        id = act.header.microbatchId
        targets = validateTargets(tgt, B, T, id, this.bounds)
        route = [...act.header.route, this.me]
      } catch (err) {
        if (!this.abort.signal.aborted) this.penalize(from, err)
        throw err
      } finally {
        reading.clear()
      }
      const train = meta.mode === 'train'
      if (train) {
        this.s.microbatchesStarted++
        // a microbatch of step s: its origin has completed s steps
        this.averaging?.observe(meta.step)
      }
      work = deadline(undefined, handlerSignal, this.abort.signal)
      const signal = work.signal
      const shapeIn = [B, T, this.bounds.width]
      const key = `${meta.origin}:${id}`
      const tag = { origin: meta.origin, step: meta.step, micros: meta.micros }

      if (this.isLast) {
        if (!train) {
          const out = await this.worker.evaluate({ B, T, hidden, targets })
          const reply = { loss: out.loss as number, count: out.count as number }
          this.recordEval(meta, reply.loss)
          await fs.send({ kind: 'response', microbatchId: id, stage: this.stage, route, metadata: { ...reply } }, undefined, { signal })
          return
        }
        const r = await this.worker.trainLast({ B, T, hidden, targets }, tag)
        await this.replyGrad(fs, id, route, r.dinput as Float32Array, shapeIn, { loss: r.loss, count: r.count }, signal)
        this.completed(B * T)
        return
      }

      const out = train ? await this.worker.forward(key, { B, T, hidden }) : await this.worker.evaluate({ B, T, hidden })
      const next = out.hidden as Float32Array
      assertFiniteF32(next, `stage ${this.stage} output`)
      let reply
      try {
        reply = await this.callStage(this.stage + 1, id, route, next, [B, T, this.bounds.width], targets, meta, signal)
      } catch (err) {
        if (train && err instanceof MicrobatchDroppedError) this.s.microbatchesDropped++
        throw err
      }
      if (!train) {
        await fs.send({ kind: 'response', microbatchId: id, stage: this.stage, route, metadata: { ...reply.meta } }, undefined, { signal })
        return
      }
      const dinput = await this.worker.backward(key, { B, T, hidden }, reply.dout as Float32Array, { ...tag, loss: reply.meta.loss })
      await this.replyGrad(fs, id, route, dinput as Float32Array, shapeIn, reply.meta, signal)
      this.completed(B * T)
    } finally {
      work?.clear()
      this.handling--
    }
  }

  private async replyGrad (fs: FramedStream, id: bigint, route: string[], dinput: Float32Array, shape: number[], meta: ReplyMeta, signal: AbortSignal): Promise<void> {
    assertFiniteF32(dinput, `stage ${this.stage} input gradient`)
    const enc = this.codecs.encode('activation-grad', dinput, shape)
    await fs.send({ kind: 'activation-grad', microbatchId: id, stage: this.stage, codecId: enc.codecId, dtype: 'f32', shape, route, metadata: { loss: meta.loss, count: meta.count } }, enc.bytes, { signal })
    this.s.bytesBackward += enc.bytes.byteLength
    this.s.boundaryBytesBackward += enc.bytes.byteLength
    this.s.boundaryTokensBackward += shape[0] * shape[1]
  }

  /** A peer sent a bad request: count it against the peer (and ban it from routing for a while). */
  private penalize (peer: string, err: unknown): void {
    const verdict = pipelineVerdict(err)
    this.log.warn('bad microbatch from peer', { peer, verdict, code: (err as LayerswarmError).code, error: (err as Error).message })
    if (verdict === 'none') return
    if (verdict === 'reject') this.penalties.set(peer, (this.penalties.get(peer) ?? 0) + 1)
    this.router.failed(peer, Math.max(0, this.stage - 1), verdict)
  }

  private onInboundError (err: Error, peer: string): void {
    this.log.debug('inbound microbatch ended with an error', { peer, code: (err as LayerswarmError).code, error: err.message })
  }

  // ---- outbound --------------------------------------------------------------------------------

  /**
   * Sends a microbatch to a peer of `stage` and waits for its reply: the gradient of `hidden` (train)
   * or the loss (eval). Failing peers are banned and the microbatch goes to another, up to
   * maxAttempts; then MicrobatchDroppedError. A remote drop (the stages behind failed) is final.
   */
  private async callStage (stage: number, id: bigint, route: string[], hidden: Float32Array, shape: number[], targets: Int32Array,
    meta: MicrobatchMeta, signal: AbortSignal): Promise<{ dout?: Float32Array, meta: ReplyMeta }> {
    const train = meta.mode === 'train'
    const act = this.codecs.encode('activation', hidden, shape)
    const tgt = int32Bytes(targets)
    const exclude = new Set<string>()
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const peer = this.router.choose(stage, exclude) ?? await this.waitForPeer(stage, exclude, signal)
      if (peer == null) break
      if (attempt > 0) this.s.microbatchesRetried++
      const t0 = performance.now()
      const attemptDeadline = deadline(this.router.timeoutMs(peer), signal)
      const sig = attemptDeadline.signal
      let fs: FramedStream | undefined
      this.outstanding++
      try {
        fs = await openFramed(this.libp2p, peerIdFromString(peer), PIPELINE_FORWARD_PROTOCOL, { runId: this.runId, signal: sig, log: this.init.log })
        await fs.send({ kind: 'activation', microbatchId: id, stage, codecId: act.codecId, dtype: 'f32', shape, route, metadata: { ...meta } }, act.bytes, { signal: sig })
        await fs.send({ kind: 'request', microbatchId: id, stage, dtype: 'i32', shape: [shape[0], shape[1]], route, metadata: { op: 'targets' } }, tgt, { signal: sig })
        this.s.bytesForward += act.bytes.byteLength + tgt.byteLength
        this.s.boundaryBytesForward += act.bytes.byteLength
        this.s.boundaryTokensForward += shape[0] * shape[1]
        const resp = await fs.expect({ signal: sig })
        let out: { dout?: Float32Array, meta: ReplyMeta }
        if (train) {
          const m = validateGradReply(resp, id, stage, shape)
          out = { dout: this.codecs.decode('activation-grad', resp), meta: m }
        } else {
          out = { meta: validateEvalReply(resp, id) }
        }
        await fs.close({ signal: sig }).catch(() => {})
        this.router.succeeded(peer, stage, performance.now() - t0)
        return out
      } catch (err) {
        if (fs != null && !(err instanceof RemoteError)) fs.abort(err as Error)
        if (signal.aborted) throw new AbortError('the microbatch was abandoned')
        if (isRemoteDrop(err)) throw new MicrobatchDroppedError(stage, `stage ${stage} peer ${peer} dropped the microbatch: ${(err as Error).message}`)
        const verdict = pipelineVerdict(err)
        this.router.failed(peer, stage, verdict)
        if (verdict === 'reject') this.penalties.set(peer, (this.penalties.get(peer) ?? 0) + 1)
        exclude.add(peer)
        this.log.warn('microbatch failed at a peer; retrying elsewhere', {
          peer, stage, attempt: attempt + 1, of: this.maxAttempts, verdict, code: (err as LayerswarmError).code, error: (err as Error).message
        })
      } finally {
        attemptDeadline.clear()
        this.outstanding--
      }
    }
    throw new MicrobatchDroppedError(stage)
  }

  /** Waits (bounded) for a usable peer of `stage` to appear. */
  private async waitForPeer (stage: number, exclude: ReadonlySet<string>, signal: AbortSignal): Promise<string | undefined> {
    const until = Date.now() + (this.init.peerWaitMs ?? 30_000)
    while (Date.now() < until && !signal.aborted) {
      await pause(100, signal)
      const peer = this.router.choose(stage, exclude)
      if (peer != null) return peer
    }
    return undefined
  }

  // ---- data role (stage 0) -----------------------------------------------------------------

  private async runData (): Promise<void> {
    const m = this.init.manifest
    const steps = m.optimizer.steps
    const B = m.data.batchSize
    const T = m.data.seqLen
    const signal = this.abort.signal
    const evalEvery = this.init.evalEvery ?? 0
    let step = this.init.startStep ?? 0
    while (step < steps && !signal.aborted) {
      if (this.stages > 1 && this.router.available(1).length === 0) {
        this.state = 'waiting-peers'
        await pause(100, signal)
        continue
      }
      this.state = 'training'
      const results = await pool(this.M, this.maxInflight, async micro => await this.runMicro(step, micro, B, T, signal))
      if (signal.aborted) return
      if (!results.some(ok => ok)) {
        // nothing came back: do not burn a step of the schedule on an empty update
        this.log.warn('every microbatch of the step was dropped; retrying the step', { step })
        await pause(500, signal)
        continue
      }
      await this.worker.step(step)
      step++
      if (evalEvery > 0 && step % evalEvery === 0 && step < steps) await this.runEval(step, B, T, signal)
    }
    if (signal.aborted) return
    await this.runEval(step, B, T, signal)
    this.state = 'done'
    this.log.info('run done', { steps: this.worker.steps, lossLast: this.s.lossLast, evalLoss: this.s.evalLoss })
    this.directory?.publish()
    await this.linger(signal)
    this.finish()
  }

  private async runMicro (step: number, micro: number, B: number, T: number, signal: AbortSignal): Promise<boolean> {
    const data = this.init.data as PipelineData
    const id = this.nextId()
    const key = `${this.me}:${id}`
    this.s.microbatchesStarted++
    const batch = await data.trainBatch(step, micro, B, T)
    const tag = { origin: this.me, step, micros: this.M }
    if (this.isLast) {
      const r = await this.worker.trainLast({ B, T, tokens: batch.inputs, targets: batch.targets }, tag)
      this.completed(B * T)
      return Number.isFinite(r.loss)
    }
    const meta: MicrobatchMeta = { origin: this.me, step, micro, micros: this.M, mode: 'train' }
    try {
      const out = await this.worker.forward(key, { B, T, tokens: batch.inputs })
      const hidden = out.hidden as Float32Array
      assertFiniteF32(hidden, 'stage 0 output')
      const reply = await this.callStage(1, id, [this.me], hidden, [B, T, this.bounds.width], batch.targets, meta, signal)
      await this.worker.backward(key, { B, T, tokens: batch.inputs }, reply.dout as Float32Array, { ...tag, loss: reply.meta.loss })
      this.completed(B * T)
      return true
    } catch (err) {
      if (signal.aborted) return false
      this.s.microbatchesDropped++
      this.log.warn('microbatch dropped', { step, micro, code: (err as LayerswarmError).code, error: (err as Error).message })
      return false
    }
  }

  private async runEval (step: number, B: number, T: number, signal: AbortSignal): Promise<void> {
    const data = this.init.data as PipelineData
    const want = this.init.evalBatches ?? 8
    const n = Math.min(want, data.evalBatchCount?.(B, T) ?? want)
    if (n <= 0) return
    let sum = 0
    let got = 0
    for (let i = 0; i < n && !signal.aborted; i++) {
      const b = await data.evalBatch(i, B, T)
      try {
        if (this.isLast) {
          sum += (await this.worker.evaluate({ B, T, tokens: b.inputs, targets: b.targets })).loss as number
        } else {
          const out = await this.worker.evaluate({ B, T, tokens: b.inputs })
          const hidden = out.hidden as Float32Array
          const meta: MicrobatchMeta = { origin: this.me, step, micro: 0, micros: 1, mode: 'eval', evalIndex: i, evalCount: n }
          sum += (await this.callStage(1, this.nextId(), [this.me], hidden, [B, T, this.bounds.width], b.targets, meta, signal)).meta.loss
        }
        got++
      } catch (err) {
        if (signal.aborted) return
        this.log.warn('eval microbatch dropped', { step, index: i, error: (err as Error).message })
      }
    }
    if (got === 0) return
    this.setEval(step, sum / got)
  }

  // ---- bookkeeping -------------------------------------------------------------------------

  private recordStep (r: StepRecordOut): void {
    this.s.lr = r.lr
    this.averaging?.stepped(r.step, r.microbatches * this.init.manifest.data.batchSize)
    if (Number.isFinite(r.loss)) {
      this.s.lossLast = r.loss
      this.s.loss.push([r.step, r.loss])
      if (this.s.loss.length > MAX_CURVE) this.s.loss.splice(0, this.s.loss.length - MAX_CURVE)
    }
    this.log.debug('optimizer step', { step: r.step, loss: r.loss, lr: r.lr, microbatches: r.microbatches, gradNorm: r.gradNorm, applied: r.applied })
    this.init.onStep?.(r)
  }

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
    this.s.evalLoss = loss
    this.s.evals.push([step, loss])
    this.log.info('eval', { step, loss })
    this.init.onEval?.(step, loss)
  }

  private completed (tokens: number): void {
    this.s.microbatchesDone++
    this.s.tokens += tokens
    const now = performance.now()
    if (this.lastCompletion > 0) {
      const dt = now - this.lastCompletion
      this.intervalEwma = this.intervalEwma === 0 ? dt : 0.8 * this.intervalEwma + 0.2 * dt
    }
    this.lastCompletion = now
  }

  private throughput (): number {
    if (this.intervalEwma <= 0) return 0
    // an idle node's rate decays: the time since the last completion counts as an interval in progress
    const idle = performance.now() - this.lastCompletion
    const interval = idle > this.intervalEwma ? 0.8 * this.intervalEwma + 0.2 * idle : this.intervalEwma
    return Math.round(1e4 * 1000 / interval) / 1e4
  }

  private peersPerStage (): Record<string, number> {
    if (this.directory != null) return this.directory.peersPerStage(this.stage)
    const out: Record<string, number> = {}
    for (let s = 0; s < this.stages; s++) out[String(s)] = (s === this.stage ? 1 : 0) + this.source.peersForStage(s).length
    return out
  }

  /**
   * Non-first stages end when every live stage-0 peer reports done (and one was seen done) and no
   * microbatch is in flight here: the last partial step is applied, then this node reports done.
   */
  private checkDownstreamDone (): void {
    if (this.state !== 'training' || this.directory == null) return
    const origins = this.directory.live().filter(e => e.stage === 0)
    if (origins.some(e => e.state === 'done')) this.seenStage0Done = true
    if (!this.seenStage0Done || origins.some(e => e.state !== 'done' && e.state !== 'failed') || this.handling > 0) return
    clearInterval(this.doneTimer)
    this.state = 'done'
    void (async () => {
      if (this.worker.pending > 0) await this.worker.flushPending()
      this.log.info('run done', { steps: this.worker.steps, lossLast: this.s.lossLast, evalLoss: this.s.evalLoss })
      this.directory?.publish()
      await this.linger(this.abort.signal)
      this.finish()
    })().catch(err => { this.log.error('finishing failed', { error: (err as Error).message }); this.finish() })
  }

  /** After this node is done: wait until every known peer reports done (they saw our state), at most lingerMs. */
  private async linger (signal: AbortSignal): Promise<void> {
    if (this.directory == null) return
    const deadline = Date.now() + (this.init.lingerMs ?? 15_000)
    while (Date.now() < deadline && !signal.aborted) {
      const others = this.directory.live()
      if (others.every(e => e.state === 'done' || e.state === 'failed')) {
        // one more heartbeat so late listeners see us done
        this.directory.publish()
        await pause(Math.min(1000, this.init.heartbeatMs ?? 1000), signal)
        return
      }
      await pause(100, signal)
    }
  }
}

/** Runs fn(0..n-1) with at most `k` running at once; results in index order. */
async function pool<R> (n: number, k: number, fn: (i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(n)
  let next = 0
  const lanes = Array.from({ length: Math.min(n, k) }, async () => {
    while (next < n) {
      const i = next++
      out[i] = await fn(i)
    }
  })
  await Promise.all(lanes)
  return out
}
