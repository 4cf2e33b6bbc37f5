// `layerswarm bench swarm`: is a swarm as fast as one process on the same cores? It trains the same
// model on the same tokens twice (bench/swarm-run.ts): `train --local` on every core (the
// baseline), then a swarm of S processes on 127.0.0.1, one per stage, and reports
//
//   tokens_per_s   the swarm's (stage 0 training to its last step) against train --local's
//   eval_loss      held-out loss of the swarm's assembled model against train --local's, on the
//                  same batches (the first min(256, all) held-out batches of B x T, as train --local)
//   tokens         training tokens stage 0 completed against train --local's (fewer: dropped microbatches)
//   unigram_loss   the data's held-out loss of token frequencies alone: the loss to beat
//   profile        per stage: where a microbatch's time went (core/pipeline/pipeline-profile.ts),
//                  also as rows `stage N <category>` in ms per microbatch (no baseline)
//
// ratio = value / baseline for both rows (tokens/s: > 1 is faster; eval_loss: < 1 is better).
//
// --data DIR (a `layerswarm data prepare` folder, or text) and --seq-len T reach both runs and the
// eval alike; the default is the shipped corpus read as bytes at the model's context.
//
//   npx tsx bench/swarm.ts [--stages 2] [--steps 30] [--model tiny] [--data DIR --seq-len T] [--lr X] [--grad-clip X] [--codec none] [--json]
import '../core/polyfills.ts'
import { statSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { Tokens } from '../core/contracts/tokens.ts'
import { ConfigError } from '../core/errors.ts'
import { DEMO_DEFAULT_COMPRESSION } from '../core/demo/demo-compression.ts'
import { loadDemoData } from '../core/demo/demo-data.ts'
import { evaluateModel } from '../core/demo/model-eval.ts'
import { modelPreset } from '../core/model/config.ts'
import { PluginHost } from '../core/node/plugin-host.ts'
import { PROFILE_CATEGORIES } from '../core/pipeline/pipeline-profile.ts'
import { mergeStageCheckpoints } from '../core/train/merge-checkpoints.ts'
import { formatTable, machineInfo, round, type BenchReport, type BenchResult } from './report.ts'
import { runLocal, runSwarm, type StageProfile, type SwarmBenchSettings } from './swarm-run.ts'
import { SwarmBenchError } from './swarm-errors.ts'

export interface SwarmBenchOptions {
  readonly stages?: number
  readonly steps?: number
  readonly model?: string
  readonly batch?: number
  readonly microbatches?: number
  /** Microbatches in flight at stage 0 (default: all of a step's). */
  readonly maxInflight?: number
  readonly lr?: number
  readonly seed?: number
  /** `none`: raw f32 boundaries and no bottleneck; default the demo's compression. */
  readonly codec?: string
  /** Learned bottleneck width k at the boundaries of both runs (0: none); default the demo's (none with codec none). */
  readonly bottleneck?: number
  /** Pin each training node to its own core where possible (default true). */
  readonly pin?: boolean
  /** Held-out batches of the final evals (default 256, as train --local; capped by the split). */
  readonly evalBatches?: number
  /** Training data: a `layerswarm data prepare` folder (or text); default the shipped corpus, bytes. */
  readonly data?: string
  /** T, tokens per sequence of both runs and the eval (default: the model's context). */
  readonly seqLen?: number
  /** Gradient clipping norm of both runs (default 1; 0: off, the swarm then computes what train --local does). */
  readonly gradClip?: number
  readonly progress?: (line: string) => void
  readonly signal?: AbortSignal
}

export const SWARM_BENCH_DEFAULTS = { stages: 2, steps: 30, model: 'tiny', batch: 8, microbatches: 8, lr: 3e-3, seed: 0, evalBatches: 256 } as const

/** The settings both runs use, each option checked (ConfigError: exit 2). */
export function swarmBenchSettings (o: SwarmBenchOptions): SwarmBenchSettings & { evalBatches: number } {
  const d = SWARM_BENCH_DEFAULTS
  const int = (name: string, v: number | undefined, def: number, min: number, max: number): number => {
    const x = v ?? def
    if (!Number.isSafeInteger(x) || x < min || x > max) throw new ConfigError(`--${name} must be an integer in [${min}, ${max}], got ${String(v)}`)
    return x
  }
  const model = o.model ?? d.model
  let preset: { nLayer: number, blockSize: number }
  try { preset = modelPreset(model) } catch { throw new ConfigError(`--model ${model}: bench swarm takes a preset (tiny, small, llama-20m, ...)`) }
  const stages = int('stages', o.stages, d.stages, 2, preset.nLayer)
  const microbatches = int('microbatches', o.microbatches, d.microbatches, 1, 1024)
  const lr = o.lr ?? d.lr
  if (!(Number.isFinite(lr) && lr > 0)) throw new ConfigError(`--lr must be a positive number, got ${String(o.lr)}`)
  if (o.gradClip != null && !(Number.isFinite(o.gradClip) && o.gradClip >= 0)) throw new ConfigError(`--grad-clip must be a number >= 0, got ${String(o.gradClip)}`)
  const codec = o.codec ?? DEMO_DEFAULT_COMPRESSION.codec
  const none = codec === 'none'
  return {
    stages,
    steps: int('steps', o.steps, d.steps, 1, 1_000_000),
    model,
    batch: int('batch', o.batch, d.batch, 1, 4096),
    microbatches,
    maxInflight: int('max-inflight', o.maxInflight, microbatches, 1, 1024),
    lr,
    seed: int('seed', o.seed, d.seed, 0, 2 ** 31 - 1),
    codec,
    bottleneck: bottleneckOf(o.bottleneck, none),
    pin: o.pin ?? true,
    evalBatches: int('eval-batches', o.evalBatches, d.evalBatches, 1, 100_000),
    ...(o.data != null ? { data: dataPath(o.data) } : {}),
    ...(o.gradClip != null ? { gradClip: o.gradClip } : {}),
    ...(o.seqLen != null ? { seqLen: int('seq-len', o.seqLen, preset.blockSize, 1, preset.blockSize) } : {})
  }
}

/** --bottleneck k (0: none); without it the demo's k, or none when the codec is none. */
function bottleneckOf (k: number | undefined, none: boolean): number | null {
  if (k == null) return none ? null : DEMO_DEFAULT_COMPRESSION.bottleneck
  if (!Number.isSafeInteger(k) || k < 0 || k > 65536) throw new ConfigError(`--bottleneck must be an integer >= 0 (0: none), got ${String(k)}`)
  return k === 0 ? null : k
}

/** The absolute path of --data, which must exist (checked here so that nothing starts for a typo). */
function dataPath (p: string): string {
  if (p.trim() === '') throw new ConfigError('--data needs a folder made by `layerswarm data prepare` (or a text file or folder)')
  const abs = resolve(p)
  try {
    statSync(abs)
  } catch {
    throw new ConfigError(`--data ${p}: no such file or folder (make one with \`layerswarm data prepare --input FILE --tokenizer gpt2 --out DIR\`)`)
  }
  return abs
}

/** Held-out loss of the model assembled from the swarm's stage checkpoints: train --local's data, T and batches. */
async function evalAssembled (stageFiles: string[], dir: string, s: SwarmBenchSettings & { evalBatches: number }, threads: number): Promise<number> {
  const merged = await mergeStageCheckpoints(stageFiles, join(dir, 'model.safetensors'))
  const data = await loadDemoData(s.data, undefined, s.seed)
  const host = new PluginHost({ choices: { [Tokens.ComputeBackend]: 'backend-cpu' }, pluginOptions: { 'backend-cpu': { threads } } })
  try {
    await host.load(['backend-cpu'])
    await host.start()
    const backend = host.container.resolve<ComputeBackend>(Tokens.ComputeBackend)
    const r = await evaluateModel(backend, merged.checkpoint, data, {
      evalBatches: s.evalBatches,
      batch: s.batch,
      ...(s.seqLen != null ? { seqLen: s.seqLen } : {}),
      sample: { prompt: '', tokens: 0, temperature: 1, seed: s.seed }
    })
    if (r.evalLoss == null) throw new SwarmBenchError(`the held-out split is shorter than one batch of ${s.batch} x ${s.seqLen ?? merged.checkpoint.config.blockSize} tokens`)
    return r.evalLoss
  } finally {
    await host.stop()
    data.close()
  }
}

/** A result row; ratio = value / baseline of the values as reported. */
function row (name: string, value: number, unit: string, baseline: { name: string, value: number } | null): BenchResult {
  const v = round(value, 4)
  const b = baseline != null ? round(baseline.value, 4) : null
  return { name, value: v, unit, baseline: baseline != null && b != null ? { name: baseline.name, value: b } : null, ratio: b != null ? v / b : null }
}

/** Rows `stage N <category>`: ms per microbatch, the categories that took any time, and each stage's busy share. */
function profileRows (stages: StageProfile[]): BenchResult[] {
  const out: BenchResult[] = []
  for (const st of stages) {
    const p = st.profile
    if (p == null) continue
    for (const c of PROFILE_CATEGORIES) if (p.perMicrobatchMs[c] > 0) out.push(row(`stage ${st.stage} ${c}`, p.perMicrobatchMs[c], 'ms/microbatch', null))
    if (p.wallSeconds > 0) out.push(row(`stage ${st.stage} busy`, p.busySeconds / p.wallSeconds, 'share of wall time', null))
  }
  return out
}

export async function benchSwarm (o: SwarmBenchOptions = {}): Promise<BenchReport & { settings: Record<string, unknown>, profile: StageProfile[], swarm: Record<string, unknown> }> {
  const s = swarmBenchSettings(o)
  const say = o.progress ?? (() => {})
  const machine = machineInfo()
  const cores = machine.cores
  const dir = await mkdtemp(join(os.tmpdir(), 'lsw-bsw-'))
  try {
    const local = await runLocal(s, dir, cores, say, o.signal)
    say(`local: ${round(local.tokensPerS, 0)} tokens/s, held-out loss ${round(local.evalLoss, 4)}`)
    const swarm = await runSwarm(s, dir, cores, say, o.signal)
    say(`swarm: ${round(swarm.tokensPerS, 0)} tokens/s over ${round(swarm.trainSeconds, 1)} s; evaluating the assembled model`)
    const evalLoss = await evalAssembled(swarm.stageFiles, dir, s, cores)
    say(`swarm: held-out loss ${round(evalLoss, 4)}`)
    machine.loadAvgEnd = round(os.loadavg()[0], 2)
    const compression = s.codec === 'none' ? 'none (raw f32)' : `${s.codec}, bottleneck ${s.bottleneck ?? 0}`
    return {
      suite: 'swarm',
      backend: `layerswarm swarm (${s.stages} processes, ${swarm.threadsPerNode} thread(s) each)`,
      device: `cpu, ${cores} cores`,
      machine,
      baseline: { name: 'train --local', threads: local.threads, note: 'the same model, tokens, seed and steps in one process on every core' },
      settings: { ...s, compression },
      swarm: { pinned: swarm.pinned, pin: swarm.pinNote, threadsPerNode: swarm.threadsPerNode, trainSeconds: round(swarm.trainSeconds, 3), tokens: swarm.tokens, localTrainSeconds: local.trainSeconds, pids: [...swarm.pids, local.pid] },
      results: [
        row('tokens_per_s', swarm.tokensPerS, 'tokens/s', { name: 'train --local', value: local.tokensPerS }),
        row('eval_loss', evalLoss, 'nats/token', { name: 'train --local', value: local.evalLoss }),
        row('tokens', swarm.tokens, 'tokens', { name: 'train --local', value: local.tokens }),
        row('unigram_loss', local.unigramLoss, 'nats/token', null),
        ...profileRows(swarm.stages)
      ],
      profile: swarm.stages
    }
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => {})
  }
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      stages: { type: 'string' }, steps: { type: 'string' }, model: { type: 'string' }, microbatches: { type: 'string' },
      codec: { type: 'string' }, data: { type: 'string' }, 'seq-len': { type: 'string' }, lr: { type: 'string' }, 'grad-clip': { type: 'string' }, 'no-pin': { type: 'boolean' }, json: { type: 'boolean' }
    }
  })
  const num = (v: string | undefined): number | undefined => v != null ? Number(v) : undefined
  const report = await benchSwarm({
    stages: num(values.stages), steps: num(values.steps), model: values.model, microbatches: num(values.microbatches), codec: values.codec,
    data: values.data, seqLen: num(values['seq-len']), lr: num(values.lr), gradClip: num(values['grad-clip']),
    pin: values['no-pin'] !== true, progress: line => { process.stderr.write(line + '\n') }
  })
  process.stdout.write(values.json === true ? JSON.stringify(report) + '\n' : formatTable(report) + '\n')
}
