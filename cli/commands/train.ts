// `layerswarm train --local`: single-process training of the GPT on a corpus (the reference run
// the swarm is compared with). Progress on stderr (a bar on a TTY, plain lines otherwise); with
// --report FILE, one JSON object with the run's figures. SIGINT/SIGTERM stop after the current
// step, writing a checkpoint when --checkpoint-dir is set, so --resume continues the run.
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { ConfigError } from '../../core/errors.ts'
import { loadTrainData } from '../../core/data/index.ts'
import { DEFAULT_ADAMW } from '../../core/model/optimizer.ts'
import { resolveBackend } from '../../core/node/backend-choice.ts'
import { CheckpointMismatchError, loadCheckpoint, type Checkpoint } from '../../core/train/checkpoint.ts'
import { writeFileAtomic } from '../../core/files.ts'
import { ProgressReporter } from '../../core/train/progress.ts'
import { trainLocal, type StepRecord } from '../../core/train/trainer.ts'
import { intFlag, makeLogger, numFlag, resolveCheckpointPath, resolveModelConfig, withBackend } from '../flags.ts'
import { pluginShorthandOptions } from '../plugin-flags.ts'

export interface TrainFlags {
  local?: boolean
  model?: string
  steps?: string
  data?: string
  tokenizer?: string
  report?: string
  batch?: string
  seqLen?: string
  micro?: string
  lr?: string
  minLr?: string
  warmup?: string
  weightDecay?: string
  gradClip?: string
  seed?: string
  evalEvery?: string
  evalBatches?: string
  checkpointDir?: string
  checkpointEvery?: string
  resume?: string
  backend?: string
  threads?: string
  allowSoftwareGpu?: boolean
  gpuF16?: boolean
  stages?: string
  bottleneck?: string
  logLevel?: string
}

export function register (program: Command): void {
  program.command('train')
    .description('train the GPT; --local: in this process, on a corpus (the single-process reference)')
    .option('--local', 'train in this process (swarm training runs through `layerswarm start`)')
    .option('--model <preset|file>', 'model preset (tiny, small) or a JSON config file (default: tiny; on --resume: the checkpoint\'s)')
    .option('--steps <n>', 'total optimizer steps of the run (the schedule\'s length)', '1000')
    .option('--data <path>', 'text/JSONL file or folder, or a `data prepare` folder (default: the shipped corpus)')
    .option('--tokenizer <name>', 'byte or gpt2 (default byte; a prepared folder\'s own); a preset takes its vocabulary size from it')
    .option('--report <file>', 'write a JSON report of the run here')
    .option('--batch <n>', 'B: sequences per microbatch', '16')
    .option('--seq-len <n>', 'T: tokens per sequence (default: the model\'s context length)')
    .option('--micro <n>', 'microbatches accumulated per step', '1')
    .option('--lr <x>', 'peak learning rate', '1e-3')
    .option('--min-lr <x>', 'final learning rate of the cosine decay (default: lr/10)')
    .option('--warmup <n>', 'linear warmup steps (default: min(100, steps/10))')
    .option('--weight-decay <x>', 'AdamW decoupled weight decay on matrices and embeddings', String(DEFAULT_ADAMW.weightDecay))
    .option('--grad-clip <x>', 'clip the global gradient norm to this (0: off)', String(DEFAULT_ADAMW.gradClip))
    .option('--seed <n>', 'seed of the init and of the batch draws', '0')
    .option('--eval-every <n>', 'held-out eval every n steps (default: steps/10; 0: only at the end)')
    .option('--eval-batches <n>', 'held-out batches per periodic eval (the final eval reads the whole held-out split, up to 256 batches)', '8')
    .option('--checkpoint-dir <dir>', 'write checkpoints here (step-NNNNNN.safetensors + .optim.safetensors)')
    .option('--checkpoint-every <n>', 'checkpoint every n steps (0: only at the end)', '0')
    .option('--resume <file|dir>', 'continue from a checkpoint file, or the latest in a folder')
    .option('--backend <name>', 'compute backend: cpu, webgpu, a built-in plugin name, or the ./path or package of a backend plugin', 'cpu')
    .option('--threads <n>', 'backend threads (CPU backend)')
    .option('--allow-software-gpu', 'WebGPU backend: accept a software adapter (llvmpipe; correctness runs only)')
    .option('--gpu-f16', 'WebGPU backend: f16 matmuls with f32 accumulation (needs the adapter\'s shader-f16)')
    .option('--stages <n>', 'split the model into n stages run in sequence (pipeline reference)', '1')
    .option('--bottleneck <k>', 'learned bottleneck width at stage boundaries (0: off)', '0')
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent', 'info')
    .action(async (flags: TrainFlags) => { await runTrain(flags) })
}

export async function runTrain (flags: TrainFlags): Promise<void> {
  if (flags.local !== true) throw new ConfigError('only --local training exists in `train`; a swarm node trains through `layerswarm start`')
  const logger = makeLogger(flags.logLevel)
  const log = logger.forComponent('layerswarm:train')
  const steps = intFlag('--steps', flags.steps, 1)
  const B = intFlag('--batch', flags.batch, 1)
  const micro = intFlag('--micro', flags.micro, 1)
  const seed = intFlag('--seed', flags.seed, 0)
  const lr = numFlag('--lr', flags.lr, 0)
  const minLr = flags.minLr != null ? numFlag('--min-lr', flags.minLr, 0) : lr / 10
  const warmup = flags.warmup != null ? intFlag('--warmup', flags.warmup, 0) : Math.min(100, Math.floor(steps / 10))
  const evalEvery = flags.evalEvery != null ? intFlag('--eval-every', flags.evalEvery, 0) : Math.max(1, Math.round(steps / 10))
  const evalBatches = intFlag('--eval-batches', flags.evalBatches, 1)
  const checkpointEvery = intFlag('--checkpoint-every', flags.checkpointEvery, 0)
  const stages = intFlag('--stages', flags.stages, 1)
  const bottleneck = intFlag('--bottleneck', flags.bottleneck, 0)
  const threads = flags.threads != null ? intFlag('--threads', flags.threads, 1) : undefined
  const backendChoice = await resolveBackend(flags.backend ?? 'cpu')

  let resume: Checkpoint | undefined
  if (flags.resume != null) {
    const path = await resolveCheckpointPath(flags.resume)
    resume = await loadCheckpoint(path)
    log.info('resuming', { checkpoint: path, step: resume.train?.step })
  }
  // a prepared shard folder (`data prepare`) is read lazily and names its own tokenizer
  const corpus = await loadTrainData({ path: flags.data != null ? resolve(flags.data) : undefined, tokenizer: flags.tokenizer, seed })
  const config = resume?.config ?? await resolveModelConfig(flags.model ?? 'tiny', corpus.tokenizer.vocabSize)
  if (resume != null && flags.model != null) {
    const asked = await resolveModelConfig(flags.model, corpus.tokenizer.vocabSize)
    if (JSON.stringify(asked) !== JSON.stringify(config)) throw new CheckpointMismatchError(`--model ${flags.model} differs from the checkpoint's model ${JSON.stringify(config)}`)
  }
  if (corpus.tokenizer.vocabSize > config.vocabSize) {
    throw new ConfigError(`the ${corpus.tokenizer.name} tokenizer has ${corpus.tokenizer.vocabSize} tokens but the model's vocabulary is ${config.vocabSize}`)
  }
  const T = flags.seqLen != null ? intFlag('--seq-len', flags.seqLen, 1) : config.blockSize
  const unigram = corpus.unigramBaseline()
  log.info('data', { path: corpus.path, dataId: corpus.dataId, tokenizer: corpus.tokenizer.name, trainTokens: corpus.trainTokens, heldOutTokens: corpus.heldOutTokens, unigramEvalLoss: round(unigram, 4) })

  const abort = new AbortController()
  const onSignal = (): void => {
    if (abort.signal.aborted) process.exit(1)
    log.warn('stopping after the current step (signal again to exit now)')
    abort.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const progress = new ProgressReporter(process.stderr, Math.max(1, Math.round(steps / 20)))
  const startStep = typeof resume?.train?.step === 'number' ? resume.train.step : 0
  const t0 = performance.now()
  let lastEval: number | undefined
  const curve: Array<[number, number]> = []
  try {
    const result = await withBackend(backendChoice, threads, logger, async backend => {
      log.info('backend', { name: backend.info.name, device: backend.info.device })
      return await trainLocal({
        backend,
        config,
        data: corpus.data,
        steps,
        batchSize: B,
        seqLen: T,
        microbatches: micro,
        schedule: { maxLr: lr, minLr, warmupSteps: warmup, totalSteps: steps },
        optimizer: {
          weightDecay: numFlag('--weight-decay', flags.weightDecay, 0),
          gradClip: numFlag('--grad-clip', flags.gradClip, 0)
        },
        seed,
        stages,
        bottleneck,
        evalEvery,
        evalBatches,
        finalEvalBatches: 256,
        checkpointDir: flags.checkpointDir != null ? resolve(flags.checkpointDir) : undefined,
        checkpointEvery,
        info: { tokenizer: corpus.tokenizer.name },
        resume,
        signal: abort.signal,
        logger,
        onStep: (r: StepRecord) => {
          curve.push([r.step, r.loss])
          const rate = r.tokens / Math.max(1e-9, r.trainSeconds)
          const wall = (performance.now() - t0) / 1000
          const perStep = wall / (r.step - startStep)
          progress.update({ step: r.step, totalSteps: steps, loss: r.loss, tokensPerSecond: rate, etaSeconds: perStep * (steps - r.step), lr: r.lr, evalLoss: lastEval })
        },
        onEval: e => {
          lastEval = e.loss
          progress.note(`eval step ${e.step}: held-out loss ${e.loss.toFixed(4)} (unigram ${unigram.toFixed(4)})`)
        },
        onCheckpoint: (path, step) => { progress.note(`checkpoint step ${step}: ${path}`) }
      })
    }, pluginShorthandOptions(backendChoice.name, flags))
    progress.done()
    const finalEval = result.evals.at(-1)
    const report = {
      tokens: result.tokens,
      steps: result.endStep - result.startStep,
      start_step: result.startStep,
      end_step: result.endStep,
      seconds: round(result.seconds, 3),
      train_seconds: round(result.trainSeconds, 3),
      tokens_per_s: round(result.tokensPerSecond, 1),
      loss_first: result.losses[0] ?? null,
      loss_last: result.losses.at(-1) ?? null,
      loss_last10_mean: result.losses.length > 0 ? mean(result.losses.slice(-10)) : null,
      eval_loss: result.interrupted ? null : finalEval?.loss ?? null,
      unigram_eval_loss: unigram,
      params: result.params,
      skipped_steps: result.skippedSteps,
      interrupted: result.interrupted,
      checkpoint: result.lastCheckpoint,
      model: config,
      stages,
      bottleneck,
      batch: B,
      seq_len: T,
      microbatches: micro,
      schedule: { max_lr: lr, min_lr: minLr, warmup, total_steps: steps },
      seed,
      data: { path: corpus.path, data_id: corpus.dataId ?? null, tokenizer: corpus.tokenizer.name, train_tokens: corpus.trainTokens, held_out_tokens: corpus.heldOutTokens },
      loss_curve: downsample(curve, 50),
      eval_curve: result.evals.map(e => [e.step, e.loss])
    }
    if (flags.report != null) await writeFileAtomic(resolve(flags.report), new TextEncoder().encode(JSON.stringify(report, null, 2) + '\n'))
    log.info(result.interrupted ? 'interrupted' : 'done', {
      steps: report.steps,
      tokensPerS: report.tokens_per_s,
      lossFirst: round(report.loss_first ?? NaN, 4),
      lossLast: round(report.loss_last ?? NaN, 4),
      evalLoss: report.eval_loss != null ? round(report.eval_loss, 4) : null,
      unigramEvalLoss: round(unigram, 4)
    })
  } finally {
    corpus.close()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

function round (x: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

function mean (xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length
}

/** At most n points: the mean loss over each of n equal windows, labelled by the window's last step. */
function downsample (curve: Array<[number, number]>, n: number): Array<[number, number]> {
  if (curve.length <= n) return curve.map(([s, l]) => [s, round(l, 5)])
  const out: Array<[number, number]> = []
  for (let i = 0; i < n; i++) {
    const a = Math.floor(i * curve.length / n)
    const b = Math.floor((i + 1) * curve.length / n)
    const w = curve.slice(a, b)
    out.push([w[w.length - 1][0], round(mean(w.map(p => p[1])), 5)])
  }
  return out
}
