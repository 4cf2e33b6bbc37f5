// The stage role's inbound side: where a microbatch enters a stage >= 1 node. Registered on the
// pipeline protocol (protocol.ts) while the node serves its stage.
//
//   receive    the activation frame and the targets frame, validated (size, shape, bounds, run,
//              stage, the sender's place in the route and the origin's signature: route-auth.ts,
//              and the sender's hop commitment: hop-commits.ts) and decoded (the codec
//              adapter checks the values are finite); a bad one is judged against the sender
//              (PeerJudge) and nothing else is disturbed
//   compute    last stage: loss and the input gradient (trainLast) or the held-out loss (eval);
//              other stages: forward, hand the output to the dispatcher for stage s+1, then
//              backward with the gradient that comes back
//   reply      the input gradient (encoded, with this node's commitment to it) or the loss, on the
//              same stream, with `computeMs`: this node's time from the request read to the reply
//              (its compute and the hops behind it; core/net/hop-timing.ts)
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import type { LayerswarmError } from '../errors.ts'
import type { PeerJudge } from '../peer-judge.ts'
import type { Role } from '../contracts/role.ts'
import { deadline, pause, type Deadline } from '../timers.ts'
import { handleFramed, PeerBudgetError, type FramedStream } from '../wire/index.ts'
import type { BoundaryCodecs } from '../codecs/tensor-codecs.ts'
import type { Dispatcher } from './dispatch.ts'
import { MicrobatchDroppedError, PeerConvictedError, PipelineStoppedError } from './errors.ts'
import type { PipelineMetrics } from './pipeline-metrics.ts'
import type { ProfileCategory } from './pipeline-profile.ts'
import { PIPELINE_FORWARD_PROTOCOL, validateActivation, validateTargets, type MicrobatchBounds, type MicrobatchMeta } from './protocol.ts'
import type { StageWorker } from './stage-worker.ts'
import type { HopCommitter } from './hop-commits.ts'
import type { HopTensor } from '../verify/hop-records.ts'
import type { Adversary } from './adversary.ts'
import type { RouteAuth } from './route-auth.ts'
import { COMPUTE_MS_FIELD } from '../net/hop-timing.ts'

export interface StageServerInit {
  readonly libp2p: Libp2p
  readonly runId: string
  readonly me: string
  readonly stage: number
  readonly stages: number
  readonly bounds: MicrobatchBounds
  readonly codecs: BoundaryCodecs
  readonly worker: StageWorker
  readonly dispatcher: Dispatcher
  readonly metrics: PipelineMetrics
  readonly judge: PeerJudge
  /** Signs this node's hops and checks the previous stage's; absent: no commitments. */
  readonly committer?: HopCommitter
  /** Who may send this stage work and whose work it is (route-auth.ts); absent: anyone (bare tests). */
  readonly routeAuth?: RouteAuth
  /** A cheating stage server (verification tests and bench only: adversary.ts). */
  readonly adversary?: Adversary
  /** How long an inbound stream may take to deliver its request (ms). */
  readonly requestTimeoutMs: number
  /** Aborted when the node stops. */
  readonly signal: AbortSignal
  /** A training microbatch of the origin's step `step` arrived (averaging follows the swarm's step). */
  readonly onTrainStep?: (step: number) => void
  /** A held-out loss of the last stage's share of an eval pass. */
  readonly onEval?: (meta: MicrobatchMeta, loss: number) => void
  readonly log: Logger
  readonly wireLog?: Logger
}

export class StageServer implements Role {
  readonly name = 'stage'
  private handling = 0
  private registered = false
  /** Inbound streams of the microbatches being handled: stop() aborts them (a held one must not outlive the node's run). */
  private readonly streams = new Set<FramedStream>()

  constructor (private readonly init: StageServerInit) {}

  /** Microbatches being handled here. */
  get inFlight (): number {
    return this.handling
  }

  async start (): Promise<void> {
    // stage 0 takes no microbatches from peers: its work comes from the data role
    if (this.init.stage === 0 || this.registered) return
    this.registered = true
    await handleFramed(this.init.libp2p, PIPELINE_FORWARD_PROTOCOL, async (fs, connection, signal) => {
      await this.handle(fs, connection.remotePeer.toString(), signal)
    }, {
      runId: this.init.runId,
      log: this.init.wireLog,
      streamOptions: { maxInboundStreams: 256 },
      admit: async (peer, signal) => { await this.init.judge.admit(peer, signal, 'pipeline') },
      onError: (err, peer) => {
        // a stream refused at the door (past the peer's share of streams) never reaches handle()'s judgement
        if (err instanceof PeerBudgetError && err.resource === 'streams') this.init.judge.judge(peer, err, 'pipeline', this.init.stage - 1)
        this.init.log.debug('inbound microbatch ended with an error', { peer, code: (err as LayerswarmError).code, error: err.message })
      }
    })
  }

  async stop (): Promise<void> {
    if (!this.registered) return
    this.registered = false
    await this.init.libp2p.unhandle(PIPELINE_FORWARD_PROTOCOL).catch(() => {})
    for (const fs of this.streams) fs.abort(new PipelineStoppedError())
  }

  status (): Record<string, unknown> {
    return { stage: this.init.stage, inFlight: this.handling }
  }

  private async handle (fs: FramedStream, from: string, handlerSignal: AbortSignal): Promise<void> {
    const { init } = this
    if (init.signal.aborted) throw new PipelineStoppedError()
    if (init.judge.isConvicted(from)) throw new PeerConvictedError(from)
    this.handling++
    this.streams.add(fs)
    let work: Deadline | undefined
    try {
      const prof = init.metrics.profile
      let t = prof.start()
      const lap = (cat: ProfileCategory): void => { const now = performance.now(); prof.add(cat, now - t); t = now }
      const reading = deadline(init.requestTimeoutMs, handlerSignal, init.signal)
      let B: number, T: number, meta: MicrobatchMeta, hidden: Float32Array, targets: Int32Array, id: bigint, route: string[]
      // what this hop's commitments need: the inputs as they crossed the wire (training hops of a committing node only)
      let actIn: HopTensor | undefined, targetsIn: HopTensor | undefined
      try {
        const act = await fs.expect({ signal: reading.signal })
        lap('receive')
        ;({ B, T, meta } = validateActivation(act, init.bounds, from))
        lap('framing')
        // before decoding anything: only the previous stage's peers, only microbatches their origin signed
        await init.routeAuth?.check(from, act.header.microbatchId, meta, reading.signal)
        lap('verification')
        hidden = init.codecs.decode('activation', act) // timed by the codecs (profiledCodecs)
        t = performance.now()
        const tgt = await fs.expect({ signal: reading.signal })
        lap('receive')
        id = act.header.microbatchId
        targets = validateTargets(tgt, B, T, id, init.bounds)
        route = [...act.header.route, init.me]
        lap('framing')
        if (meta.mode === 'train' && init.committer != null) {
          await init.committer.accept(from, { kind: 'forward', stage: init.stage - 1, microbatchId: id, codecId: act.header.codecId, tokens: B * T }, act.header.metadata?.commitment, act.payload)
          lap('verification')
          actIn = { bytes: act.payload.slice(), codecId: act.header.codecId, dtype: 'f32', shape: [...act.header.shape] }
          targetsIn = { bytes: tgt.payload.slice(), codecId: tgt.header.codecId, dtype: 'i32', shape: [B, T] }
          lap('copy')
        }
      } catch (err) {
        if (!init.signal.aborted) {
          const verdict = init.judge.judge(from, err, 'pipeline', init.stage - 1)
          init.log.warn('bad microbatch from peer', { peer: from, verdict, code: (err as LayerswarmError).code, error: (err as Error).message })
        }
        throw err
      } finally {
        reading.clear()
      }
      // the reply reports the time from here to itself (hop-timing.ts): the sender's deadline counts the network once
      const readAt = performance.now()
      const computeMs = (): number => Math.round(performance.now() - readAt)
      const train = meta.mode === 'train'
      if (train) {
        init.metrics.count('microbatchesStarted')
        // a microbatch of step s: its origin has completed s steps
        init.onTrainStep?.(meta.step)
      }
      work = deadline(undefined, handlerSignal, init.signal)
      const signal = work.signal
      if (train && (init.adversary?.hopDelayMs ?? 0) > 0) await pause(init.adversary?.hopDelayMs ?? 0, signal)
      const shapeIn = [B, T, init.bounds.width]
      const key = `${meta.origin}:${id}`
      const tag = { origin: meta.origin, step: meta.step, micros: meta.micros }
      const isLast = init.stage === init.stages - 1

      if (isLast) {
        if (!train) {
          const out = await init.worker.evaluate({ B, T, hidden, targets })
          const reply = { loss: out.loss as number, count: out.count as number }
          init.onEval?.(meta, reply.loss)
          await fs.send({ kind: 'response', microbatchId: id, stage: init.stage, route, metadata: { ...reply, [COMPUTE_MS_FIELD]: computeMs() } }, undefined, { signal })
          return
        }
        const r = await init.worker.trainLast({ B, T, hidden, targets }, tag)
        const hop = hopWork([actIn, targetsIn], r.paramsDigest, init.worker.steps)
        await this.replyGrad(fs, id, route, this.tamper(r.dinput as Float32Array), shapeIn, { loss: r.loss, count: r.count }, hop, signal, computeMs)
        init.metrics.completed(B * T)
        return
      }

      const out = train ? await init.worker.forward(key, { B, T, hidden }) : { ...await init.worker.evaluate({ B, T, hidden }), paramsDigest: '' }
      let reply
      try {
        const hop = hopWork([actIn], out.paramsDigest, init.worker.steps)
        const hidden = train && init.adversary != null ? init.adversary.forward(out.hidden as Float32Array) : out.hidden as Float32Array
        reply = await init.dispatcher.send({ stage: init.stage + 1, id, route, hidden, shape: shapeIn, targets, meta, work: hop }, signal)
      } catch (err) {
        if (train && err instanceof MicrobatchDroppedError) init.metrics.count('microbatchesDropped')
        throw err
      }
      if (!train) {
        await fs.send({ kind: 'response', microbatchId: id, stage: init.stage, route, metadata: { ...reply.meta, [COMPUTE_MS_FIELD]: computeMs() } }, undefined, { signal })
        return
      }
      const back = await init.worker.backward(key, { B, T, hidden }, reply.dout as Float32Array, { ...tag, loss: reply.meta.loss })
      const hop = hopWork([actIn, reply.doutTensor], back.paramsDigest, init.worker.steps)
      await this.replyGrad(fs, id, route, this.tamper(back.dinput as Float32Array), shapeIn, reply.meta, hop, signal, computeMs)
      init.metrics.completed(B * T)
    } finally {
      work?.clear()
      this.streams.delete(fs)
      this.handling--
    }
  }

  private tamper (dinput: Float32Array): Float32Array {
    return this.init.adversary?.backward(dinput) ?? dinput
  }

  private async replyGrad (fs: FramedStream, id: bigint, route: string[], dinput: Float32Array, shape: number[], meta: { loss: number, count: number },
    work: HopWorkIn | undefined, signal: AbortSignal, computeMs: () => number): Promise<void> {
    const prof = this.init.metrics.profile
    const enc = this.init.codecs.encode('activation-grad', dinput, shape)
    const commitment = work == null ? undefined : await prof.time('verification', async () => await this.init.committer?.commit({ kind: 'backward', microbatchId: id, ...work }, { bytes: enc.bytes, codecId: enc.codecId, dtype: 'f32', shape }))
    await prof.time('send', async () => await fs.send({ kind: 'activation-grad', microbatchId: id, stage: this.init.stage, codecId: enc.codecId, dtype: 'f32', shape, route, metadata: { loss: meta.loss, count: meta.count, [COMPUTE_MS_FIELD]: computeMs(), ...(commitment != null ? { commitment } : {}) } }, enc.bytes, { signal }))
    this.init.metrics.boundarySent('backward', enc.bytes.byteLength, shape[0] * shape[1])
  }
}

type HopWorkIn = { inputs: HopTensor[], paramsDigest: string, step: number }

/** What a hop's commitment names, when every input was kept (a committing node's training hop). */
function hopWork (inputs: ReadonlyArray<HopTensor | undefined>, paramsDigest: string, step: number): HopWorkIn | undefined {
  return inputs.every((t): t is HopTensor => t != null) ? { inputs: [...inputs], paramsDigest, step } : undefined
}
