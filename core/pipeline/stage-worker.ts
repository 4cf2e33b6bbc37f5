// The stage worker: this node's piece of the model (a core/model Stage) behind a lock, serving
// microbatches one at a time, accumulating their gradients and stepping the optimizer.
//
// Kept forwards (docs/pipeline.md): the Stage keeps the activations of up to `keep` keyed forwards
// (one per microbatch in flight, as many as the memory budget allows: pipeline-node.ts).
// `backward(key, input, dout)` uses the kept forward of `key` when the Stage still holds it, else
// re-runs the forward of `input` first (stateless backward: a set given up for a newer microbatch,
// or the parameters changed since), then runs backward. Forward, recompute and backward of one call
// run under one lock, so concurrent microbatches never interleave inside the Stage.
//
// Steps: stage 0 steps when its data role says the step ended (`step()`); other stages step by
// themselves (`auto`): before accumulating a backward whose step is newer than the accumulated ones
// (the swarm moved on: flush the old step), and after accumulating once they hold `micros` backward
// passes per distinct origin (a whole step's worth). The learning rate is the schedule's value at
// the newest step seen in microbatch headers, so it follows the swarm, not a local clock.
//
// Weights: every change of the parameters (an optimizer step, or anything run `exclusive`, such as
// an averaging write-back) starts a new parameter version. With a ParamsWitness, each training
// computation also returns the digest of the weights it used, copied under the same lock (so it is
// exactly those weights) and hashed after the lock is released (off the stage's critical path):
// what its hop commitment names (hop-commits.ts).
import type { ParamsWitness } from './hop-commits.ts'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { learningRate, type LrSchedule } from '../model/lr-schedule.ts'
import type { Stage, StageInput, StageOutput } from '../model/stage.ts'
import type { PipelineProfile, ProfileCategory } from './pipeline-profile.ts'

export interface StepRecordOut {
  /** 1-based step number (the swarm step the gradients belonged to, plus one). */
  readonly step: number
  /** Mean loss of the microbatches in this update (NaN if none reported one). */
  readonly loss: number
  readonly lr: number
  readonly microbatches: number
  readonly applied: boolean
  readonly gradNorm: number
}

export interface StageWorkerOptions {
  readonly schedule: LrSchedule
  /** Step by itself (non-first stages) instead of on the data role's `step()`. */
  readonly auto: boolean
  readonly log?: Logger
  readonly onStep?: (r: StepRecordOut) => void
  /** Digests of the weights each training computation used (for hop commitments); absent: none. */
  readonly witness?: ParamsWitness
  /** Where the stage's time goes: compute, optimizer, lock waits, weight digests (pipeline-profile.ts). */
  readonly profile?: PipelineProfile
}

/** A training computation's result and the digest of the weights it used ('' without a witness). */
export type Witnessed<T> = T & { readonly paramsDigest: string }

/** Which step a backward pass belongs to, and the loss the last stage reported for it. */
export interface BackwardTag {
  readonly origin: string
  readonly step: number
  readonly micros: number
  readonly loss?: number
}

export class StageWorker {
  /** Optimizer steps applied or skipped (non-finite gradients). */
  steps = 0
  /** Milliseconds spent running work under the lock (the scheduler's throughput is per busy second). */
  busyMs = 0
  /** Forwards re-run by a backward because the Stage no longer held the microbatch's activations. */
  recomputed = 0
  private tail: Promise<unknown> = Promise.resolve()
  private n = 0
  private lossSum = 0
  private lossN = 0
  private accStep = -1
  private readonly origins = new Set<string>()
  private readonly log: Logger
  /** Bumped whenever the parameters may have changed. */
  private version = 0
  /** ms of the running locked call already timed into other categories (digests, optimizer). */
  private timedInside = 0

  constructor (readonly stage: Stage, private readonly opts: StageWorkerOptions) {
    this.log = (opts.log ?? silentLogger).forComponent('layerswarm:pipeline:stage')
  }

  /** Backward passes accumulated since the last optimizer step. */
  get pending (): number {
    return this.n
  }

  /** Forward of one microbatch (kept for a backward of the same key). */
  async forward (key: string, input: StageInput): Promise<Witnessed<StageOutput>> {
    const r = await this.locked('compute', async () => {
      const out = await this.stage.forward(input, key)
      return { out, w: await this.witness() }
    })
    return { ...r.out, paramsDigest: await this.digestOf(r.w) }
  }

  /** Forward only, for evaluation: nothing is kept for backward. */
  async evaluate (input: StageInput): Promise<StageOutput> {
    return await this.locked('compute', async () => await this.stage.forward(input))
  }

  /** Backward of `key`: recomputes its forward from `input` when the Stage no longer holds it. Returns dinput (null on stage 0). */
  async backward (key: string, input: StageInput, dout: Float32Array, tag: BackwardTag): Promise<Witnessed<{ dinput: Float32Array | null }>> {
    const r = await this.locked('compute', async () => {
      await this.beforeAccumulate(tag)
      if (!this.stage.holds(key)) {
        this.recomputed++
        await this.stage.forward(input, key)
      }
      const dinput = await this.stage.backward(dout, key)
      // the weights of this backward, before afterAccumulate may step them
      const w = await this.witness()
      await this.afterAccumulate(tag, tag.loss)
      return { dinput, w }
    })
    return { dinput: r.dinput, paramsDigest: await this.digestOf(r.w) }
  }

  /** Last stage: forward with targets, then backward from the loss, as one unit. */
  async trainLast (input: StageInput, tag: Omit<BackwardTag, 'loss'>): Promise<Witnessed<{ loss: number, count: number, dinput: Float32Array | null }>> {
    const r = await this.locked('compute', async () => {
      await this.beforeAccumulate(tag)
      const out = await this.stage.forward(input)
      const dinput = await this.stage.backward()
      const loss = out.loss as number
      const w = await this.witness()
      await this.afterAccumulate(tag, loss)
      return { loss, count: out.count as number, dinput, w }
    })
    return { loss: r.loss, count: r.count, dinput: r.dinput, paramsDigest: await this.digestOf(r.w) }
  }

  /**
   * Applies the accumulated gradients (mean over the backward passes since the last step) with
   * the schedule's rate at `step` (0-based). Nothing accumulated: no update, returns null.
   */
  async step (step: number): Promise<StepRecordOut | null> {
    return await this.locked('compute', async () => await this.flush(step))
  }

  /** Applies what is accumulated (the run ended mid-step). */
  async flushPending (): Promise<StepRecordOut | null> {
    return await this.locked('compute', async () => await this.flush(this.accStep))
  }

  /**
   * A self-stepping stage learnt that the swarm finished 0-based step `step` (stage 0 stepped past
   * it): gradients accumulated for it or an older step are complete, so they are applied now
   * instead of when the next microbatch happens to arrive here (which may be never, at a run's end).
   */
  async flushThrough (step: number): Promise<StepRecordOut | null> {
    return await this.locked('compute', async () => this.opts.auto && this.n > 0 && this.accStep <= step ? await this.flush(this.accStep) : null)
  }

  /**
   * Runs `fn` with the stage idle (checkpoints, state snapshots, averaging, disposal). Kept forwards
   * are given up only when `fn` wrote the parameters (ParameterSet.load: an averaging write-back), so
   * a read-only section (a snapshot for a joiner, a checkpoint) costs the microbatches in flight no
   * recompute; the weights' version is bumped either way (their digest is taken again).
   */
  async exclusive<R> (fn: () => Promise<R>): Promise<R> {
    return await this.locked('averaging', async () => {
      const writes = this.stage.params.writes
      try {
        return await fn()
      } finally {
        if (this.stage.params.writes !== writes) this.stage.dropKept()
        this.version++
      }
    })
  }

  /** The current weights copied for their digest (call under the lock); null without a witness. */
  private async witness (): Promise<{ digest: Promise<string> } | null> {
    if (this.opts.witness == null) return null
    const t0 = performance.now()
    try {
      return await this.opts.witness.begin(this.stage, this.version)
    } finally {
      this.inside('verification', t0)
    }
  }

  /** The digest `witness()` began, awaited outside the lock (the hash overlaps the next computation); '' without a witness. */
  private async digestOf (w: { digest: Promise<string> } | null): Promise<string> {
    if (w == null) return ''
    return await (this.opts.profile?.time('verification', async () => await w.digest) ?? w.digest)
  }

  /** A phase of the running locked call since `t0`, timed into `cat` (and not into the call's own category). */
  private inside (cat: ProfileCategory, t0: number): void {
    const ms = performance.now() - t0
    this.timedInside += ms
    this.opts.profile?.add(cat, ms)
  }

  private async beforeAccumulate (tag: BackwardTag): Promise<void> {
    if (this.opts.auto && this.n > 0 && tag.step > this.accStep) await this.flush(this.accStep)
  }

  private async afterAccumulate (tag: BackwardTag, loss: number | undefined): Promise<void> {
    this.n++
    this.accStep = Math.max(this.accStep, tag.step)
    this.origins.add(tag.origin)
    if (loss != null && Number.isFinite(loss)) { this.lossSum += loss; this.lossN++ }
    if (this.opts.auto && this.n >= tag.micros * this.origins.size) await this.flush(this.accStep)
  }

  private async flush (step: number): Promise<StepRecordOut | null> {
    if (this.n === 0) return null
    const lr = learningRate(Math.max(0, step), this.opts.schedule)
    const n = this.n
    const t0 = performance.now()
    const r = await this.stage.update({ lr, gradScale: 1 / n })
    await this.stage.zeroGrad()
    this.inside('optimizer', t0)
    const rec: StepRecordOut = {
      step: step + 1,
      loss: this.lossN > 0 ? this.lossSum / this.lossN : NaN,
      lr,
      microbatches: n,
      applied: r.applied,
      gradNorm: r.gradNorm
    }
    this.n = 0
    this.lossSum = 0
    this.lossN = 0
    this.accStep = -1
    this.origins.clear()
    this.steps++
    // parameters changed: a kept forward no longer matches them
    this.stage.dropKept()
    this.version++
    if (!r.applied) this.log.warn('non-finite gradient: step skipped', { step: rec.step })
    this.opts.onStep?.(rec)
    return rec
  }

  /** Runs `fn` alone on the stage; its time goes to `cat` (less what it timed inside), the wait for the lock to lockWait. */
  private async locked<R> (cat: ProfileCategory, fn: () => Promise<R>): Promise<R> {
    const profile = this.opts.profile
    const queued = profile?.start() ?? performance.now()
    const timed = async (): Promise<R> => {
      const t0 = performance.now()
      profile?.add('lockWait', t0 - queued)
      this.timedInside = 0
      try {
        return await fn()
      } finally {
        const ms = performance.now() - t0
        this.busyMs += ms
        profile?.busyFor(ms)
        profile?.add(cat, ms - this.timedInside)
      }
    }
    const run = this.tail.then(timed, timed)
    this.tail = run.catch(() => {})
    return await run
  }
}
