// Single-process training loop (the reference the swarm is measured against): batches from a
// deterministic data source, forward/backward over every stage in this process, AdamW with
// warmup + cosine schedule, periodic held-out eval and atomic checkpoints, exact resume.
//
// Exact resume: everything a step depends on is either in the checkpoint (parameters, AdamW
// moments and step) or a pure function of the step number (the batch of (step, micro), the
// learning rate), so a resumed run repeats the uninterrupted run's losses bit for bit on a
// deterministic backend.
import { join } from 'node:path'
import { mkdir } from 'node:fs/promises'
import type { ComputeBackend } from '../contracts/backend.ts'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { ModelConfigError, type ModelConfig } from '../model/config.ts'
import { GptModel } from '../model/gpt.ts'
import { learningRate, validateLrSchedule, type LrSchedule } from '../model/lr-schedule.ts'
import type { AdamWOptions } from '../model/optimizer.ts'
import type { TrainData } from '../data/index.ts'
import { CheckpointMismatchError, checkpointFileName, saveCheckpoint, type Checkpoint } from './checkpoint.ts'

export interface TrainerOptions {
  readonly backend: ComputeBackend
  readonly config: ModelConfig
  readonly data: TrainData
  /** Total steps of the run (the schedule's length); a resumed run continues to this step. */
  readonly steps: number
  /** B: sequences per microbatch. */
  readonly batchSize: number
  /** T: tokens per sequence; default the context length. */
  readonly seqLen?: number
  /** Microbatches accumulated per step (default 1). */
  readonly microbatches?: number
  readonly schedule: LrSchedule
  readonly optimizer?: Partial<AdamWOptions>
  /** Init seed (and recorded for the data). */
  readonly seed: number
  /** S and k of an in-process split (default 1 stage, no bottleneck). */
  readonly stages?: number
  readonly bottleneck?: number
  /** Eval every this many steps (0 = only at the end); default 0. */
  readonly evalEvery?: number
  /** Held-out batches per periodic eval; default 8. */
  readonly evalBatches?: number
  /** Held-out batches of the final eval; default evalBatches. */
  readonly finalEvalBatches?: number
  readonly checkpointDir?: string
  /** Checkpoint every this many steps (0 = only at the end); needs checkpointDir. */
  readonly checkpointEvery?: number
  /** Saved in each checkpoint's model file (e.g. the tokenizer name, for sampling). */
  readonly info?: Record<string, unknown>
  /** Continue from this checkpoint (its config and layout must match). */
  readonly resume?: Checkpoint
  /** Stop after the current step (a checkpoint is written when checkpointDir is set). */
  readonly signal?: AbortSignal
  readonly logger?: Logger
  readonly onStep?: (r: StepRecord) => void
  readonly onEval?: (r: EvalRecord) => void
  readonly onCheckpoint?: (path: string, step: number) => void
}

export interface StepRecord {
  /** Steps completed (1-based index of this step). */
  readonly step: number
  readonly loss: number
  readonly lr: number
  readonly gradNorm: number
  /** False when the optimizer skipped the step (non-finite gradient). */
  readonly applied: boolean
  /** Tokens trained on in this run so far. */
  readonly tokens: number
  /** Training seconds in this run so far (eval and checkpoint time excluded). */
  readonly trainSeconds: number
}

export interface EvalRecord {
  readonly step: number
  readonly loss: number
}

export interface TrainResult {
  /** Step the run started at (0, or the resumed checkpoint's step). */
  readonly startStep: number
  /** Steps completed at the end. */
  readonly endStep: number
  /** Mean training loss of each step of this run. */
  readonly losses: number[]
  readonly evals: EvalRecord[]
  readonly tokens: number
  /** Wall seconds of the whole run, and of training steps only. */
  readonly seconds: number
  readonly trainSeconds: number
  readonly tokensPerSecond: number
  readonly skippedSteps: number
  readonly params: number
  readonly interrupted: boolean
  readonly lastCheckpoint: string | null
}

export async function trainLocal (opts: TrainerOptions): Promise<TrainResult> {
  const log = (opts.logger ?? silentLogger).forComponent('layerswarm:trainer')
  const { backend, config, data } = opts
  const B = opts.batchSize
  const T = opts.seqLen ?? config.blockSize
  const M = opts.microbatches ?? 1
  const S = opts.stages ?? 1
  const k = opts.bottleneck ?? 0
  const positiveInt = (name: string, v: number, min = 1): void => {
    if (!Number.isSafeInteger(v) || v < min) throw new ModelConfigError(`${name} must be an integer >= ${min}, got ${v}`)
  }
  positiveInt('steps', opts.steps)
  positiveInt('batch size', B)
  positiveInt('microbatches', M)
  positiveInt('eval interval', opts.evalEvery ?? 0, 0)
  positiveInt('eval batches', opts.evalBatches ?? 8)
  positiveInt('final eval batches', opts.finalEvalBatches ?? 1)
  positiveInt('checkpoint interval', opts.checkpointEvery ?? 0, 0)
  if (!Number.isSafeInteger(T) || T < 1 || T > config.blockSize) throw new ModelConfigError(`sequence length must be in [1, ${config.blockSize}], got ${T}`)
  const schedule = validateLrSchedule(opts.schedule)
  const layout = { stages: S, bottleneck: k, stage: null }

  let startStep = 0
  if (opts.resume != null) startStep = checkResume(opts.resume, config, layout, opts.steps)
  const model = new GptModel(backend, config, { stages: S, bottleneck: k, seed: opts.seed, params: opts.resume?.params, optimizer: opts.optimizer })
  try {
    if (opts.resume?.optimizer != null) await model.importOptimizer(opts.resume.optimizer)
    log.info('training', { params: model.numel, startStep, steps: opts.steps, B, T, microbatches: M, backend: backend.info.name })

    const available = data.evalBatchCount?.(B, T) ?? Infinity
    const evalLoss = async (batches: number): Promise<number> => {
      let sum = 0
      const n = Math.max(1, Math.min(batches, available))
      for (let i = 0; i < n; i++) {
        const b = await data.evalBatch(i, B, T)
        sum += await model.forward(b.inputs, B, T, b.targets) as number
      }
      return sum / n
    }
    const trainState = (step: number, tokensSoFar: number): Record<string, unknown> => ({
      step,
      tokens: tokensSoFar,
      seed: opts.seed,
      batchSize: B,
      seqLen: T,
      microbatches: M,
      schedule,
      data: data.description ?? {}
    })
    let lastCheckpoint: string | null = null
    const checkpoint = async (step: number, tokensSoFar: number): Promise<void> => {
      const dir = opts.checkpointDir as string
      await mkdir(dir, { recursive: true })
      const path = join(dir, checkpointFileName(step))
      await saveCheckpoint(path, {
        config,
        layout,
        params: await model.downloadParams(),
        optimizer: await model.exportOptimizer(),
        train: trainState(step, tokensSoFar),
        info: opts.info
      })
      lastCheckpoint = path
      opts.onCheckpoint?.(path, step)
      log.debug('checkpoint written', { path, step })
    }

    const priorTokens = typeof opts.resume?.train?.tokens === 'number' ? opts.resume.train.tokens : 0
    const losses: number[] = []
    const evals: EvalRecord[] = []
    let tokens = 0
    let trainMs = 0
    let skipped = 0
    let interrupted = false
    let step = startStep
    const t0 = performance.now()
    while (step < opts.steps) {
      if (opts.signal?.aborted === true) { interrupted = true; break }
      const ts = performance.now()
      const lr = learningRate(step, schedule)
      await model.zeroGrad()
      let lossSum = 0
      for (let micro = 0; micro < M; micro++) {
        const b = await data.trainBatch(step, micro, B, T)
        lossSum += await model.forward(b.inputs, B, T, b.targets) as number
        await model.backward()
      }
      const r = await model.update({ lr, gradScale: 1 / M })
      if (!r.applied) { skipped++; log.warn('non-finite gradient: step skipped', { step }) }
      step++
      tokens += B * T * M
      trainMs += performance.now() - ts
      const loss = lossSum / M
      losses.push(loss)
      opts.onStep?.({ step, loss, lr, gradNorm: r.gradNorm, applied: r.applied, tokens, trainSeconds: trainMs / 1000 })

      const evalEvery = opts.evalEvery ?? 0
      if (evalEvery > 0 && step % evalEvery === 0 && step < opts.steps) {
        const e = { step, loss: await evalLoss(opts.evalBatches ?? 8) }
        evals.push(e)
        opts.onEval?.(e)
      }
      const every = opts.checkpointEvery ?? 0
      if (opts.checkpointDir != null && every > 0 && step % every === 0 && step < opts.steps) await checkpoint(step, priorTokens + tokens)
    }
    if (!interrupted) {
      const e = { step, loss: await evalLoss(opts.finalEvalBatches ?? opts.evalBatches ?? 8) }
      evals.push(e)
      opts.onEval?.(e)
    }
    if (opts.checkpointDir != null && step > startStep) await checkpoint(step, priorTokens + tokens)
    const seconds = (performance.now() - t0) / 1000
    return {
      startStep,
      endStep: step,
      losses,
      evals,
      tokens,
      seconds,
      trainSeconds: trainMs / 1000,
      tokensPerSecond: trainMs > 0 ? tokens / (trainMs / 1000) : 0,
      skippedSteps: skipped,
      params: model.numel,
      interrupted,
      lastCheckpoint
    }
  } finally {
    model.dispose()
  }
}

/** Checks a checkpoint fits this run; returns the step to continue from. */
function checkResume (ck: Checkpoint, config: ModelConfig, layout: { stages: number, bottleneck: number, stage: null }, steps: number): number {
  const fields = Object.keys(config) as Array<keyof ModelConfig>
  const diff = fields.filter(f => ck.config[f] !== config[f])
  if (diff.length > 0) throw new CheckpointMismatchError(`checkpoint model config differs in ${diff.map(f => `${f} (${ck.config[f]} vs ${config[f]})`).join(', ')}`)
  if (ck.layout.stages !== layout.stages || ck.layout.bottleneck !== layout.bottleneck || ck.layout.stage !== null) {
    throw new CheckpointMismatchError(`checkpoint layout ${JSON.stringify(ck.layout)} does not match this run's ${JSON.stringify(layout)}`)
  }
  if (ck.optimizer == null) throw new CheckpointMismatchError('checkpoint has no optimizer state; cannot resume')
  const step = ck.train?.step
  if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) throw new CheckpointMismatchError('checkpoint has no valid train.step')
  if (step > steps) throw new CheckpointMismatchError(`checkpoint is at step ${step}, past this run's ${steps} steps`)
  return step
}
