// The data role: where microbatches are born. It holds stage 0 (the embeddings: its input is
// tokens, not a peer's activation), samples microbatches from the deterministic sampler (seed,
// node id, step, micro: core/data/train-data.ts), keeps at most `maxInflight` in flight through
// the dispatcher, steps the optimizer when a step's microbatches are back, and evaluates on
// held-out batches. A one-stage run computes the loss itself.
import type { Logger } from '../contracts/logger.ts'
import type { Role } from '../contracts/role.ts'
import type { Batch } from '../data/index.ts'
import type { LayerswarmError } from '../errors.ts'
import type { RunManifest } from '../run/manifest.ts'
import { pause } from '../timers.ts'
import type { Dispatcher } from './dispatch.ts'
import type { Adversary } from './adversary.ts'
import type { OriginSigner } from './route-auth.ts'
import type { PipelineMetrics } from './pipeline-metrics.ts'
import { int32Bytes, type MicrobatchMeta } from './protocol.ts'
import type { Router } from './router.ts'
import type { StageWorker } from './stage-worker.ts'
import type { TrainingState } from './training-status.ts'

/** Batches for the data role (core/data's TrainData shape): pure functions of their arguments. */
export interface PipelineData {
  trainBatch(step: number, micro: number, B: number, T: number): Batch | Promise<Batch>
  evalBatch(index: number, B: number, T: number): Batch | Promise<Batch>
  evalBatchCount?(B: number, T: number): number
}

export interface DataRoleInit {
  readonly me: string
  readonly manifest: RunManifest
  readonly stages: number
  /** Width of the boundary tensor stage 0 sends ([B, T, width]). */
  readonly width: number
  readonly data: PipelineData
  readonly worker: StageWorker
  readonly dispatcher: Dispatcher
  readonly router: Router
  readonly metrics: PipelineMetrics
  readonly nextId: () => bigint
  /** Microbatches per optimizer step. */
  readonly microbatches: number
  readonly maxInflight: number
  /** Held-out batches per eval (0 = none). */
  readonly evalBatches: number
  /** Eval every this many steps as well (0 = final only). */
  readonly evalEvery: number
  /** The swarm step to continue from. */
  readonly startStep: number
  readonly signal: AbortSignal
  readonly setState: (s: TrainingState) => void
  readonly onEval: (step: number, loss: number) => void
  readonly log: Logger
  /** A cheating origin (verification tests and bench only: adversary.ts). */
  readonly adversary?: Adversary
  /** Signs each microbatch's origin tuple (route-auth.ts); absent: unsigned (a node without a key). */
  readonly signer?: OriginSigner
}

export class DataRole implements Role {
  readonly name = 'data'
  private step: number

  constructor (private readonly init: DataRoleInit) {
    this.step = init.startStep
  }

  /** Not a background task: run() is the role's work, awaited by the pipeline node. */
  async start (): Promise<void> {}
  async stop (): Promise<void> {}

  status (): Record<string, unknown> {
    return { step: this.step, microbatches: this.init.microbatches, maxInflight: this.init.maxInflight }
  }

  /** Trains to the manifest's last step (then the final eval); returns early when the signal aborts. */
  async run (): Promise<void> {
    const { init } = this
    const m = init.manifest
    const steps = m.optimizer.steps
    const B = m.data.batchSize
    const T = m.data.seqLen
    const signal = init.signal
    while (this.step < steps && !signal.aborted) {
      if (init.stages > 1 && init.router.available(1).length === 0) {
        init.setState('waiting-peers')
        await pause(100, signal)
        continue
      }
      init.setState('training')
      const step = this.step
      const results = await pool(init.microbatches, init.maxInflight, async micro => await this.runMicro(step, micro, B, T))
      if (signal.aborted) return
      if (!results.some(ok => ok)) {
        // nothing came back: do not burn a step of the schedule on an empty update
        init.log.warn('every microbatch of the step was dropped; retrying the step', { step })
        await pause(500, signal)
        continue
      }
      await init.worker.step(step)
      this.step++
      if (init.evalEvery > 0 && this.step % init.evalEvery === 0 && this.step < steps) await this.runEval(this.step, B, T)
    }
    if (signal.aborted) return
    await this.runEval(this.step, B, T)
  }

  private async runMicro (step: number, micro: number, B: number, T: number): Promise<boolean> {
    const { init } = this
    const id = init.nextId()
    const key = `${init.me}:${id}`
    init.metrics.count('microbatchesStarted')
    const prof = init.metrics.profile
    const batch = await prof.time('data', async () => await init.data.trainBatch(step, micro, B, T))
    const tag = { origin: init.me, step, micros: init.microbatches }
    if (init.stages === 1) {
      const r = await init.worker.trainLast({ B, T, tokens: batch.inputs, targets: batch.targets }, tag)
      init.metrics.completed(B * T)
      return Number.isFinite(r.loss)
    }
    try {
      const meta = await prof.time('verification', async () => await this.signed({ origin: init.me, step, micro, micros: init.microbatches, mode: 'train' }, id))
      const out = await init.worker.forward(key, { B, T, tokens: batch.inputs })
      // stage 0's hop input is the token ids themselves (anyone can redraw them from the sampler's key)
      const work = !init.dispatcher.commits ? undefined : prof.timeSync('copy', () => ({ inputs: [{ bytes: int32Bytes(batch.inputs), codecId: 0, dtype: 'i32' as const, shape: [B, T] }], paramsDigest: out.paramsDigest, step: init.worker.steps }))
      const hidden = init.adversary?.forward(out.hidden as Float32Array) ?? out.hidden as Float32Array
      const reply = await init.dispatcher.send({ stage: 1, id, route: [init.me], hidden, shape: [B, T, init.width], targets: batch.targets, meta, work }, init.signal)
      await init.worker.backward(key, { B, T, tokens: batch.inputs }, reply.dout as Float32Array, { ...tag, loss: reply.meta.loss })
      init.metrics.completed(B * T)
      return true
    } catch (err) {
      if (init.signal.aborted) return false
      init.metrics.count('microbatchesDropped')
      init.log.warn('microbatch dropped', { step, micro, code: (err as LayerswarmError).code, error: (err as Error).message })
      return false
    }
  }

  private async signed (meta: MicrobatchMeta, id: bigint): Promise<MicrobatchMeta> {
    return this.init.signer != null ? await this.init.signer.sign(meta, id) : meta
  }

  private async runEval (step: number, B: number, T: number): Promise<void> {
    const { init } = this
    const n = Math.min(init.evalBatches, init.data.evalBatchCount?.(B, T) ?? init.evalBatches)
    if (n <= 0) return
    let sum = 0
    let got = 0
    for (let i = 0; i < n && !init.signal.aborted; i++) {
      const b = await init.data.evalBatch(i, B, T)
      try {
        if (init.stages === 1) {
          sum += (await init.worker.evaluate({ B, T, tokens: b.inputs, targets: b.targets })).loss as number
        } else {
          const out = await init.worker.evaluate({ B, T, tokens: b.inputs })
          const id = init.nextId()
          const meta = await this.signed({ origin: init.me, step, micro: 0, micros: 1, mode: 'eval', evalIndex: i, evalCount: n }, id)
          sum += (await init.dispatcher.send({ stage: 1, id, route: [init.me], hidden: out.hidden as Float32Array, shape: [B, T, init.width], targets: b.targets, meta }, init.signal)).meta.loss
        }
        got++
      } catch (err) {
        if (init.signal.aborted) return
        init.log.warn('eval microbatch dropped', { step, index: i, error: (err as Error).message })
      }
    }
    if (got > 0) init.onEval(step, sum / got)
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
