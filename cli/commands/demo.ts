// `layerswarm demo`: a whole swarm on this machine in one command. It starts a bootstrap node and
// several training nodes (`layerswarm start --stage N ...` child processes on 127.0.0.1), shows one
// live display while they train the model through the SWARM pipeline, then assembles the full
// model from the stage checkpoints, prints a sample, and writes model.safetensors, loss.svg and a
// JSON report. Every process it started is stopped on the way out (done, error, Ctrl-C, SIGTERM).
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Command } from 'commander'
import { loadDemoData } from '../../core/demo/demo-data.ts'
import { demoMemoryPlan } from '../../core/demo/swarm-plan.ts'
import { parseMemorySize } from '../../core/model/memory-estimate.ts'
import { TOKENIZER_NAMES } from '../../core/data/tokenizer.ts'
import { DemoConfigError } from '../../core/demo/demo-errors.ts'
import { DemoInterruptedError, runDemo } from '../../core/demo/run-demo.ts'
import type { DemoSettings } from '../../core/demo/swarm-plan.ts'
import { DEMO_DEFAULT_COMPRESSION, type DemoCompression } from '../../core/demo/demo-compression.ts'
import { CodecSet } from '../../core/codec-set.ts'
import { PluginHost } from '../../core/node/plugin-host.ts'
import { resolveBackend, verifyBackend, type BackendChoice } from '../../core/node/backend-choice.ts'
import { isPathSpec } from '../../core/node/plugin-registry.ts'
import { CODEC_PLUGIN } from '../../core/codecs/tensor-codecs.ts'
import { RAW_CODEC_NAMES } from '../../core/codecs/raw.ts'
import { intFlag, makeLogger, numFlag, resolveModelConfig, withBackend } from '../flags.ts'
import { pluginShorthandOptions, shorthandOptions } from '../plugin-flags.ts'
import { parseDashboardAddress } from '../../core/dashboard/address.ts'

export interface DemoFlags {
  allowSoftwareGpu?: boolean
  gpuF16?: boolean
  nodes?: string
  stages?: string
  steps?: string
  report?: string
  out?: string
  model?: string
  backend?: string
  seed?: string
  batch?: string
  lr?: string
  microbatches?: string
  maxInflight?: string
  evalBatches?: string
  threads?: string
  killAtStep?: string
  data?: string
  prompt?: string
  sampleTokens?: string
  temperature?: string
  stallTimeout?: string
  keepDataDirs?: boolean
  codec?: string
  gradCodec?: string
  bottleneck?: string
  averageEvery?: string
  maxMemory?: string
  tokenizer?: string
  seqLen?: string
  /** --dashboard [HOST:PORT]: true without a value. */
  dashboard?: string | boolean
}

/** At most this many node processes on one machine: a demo, not a cluster. */
const MAX_NODES = 32

export const DEMO_DEFAULTS = {
  nodes: '4',
  stages: '3',
  steps: '150',
  out: 'layerswarm-demo',
  model: 'tiny',
  backend: 'cpu',
  seed: '0',
  batch: '8',
  lr: '3e-3',
  microbatches: '1',
  maxInflight: '4',
  evalBatches: '16',
  threads: '1',
  killAtStep: '0',
  prompt: 'And God said',
  sampleTokens: '200',
  temperature: '0.8',
  stallTimeout: '180',
  averageEvery: '10'
} as const

export function register (program: Command): void {
  const d = DEMO_DEFAULTS
  program.command('demo')
    .description('run a whole training swarm on this machine: a bootstrap node + training nodes in pipeline stages, ' +
      'a live display, then a sample from the assembled model, its checkpoint, a loss chart and a report')
    .option('--nodes <n>', 'training nodes (child processes); extra nodes double up stages from stage 1 on', d.nodes)
    .option('--stages <s>', 'pipeline stages the model is cut into (2 .. the model\'s layers)', d.stages)
    .option('--steps <n>', 'optimizer steps of the run', d.steps)
    .option('--report <file>', 'write the JSON report here (default: OUT/report.json)')
    .option('--out <dir>', 'results: model.safetensors, loss.svg, report.json, stages/, logs/', d.out)
    .option('--model <preset|file>', 'model preset (tiny, small) or a JSON config file', d.model)
    .option('--backend <name>', 'compute backend of every node and of the final eval: cpu, webgpu, a built-in plugin name, or the ./path or package of a backend plugin', d.backend)
    .option('--seed <n>', 'seed of the init, the batches and the sample', d.seed)
    .option('--batch <n>', 'B: sequences per microbatch', d.batch)
    .option('--lr <x>', 'peak learning rate (warmup, then cosine to lr/10)', d.lr)
    .option('--microbatches <m>', 'microbatches per optimizer step (they travel the pipeline together)', d.microbatches)
    .option('--max-inflight <k>', 'microbatches in flight per stage-0 node (1: synchronous)', d.maxInflight)
    .option('--eval-batches <n>', 'held-out batches the assembled model is evaluated on', d.evalBatches)
    .option('--threads <n>', 'backend worker threads per node', d.threads)
    .option('--allow-software-gpu', 'with --backend webgpu: accept a software adapter (llvmpipe) when no GPU is found')
    .option('--gpu-f16', 'with --backend webgpu: f16 matmuls with f32 accumulation (needs the adapter\'s shader-f16)')
    .option('--average-every <n>', 'nodes of a doubled stage average their weights every n optimizer steps (0: off)', d.averageEvery)
    .option('--kill-at-step <n>', 'kill -9 one node of a doubled stage at this step, to watch the swarm route around it (0: never)', d.killAtStep)
    .option('--dashboard [host:port]', 'serve the live dashboard web page from the stage-0 node (default 127.0.0.1:7070; docs/dashboard.md)')
    .option('--data <path>', 'training text (file or folder) or a prepared token folder (layerswarm data prepare); default: the shipped corpus')
    .option('--tokenizer <name>', 'tokenizer of text data: byte or gpt2 (default byte; a prepared folder names its own)')
    .option('--seq-len <n>', 'T, tokens per sequence (default: the model\'s context)')
    .option('--max-memory <size>', 'every node\'s memory budget, e.g. 1536M or 2G: each stage must fit it; the report shows it against the whole model\'s estimate and each node\'s peak RSS')
    .option('--prompt <text>', 'prompt of the sample printed at the end', d.prompt)
    .option('--sample-tokens <n>', 'tokens to sample at the end (0: none)', d.sampleTokens)
    .option('--temperature <x>', 'sampling temperature (0: greedy)', d.temperature)
    .option('--stall-timeout <s>', 'fail when no step completes for this many seconds', d.stallTimeout)
    .option('--keep-data-dirs', 'keep the nodes\' temporary data dirs (identity keys, sockets)')
    .option('--codec <name>', `codec of activations at stage boundaries (and of their gradients unless --grad-codec): none, fp16, int8-block, ... (default ${DEMO_DEFAULT_COMPRESSION.codec})`)
    .option('--grad-codec <name>', `codec of activation gradients (default: --codec if given, else ${DEMO_DEFAULT_COMPRESSION.gradCodec})`)
    .option('--bottleneck <k>', `learned bottleneck width k at every boundary, below the model width (0: none; default ${DEMO_DEFAULT_COMPRESSION.bottleneck ?? 0})`)
    .addHelpText('after', '\nThe same swarm across machines: see docs/demo.md ("Across machines").')
    .action(async (flags: DemoFlags) => { await runDemoCommand(flags) })
}

/** Flags -> settings; every bad value is a DemoConfigError (a BackendChoiceError for --backend; exit 2) saying what to change. */
export async function demoSettings (flags: DemoFlags, cwd = process.cwd()): Promise<{ settings: DemoSettings, modelSpec: string, backend: BackendChoice }> {
  const d = DEMO_DEFAULTS
  const nodes = intFlag('--nodes', flags.nodes ?? d.nodes, 1)
  const stages = intFlag('--stages', flags.stages ?? d.stages, 2)
  const steps = intFlag('--steps', flags.steps ?? d.steps, 1)
  if (nodes < stages) throw new DemoConfigError(`--nodes ${nodes} is fewer than --stages ${stages}: every stage needs at least one node; raise --nodes or lower --stages`)
  if (nodes > MAX_NODES) throw new DemoConfigError(`--nodes ${nodes} is more than ${MAX_NODES} processes on one machine; across machines, run \`layerswarm start --stage N\` on each (docs/demo.md)`)
  const killAtStep = intFlag('--kill-at-step', flags.killAtStep ?? d.killAtStep, 0)
  if (killAtStep > 0 && nodes <= stages) throw new DemoConfigError(`--kill-at-step needs a stage served by two nodes (--nodes > --stages), got --nodes ${nodes} --stages ${stages}; killing the only node of a stage stops the run`)
  if (killAtStep >= steps) throw new DemoConfigError(`--kill-at-step ${killAtStep} must be below --steps ${steps}`)
  const modelName = flags.model ?? d.model
  const modelSpec = modelName.endsWith('.json') ? resolve(cwd, modelName) : modelName
  // loaded here, so a missing or wrong backend exits 2 before any node starts; runDemoCommand starts it once too
  const backend = await resolveBackend(flags.backend ?? d.backend, cwd)
  const data = flags.data != null ? resolve(cwd, flags.data) : undefined
  if (data != null && !existsSync(data)) throw new DemoConfigError(`--data ${flags.data}: no such file or folder ${data}`)
  const compression = await demoCompression(flags)
  const dashboard = parseDashboardAddress(flags.dashboard)
  return {
    modelSpec,
    backend,
    settings: {
      nodes,
      stages,
      steps,
      model: modelSpec,
      // a path goes to the nodes as the absolute file; a name as given (the report shows it)
      backend: isPathSpec(backend.value) ? backend.spec : backend.value,
      seed: intFlag('--seed', flags.seed ?? d.seed, 0),
      batch: intFlag('--batch', flags.batch ?? d.batch, 1),
      lr: positive('--lr', flags.lr ?? d.lr),
      microbatches: intFlag('--microbatches', flags.microbatches ?? d.microbatches, 1),
      maxInflight: intFlag('--max-inflight', flags.maxInflight ?? d.maxInflight, 1),
      evalBatches: intFlag('--eval-batches', flags.evalBatches ?? d.evalBatches, 1),
      threads: intFlag('--threads', flags.threads ?? d.threads, 1),
      pluginOptions: shorthandOptions(flags),
      killAtStep,
      averageEvery: intFlag('--average-every', flags.averageEvery ?? d.averageEvery, 0),
      data,
      ...(flags.maxMemory != null ? { maxMemory: memorySize(flags.maxMemory) } : {}),
      ...(flags.tokenizer != null ? { tokenizer: tokenizerName(flags.tokenizer) } : {}),
      ...(flags.seqLen != null ? { seqLen: intFlag('--seq-len', flags.seqLen, 1) } : {}),
      ...compression,
      ...(dashboard != null ? { dashboard: `${dashboard.host.includes(':') ? `[${dashboard.host}]` : dashboard.host}:${dashboard.port}` } : {})
    }
  }
}

/**
 * The boundary codecs and bottleneck of the run: the flags over DEMO_DEFAULT_COMPRESSION. Codec
 * names are checked against the codecs the built-in compression plugin registers (the nodes load
 * it for any codec other than none), so a typo exits 2 before any process starts.
 */
async function demoCompression (flags: DemoFlags): Promise<DemoCompression> {
  const def = DEMO_DEFAULT_COMPRESSION
  const codec = flags.codec ?? def.codec
  const gradCodec = flags.gradCodec ?? flags.codec ?? def.gradCodec
  const k = flags.bottleneck != null ? intFlag('--bottleneck', flags.bottleneck, 0) : def.bottleneck ?? 0
  const host = new PluginHost()
  let known: string[]
  try {
    await host.load([CODEC_PLUGIN])
    await host.start()
    known = [...RAW_CODEC_NAMES, ...CodecSet.fromContainer(host.container).codecs.map(c => c.name)]
  } finally {
    await host.stop()
  }
  for (const [flag, name] of [['--codec', codec], ['--grad-codec', gradCodec]] as const) {
    if (!known.includes(name)) throw new DemoConfigError(`${flag} ${name} is not a codec; use one of ${known.join(', ')}`)
  }
  return { codec, gradCodec, bottleneck: k > 0 ? k : null }
}

export async function runDemoCommand (flags: DemoFlags): Promise<void> {
  const d = DEMO_DEFAULTS
  const { settings, modelSpec, backend } = await demoSettings(flags)
  const sampleTokens = intFlag('--sample-tokens', flags.sampleTokens ?? d.sampleTokens, 0)
  const temperature = numFlag('--temperature', flags.temperature ?? d.temperature, 0)
  const stallS = intFlag('--stall-timeout', flags.stallTimeout ?? d.stallTimeout, 10)
  // the corpus gives the vocabulary size of a preset, the held-out split and the unigram baseline
  const corpus = await loadDemoData(settings.data, settings.tokenizer, settings.seed)
  const config = await resolveModelConfig(modelSpec, corpus.tokenizer.vocabSize)
  const T = settings.seqLen ?? config.blockSize
  if (T > config.blockSize) throw new DemoConfigError(`--seq-len ${T} is longer than the model's context ${config.blockSize}`)
  if (settings.bottleneck != null && settings.bottleneck >= config.dModel) {
    throw new DemoConfigError(`--bottleneck ${settings.bottleneck} must be below the model width ${config.dModel} (it narrows the boundary from ${config.dModel} to k)`)
  }
  if (settings.stages > config.nLayer) throw new DemoConfigError(`--stages ${settings.stages} is more than the model's ${config.nLayer} layers; each stage needs at least one block`)
  // every stage within the budget (a node would refuse its stage at start); the report sets it against the whole model
  const memory = demoMemoryPlan(settings, config)
  if (memory.budget != null) {
    const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`
    process.stderr.write(`memory: budget ${mib(memory.budget)} per node; stage estimates ${memory.stages.map(mib).join(', ')}; the whole model ${mib(memory.wholeModel)}${memory.budget < memory.wholeModel ? ' (no node could hold it)' : ''}\n`)
  }
  if (corpus.stats.trainTokens < T + 1) {
    throw new DemoConfigError(`the training text ${corpus.stats.path} has ${corpus.stats.trainTokens} tokens, fewer than one window of ${T + 1}; give more text with --data`)
  }
  const outDir = resolve(flags.out ?? d.out)
  const reportFile = resolve(flags.report ?? resolve(outDir, 'report.json'))
  const logger = makeLogger('warn')
  const backendOptions = pluginShorthandOptions(backend.name, flags)
  // the last check before any process starts: the backend starts here as it will on every node
  await verifyBackend(backend, { logger, options: { ...backendOptions, threads: settings.threads } })

  const abort = new AbortController()
  const onSignal = (sig: NodeJS.Signals): void => {
    // a second signal leaves at once; the launcher's exit hook still SIGKILLs every child group
    if (abort.signal.aborted) process.exit(130)
    process.stderr.write(`\n${sig}: stopping every node of the demo (again to force)\n`)
    abort.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    await runDemo({
      settings,
      config,
      corpus,
      outDir,
      reportFile,
      bin: fileURLToPath(new URL('../../bin/layerswarm.js', import.meta.url)),
      cwd: process.cwd(),
      displayOut: process.stderr,
      tty: process.stderr.isTTY === true,
      summaryOut: process.stdout,
      sample: { prompt: sampleTokens > 0 ? flags.prompt ?? d.prompt : '', tokens: sampleTokens, temperature },
      withBackend: async fn => await withBackend(backend, undefined, logger, fn, backendOptions),
      signal: abort.signal,
      stallS,
      keepDataDirs: flags.keepDataDirs === true
    })
  } catch (err) {
    if (err instanceof DemoInterruptedError) {
      process.stderr.write('demo interrupted; every node it started has stopped\n')
      process.exitCode = 130
      return
    }
    throw err
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    corpus.close()
  }
}

function memorySize (v: string): number {
  try {
    return parseMemorySize(v)
  } catch (err) {
    throw new DemoConfigError(`--max-memory ${JSON.stringify(v)}: ${(err as Error).message}`)
  }
}

function tokenizerName (v: string): string {
  if (!(TOKENIZER_NAMES as readonly string[]).includes(v)) throw new DemoConfigError(`--tokenizer ${v} is not a tokenizer; use one of ${TOKENIZER_NAMES.join(', ')}`)
  return v
}

function positive (name: string, v: string): number {
  const x = numFlag(name, v, 0)
  if (x <= 0) throw new DemoConfigError(`${name} must be a number > 0, got ${JSON.stringify(v)}`)
  return x
}
