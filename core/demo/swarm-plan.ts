// What the demo swarm looks like: which stage each training node serves, and the exact
// `layerswarm start` arguments of every node, and the run manifest they share. Every training node gets the same run flags (the
// run manifest's hash is the run id: nodes with different flags would refuse each other's work).
import { validateModelConfig } from '../model/config.ts'
import { validateManifest, type RunManifest } from '../run/manifest.ts'
import { buildManifest, parseTrainingOptions } from '../runtime/training-runtime.ts'
import { backendSpec } from '../node/backend-choice.ts'
import { estimateStageMemory, stageMemoryTotals } from '../model/memory-estimate.ts'
import { wholeModelLayout } from '../model/stage-split.ts'
import type { ModelConfig } from '../model/config.ts'
import { DemoConfigError } from './demo-errors.ts'

/** Settings of a demo run, validated by the CLI. */
export interface DemoSettings {
  /** Training nodes (the bootstrap node comes on top). */
  readonly nodes: number
  readonly stages: number
  readonly steps: number
  /** Preset name or an absolute path of a model JSON file. */
  readonly model: string
  /** --backend as given, or the absolute file of a plugin path (core/node/backend-choice.ts). */
  readonly backend: string
  readonly seed: number
  /** B: sequences per microbatch. */
  readonly batch: number
  readonly lr: number
  /** Microbatches per optimizer step (per stage-0 node). */
  readonly microbatches: number
  /** Microbatches in flight per stage-0 node (1: synchronous). */
  readonly maxInflight: number
  /** Held-out batches the demo evaluates the assembled model on. */
  readonly evalBatches: number
  /** Absolute path of the training data; undefined = the shipped corpus. */
  readonly data?: string
  /** Backend worker threads per node (CPU backend). */
  readonly threads: number
  /** Plugin options every node gets, by plugin name (the CLI's shorthand flags, e.g. --gpu-f16: backend-webgpu's f16). */
  readonly pluginOptions?: Readonly<Record<string, Readonly<Record<string, unknown>>>>
  /** HOST:PORT of the dashboard the stage-0 node serves (`start --dashboard`); undefined: none. */
  readonly dashboard?: string
  /** SIGKILL one node of the most-served stage once the swarm reaches this step (0: never). */
  readonly killAtStep: number
  /** Averaging period of the run manifest: nodes of one stage average every this many steps (0: off). */
  readonly averageEvery: number
  /** Codec of activations at the stage boundaries (`none` = raw f32). */
  readonly codec: string
  /** Codec of activation gradients. */
  readonly gradCodec: string
  /** k of the learned bottleneck at every boundary, or null for none. */
  readonly bottleneck: number | null
  /** Every node's --max-memory, bytes (undefined: no budget). */
  readonly maxMemory?: number
  /** Tokenizer of text data (byte, gpt2); a prepared folder names its own. Undefined: the nodes' default (byte). */
  readonly tokenizer?: string
  /** T, tokens per sequence (undefined: the model's context). */
  readonly seqLen?: number
}

/** The demo's memory figures: what each stage and the whole model would need to train (bytes). */
export interface DemoMemoryPlan {
  readonly budget: number | null
  /** The unsplit model's training estimate at the run's B and T (core/model/memory-estimate.ts). */
  readonly wholeModel: number
  readonly stages: number[]
}

/**
 * Estimates at the run's shapes; with a budget, every stage must fit it (a node would refuse its
 * stage at start), and the report says whether the whole model would (the point of a big-model demo).
 */
export function demoMemoryPlan (s: DemoSettings, config: ModelConfig, check = true): DemoMemoryPlan {
  const shapes = { batch: s.batch, seqLen: s.seqLen ?? config.blockSize }
  const stages = stageMemoryTotals(config, s.stages, s.bottleneck ?? 0, shapes)
  const wholeModel = estimateStageMemory(config, wholeModelLayout(config), shapes).total
  if (check && s.maxMemory != null) {
    const over = stages.findIndex(b => b > s.maxMemory!)
    if (over >= 0) {
      throw new DemoConfigError(`--max-memory ${mib(s.maxMemory)} is below stage ${over}'s estimate of ${mib(stages[over])} (stages: ${stages.map(mib).join(', ')}); ` +
        'raise --max-memory, or cut the model into more --stages (smaller stages), or lower --batch / --seq-len')
    }
  }
  return { budget: s.maxMemory ?? null, wholeModel, stages }
}

function mib (b: number): string { return `${(b / 2 ** 20).toFixed(0)} MiB` }

/**
 * Stage of each training node: the first S nodes take one stage each; extra nodes double up
 * stages from stage 1 on (a middle stage first, when there is one), so `--nodes 4 --stages 3`
 * gives stages [0, 1, 2, 1].
 */
export function stageAssignment (nodes: number, stages: number): number[] {
  const out: number[] = []
  for (let i = 0; i < nodes; i++) out.push(i < stages ? i : stages === 1 ? 0 : 1 + ((i - stages) % (stages - 1)))
  return out
}

/** Display names: "s1" for the only node of stage 1, "s1a", "s1b" when two serve it. */
export function nodeNames (assignment: readonly number[]): string[] {
  const count = new Map<number, number>()
  for (const s of assignment) count.set(s, (count.get(s) ?? 0) + 1)
  const seen = new Map<number, number>()
  return assignment.map(s => {
    const k = seen.get(s) ?? 0
    seen.set(s, k + 1)
    return (count.get(s) ?? 0) > 1 ? `s${s}${String.fromCharCode(97 + k)}` : `s${s}`
  })
}

export function bootstrapArgs (dataDir: string): string[] {
  return ['--bootstrap-node', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--log-level', 'info']
}

/** `layerswarm start` arguments of a training node serving `stage`. */
export function trainingNodeArgs (s: DemoSettings, stage: number, dataDir: string, configFile: string, bootstrapAddr: string, manifestFile?: string): string[] {
  return [
    // the run manifest (demoManifest): the flags below describe the same run; the file adds the averaging period
    ...(manifestFile != null ? ['--run-manifest', manifestFile] : []),
    '--data-dir', dataDir,
    '--config', configFile,
    '--listen', '/ip4/127.0.0.1/tcp/0',
    '--bootstrap', bootstrapAddr,
    '--backend', s.backend,
    '--stage', String(stage),
    '--stages', String(s.stages),
    '--model', s.model,
    '--steps', String(s.steps),
    '--seed', String(s.seed),
    '--batch', String(s.batch),
    '--lr', String(s.lr),
    '--microbatches', String(s.microbatches),
    // compression is part of the run manifest, so every node gets the same codecs and bottleneck
    '--codec', s.codec,
    '--grad-codec', s.gradCodec,
    ...(s.bottleneck != null ? ['--bottleneck', String(s.bottleneck)] : []),
    '--max-inflight', String(s.maxInflight),
    // the swarm's own final eval reads the same held-out batches as the demo's eval of the assembled model
    '--eval-batches', String(s.evalBatches),
    ...(s.data != null ? ['--data', s.data] : []),
    ...(s.tokenizer != null ? ['--tokenizer', s.tokenizer] : []),
    ...(s.seqLen != null ? ['--seq-len', String(s.seqLen)] : []),
    ...(s.maxMemory != null ? ['--max-memory', String(s.maxMemory)] : []),
    '--log-level', 'info'
  ]
}

/**
 * Per-node config file: backend options have no flag. They are keyed by the backend's spec (the
 * built-in name, or the file a plugin path names), which reaches the plugin whatever it is named.
 */
export function nodeConfig (s: DemoSettings): Record<string, unknown> {
  const pluginOptions: Record<string, Record<string, unknown>> = { [backendSpec(s.backend)]: { threads: s.threads } }
  for (const [name, opts] of Object.entries(s.pluginOptions ?? {})) pluginOptions[name] = { ...pluginOptions[name], ...opts }
  return { pluginOptions }
}

/**
 * The run manifest of the demo: what the nodes' flags describe (buildManifest), with the averaging
 * period set. `start` has no averaging flag, so every node gets this file (--run-manifest).
 * `averageEvery` 0 (off): a period beyond the last step, so no round ever comes (a manifest's period is >= 1).
 */
export async function demoManifest (s: DemoSettings): Promise<RunManifest> {
  const o = parseTrainingOptions({
    stages: s.stages, model: s.model, steps: s.steps, seed: s.seed, batch: s.batch, lr: s.lr, microbatches: s.microbatches,
    codec: s.codec, gradCodec: s.gradCodec, bottleneck: s.bottleneck ?? 0, ...(s.data != null ? { data: s.data } : {}),
    ...(s.tokenizer != null ? { tokenizer: s.tokenizer } : {}), ...(s.seqLen != null ? { seqLen: s.seqLen } : {})
  })
  const m = await buildManifest(o)
  return validateManifest({
    ...structuredClone(m) as object,
    // params: a plain weighted mean (pseudo-grad's outer momentum would act on doubled stages only)
    averaging: { period: s.averageEvery > 0 ? s.averageEvery : s.steps + 1, mode: 'params' }
  }, { validateModel: validateModelConfig })
}
