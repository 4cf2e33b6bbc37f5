// Compression quality: what boundary compression costs in held-out loss. The same model, seed, data
// and token budget are trained several times as an in-process stage chain (core/train/
// compressed-chain.ts) whose every boundary tensor (activations forward, their gradients back)
// goes through the swarm's boundary path: the run's codec per role (built from the compression
// plugin, loaded by the plugin host as a node loads it), a wire frame, the frame decoder, decode.
// Settings: none (raw f32), fp16, int8-block, and the learned bottleneck k + int8-block at 32x,
// 64x and 128x fewer bytes per boundary than f32 (k picked so the ratio is really reached).
// Beside the bottleneck: bn*-int4 (a bottleneck twice as wide at 4 bits), and sub*-int8/int4, the
// subspace-constrained boundary (core/codecs/subspace.ts, bench/subspace-chain.ts): the stream
// minus the token embeddings lives in a fixed k-dim subspace, so only k coordinates cross, both ways.
// Baseline: the uncompressed run's held-out loss on the same eval batches. Not a test: a run
// takes minutes (the figures are deterministic on the CPU backend; only times vary with load).
// A BPE model (vocabulary > 256) without --data trains on the shipped corpus prepared with the
// gpt2 tokenizer into a temp folder (core/data/prepare.ts), removed at the end.
//
//   npx tsx bench/compression-quality.ts [--steps 200] [--model tiny|llama-20m] [--data DIR] [--stages 3] [--seed 0]
//     [--batch 8] [--seq-len T] [--lr 3e-3] [--eval-batches 64] [--block 256] [--threads N] [--configs fp16,bn32-int8]
import { parseArgs } from 'node:util'
import os from 'node:os'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { ConfigError } from '../core/errors.ts'
import { Tokens } from '../core/contracts/tokens.ts'
import { loadCorpus } from '../core/data/index.ts'
import { modelPreset, parseModelConfig, type ModelConfig } from '../core/model/config.ts'
import { resolveBackend } from '../core/node/backend-choice.ts'
import { PluginHost } from '../core/node/plugin-host.ts'
import { boundaryCodecs } from '../core/codecs/tensor-codecs.ts'
import { trainCompressedChain, type ChainTrainResult } from '../core/train/compressed-chain.ts'
import { corpusData, defaultCorpusPath, loadTrainData, prepareDataset, type TrainData } from '../core/data/index.ts'
import { trainSubspaceChain } from './subspace-chain.ts'
import { machineInfo, round } from './report.ts'
import type { BenchReport, BenchResult } from './report.ts'

/** One compression setting: codecs for both boundary roles, and the bottleneck width rule. */
export interface QualitySetting {
  readonly name: string
  /** Codec name for activations and for their gradients ('none' = raw f32). */
  readonly codec: string
  /** Target ratio vs f32 reached with the bottleneck or subspace (k chosen from it); 0 = neither. */
  readonly bottleneckRatio: number
  /** How the boundary narrows to k: the learned bottleneck (default) or the fixed subspace. */
  readonly method?: 'bottleneck' | 'subspace'
  /** Largest loss increase over `none` that meets the goal, in percent (null: report only). */
  readonly goalPct: number | null
}

export const QUALITY_SETTINGS: readonly QualitySetting[] = Object.freeze([
  { name: 'none', codec: 'none', bottleneckRatio: 0, goalPct: null },
  { name: 'fp16', codec: 'fp16', bottleneckRatio: 0, goalPct: 3 },
  { name: 'int8-block', codec: 'int8-block', bottleneckRatio: 0, goalPct: 3 },
  { name: 'bn32-int8', codec: 'int8-block', bottleneckRatio: 32, goalPct: 3 },
  { name: 'bn64-int8', codec: 'int8-block', bottleneckRatio: 64, goalPct: 5 },
  { name: 'bn128-int8', codec: 'int8-block', bottleneckRatio: 128, goalPct: 2 },
  // a twice wider boundary at half the bits: same bytes
  { name: 'bn128-int4', codec: 'int4-block', bottleneckRatio: 128, goalPct: 2 },
  { name: 'sub32-int8', codec: 'int8-block', bottleneckRatio: 32, method: 'subspace', goalPct: 3 },
  { name: 'sub64-int8', codec: 'int8-block', bottleneckRatio: 64, method: 'subspace', goalPct: 5 },
  { name: 'sub128-int8', codec: 'int8-block', bottleneckRatio: 128, method: 'subspace', goalPct: 2 },
  { name: 'sub128-int4', codec: 'int4-block', bottleneckRatio: 128, method: 'subspace', goalPct: 2 }
])

export interface CompressionQualityOptions {
  /** Optimizer steps per setting (default 200). */
  readonly steps?: number
  /** Preset name, a JSON config file, or a config (default tiny). */
  readonly model?: string | ModelConfig
  /** Pipeline stages S (default 3, the demo's split: S-1 compressed boundaries). */
  readonly stages?: number
  readonly seed?: number
  /** Sequences per step (default 8; T = the context length). */
  readonly batchSize?: number
  /** Peak learning rate (default 3e-3; warmup steps/10, cosine to lr/10). */
  readonly lr?: number
  /** Held-out batches of the final eval, the same for every setting (default 64). */
  readonly evalBatches?: number
  /** int8-block's and int4-block's block size (the compression plugin's `int8BlockSize`, `int4BlockSize`; default 256). */
  readonly int8BlockSize?: number
  /** Setting names to run (default all); `none` always runs, as the baseline. */
  readonly settings?: readonly string[]
  /** Training data (default: the shipped corpus, byte tokenizer; prepared with gpt2 for a BPE model). */
  readonly data?: TrainData
  /** A prepared shard folder (`layerswarm data prepare`) or text, when `data` is not given. */
  readonly dataPath?: string
  /** T, tokens per sequence (default: the model's context). */
  readonly seqLen?: number
  /** Backend, as --backend takes it (default cpu; core/node/backend-choice.ts), and its threads. */
  readonly backendPlugin?: string
  readonly threads?: number
  /** Progress lines (default: none). */
  readonly progress?: (line: string) => void
}

/** One setting's measured figures (also in the report's `settings`). */
export interface QualityRow {
  readonly name: string
  readonly codec: string
  /** none, bottleneck (learned, core/model) or subspace (fixed, core/codecs/subspace.ts). */
  readonly method: 'none' | 'bottleneck' | 'subspace'
  /** k (0 = no bottleneck) and the boundary width W crossing the wire. */
  readonly bottleneck: number
  readonly boundaryWidth: number
  readonly targetRatio: number | null
  readonly evalLoss: number
  /** evalLoss / none's evalLoss. */
  readonly lossRatio: number
  readonly lossIncreasePct: number
  readonly goalPct: number | null
  readonly meetsGoal: boolean | null
  /** Encoded bytes per token per boundary: activations, gradients, both. */
  readonly bytesPerTokenForward: number
  readonly bytesPerTokenBackward: number
  readonly bytesPerTokenTotal: number
  /** f32 bytes (4C per token per direction) / encoded bytes. */
  readonly ratioForward: number
  readonly ratioTotal: number
  readonly lossLast10: number
  readonly trainSeconds: number
  readonly params: number
}

export interface CompressionQualityReport extends BenchReport {
  readonly settings: QualityRow[]
  /** The most compressed setting that meets its goal (32x: 3%, 64x: 5%), or null. */
  readonly recommended: string | null
}

/**
 * Largest k whose int8-block boundary costs at most 4C/ratio bytes per token, counting the block
 * scales (4 bytes per `block` elements) and the codec header over B*T tokens.
 */
export function bottleneckForRatio (ratio: number, C: number, block: number, tokens: number, rank = 3, bits: 8 | 4 = 8): number {
  const header = 12 + 4 * rank + 4
  const budget = 4 * C / ratio
  for (let k = C; k >= 1; k--) {
    const n = tokens * k
    const bytes = Math.ceil(n * bits / 8) + 4 * Math.ceil(n / block) + header
    if (bytes / tokens <= budget) return k
  }
  throw new RangeError(`no bottleneck width reaches ${ratio}x on d=${C} with int8 blocks of ${block}`)
}

async function resolveModel (m: string | ModelConfig | undefined): Promise<ModelConfig> {
  if (m == null) return modelPreset('tiny')
  if (typeof m !== 'string') return m
  if (m.endsWith('.json')) return parseModelConfig(await readFile(m, 'utf8'), m)
  return modelPreset(m)
}

export async function benchCompressionQuality (opts: CompressionQualityOptions = {}): Promise<CompressionQualityReport> {
  const machine = machineInfo()
  const steps = opts.steps ?? 200
  const S = opts.stages ?? 3
  const seed = opts.seed ?? 0
  const B = opts.batchSize ?? 8
  const lr = opts.lr ?? 3e-3
  const block = opts.int8BlockSize ?? 256
  const config = await resolveModel(opts.model)
  const T = opts.seqLen ?? config.blockSize
  if (!Number.isSafeInteger(T) || T < 1 || T > config.blockSize) throw new ConfigError(`--seq-len must be an integer in [1, ${config.blockSize}], got ${T}`)
  const C = config.dModel
  const say = opts.progress ?? (() => {})
  const wanted = opts.settings ?? QUALITY_SETTINGS.map(s => s.name)
  for (const n of wanted) if (!QUALITY_SETTINGS.some(s => s.name === n)) throw new ConfigError(`unknown setting "${n}" (known: ${QUALITY_SETTINGS.map(s => s.name).join(', ')})`)
  const settings = QUALITY_SETTINGS.filter(s => s.name === 'none' || wanted.includes(s.name))

  let corpusInfo: Record<string, unknown> = {}
  let data = opts.data
  const cleanup: Array<() => Promise<void> | void> = []
  let dataPath = opts.dataPath
  if (data == null && dataPath == null && config.vocabSize > 256) {
    // a BPE model: the shipped corpus through the gpt2 tokenizer, as `layerswarm data prepare` writes it
    const dir = await mkdtemp(join(os.tmpdir(), 'lsw-cq-'))
    cleanup.push(async () => await rm(dir, { recursive: true, force: true }))
    say(`preparing ${defaultCorpusPath()} with the gpt2 tokenizer into ${dir}`)
    await prepareDataset({ input: defaultCorpusPath(), out: join(dir, 'data'), tokenizer: 'gpt2' })
    dataPath = join(dir, 'data')
  }
  if (data == null && dataPath != null) {
    const loaded = await loadTrainData({ path: dataPath, seed })
    cleanup.push(() => loaded.close())
    if (loaded.tokenizer.vocabSize > config.vocabSize) throw new ConfigError(`the model's vocabulary ${config.vocabSize} is smaller than the ${loaded.tokenizer.name} tokenizer's ${loaded.tokenizer.vocabSize}`)
    data = loaded.data
    let unigram: number | null = null
    try { unigram = loaded.unigramBaseline() } catch { unigram = null }
    corpusInfo = { path: loaded.path, dataId: loaded.dataId ?? null, tokenizer: loaded.tokenizer.name, trainTokens: loaded.trainTokens, heldOutTokens: loaded.heldOutTokens, unigramEvalLoss: unigram, prepared: opts.dataPath == null }
  }
  if (data == null) {
    const corpus = await loadCorpus({})
    if (corpus.tokenizer.vocabSize > config.vocabSize) throw new RangeError(`the model's vocabulary ${config.vocabSize} is smaller than the byte tokenizer's 256`)
    data = corpusData(corpus, seed)
    corpusInfo = { path: corpus.stats.path, trainTokens: corpus.stats.trainTokens, heldOutTokens: corpus.stats.heldOutTokens }
  }

  // One plugin host per bench, as a node has: the backend and the compression plugin's codecs.
  const choice = await resolveBackend(opts.backendPlugin ?? 'cpu')
  const host = new PluginHost({
    choices: { [Tokens.ComputeBackend]: choice.name },
    pluginOptions: { compression: { int8BlockSize: block, int4BlockSize: block }, ...(opts.threads != null ? { [choice.name]: { threads: opts.threads } } : {}) }
  })
  const rows: QualityRow[] = []
  let device = 'cpu'
  let backendName = choice.name
  try {
    await host.load([choice.spec, 'compression'])
    await host.start()
    const backend = host.container.resolve<ComputeBackend>(Tokens.ComputeBackend)
    device = backend.info.device
    backendName = backend.info.name
    let baseLoss = NaN
    for (const s of settings) {
      let k = 0
      if (s.bottleneckRatio > 0) {
        try {
          k = bottleneckForRatio(s.bottleneckRatio, C, block, B * T, 3, s.codec === 'int4-block' ? 4 : 8)
        } catch (err) {
          if (!(err instanceof RangeError)) throw err
          say(`${s.name}: skipped (${err.message})`) // a narrow model cannot reach the ratio with int8
          continue
        }
      }
      const codecs = boundaryCodecs({ activation: s.codec, 'activation-grad': s.codec }, host.container)
      const subspace = s.method === 'subspace'
      say(`${s.name}: ${s.codec}${k > 0 ? `, ${subspace ? 'subspace' : 'bottleneck'} k=${k}` : ''}, ${steps} steps of B=${B} T=${T}, ${S} stages`)
      const common = {
        backend,
        config,
        data: data as TrainData,
        codecs,
        steps,
        stages: S,
        batchSize: B,
        seqLen: T,
        schedule: { maxLr: lr, minLr: lr / 10, warmupSteps: Math.max(1, Math.floor(steps / 10)), totalSteps: steps },
        seed,
        evalBatches: opts.evalBatches ?? 64,
        onStep: (step: number, loss: number) => { if (step % Math.max(1, Math.round(steps / 5)) === 0) say(`  ${s.name} step ${step}/${steps} loss ${loss.toFixed(4)}`) }
      }
      const r: ChainTrainResult = subspace ? await trainSubspaceChain({ ...common, k }) : await trainCompressedChain({ ...common, bottleneck: k })
      if (s.name === 'none') baseLoss = r.evalLoss
      const f32 = 4 * C
      const pt = r.perToken
      const lossRatio = r.evalLoss / baseLoss
      const pct = (lossRatio - 1) * 100
      const tail = r.losses.slice(-10)
      rows.push({
        name: s.name,
        codec: s.codec,
        method: k === 0 ? 'none' : s.method ?? 'bottleneck',
        bottleneck: k,
        boundaryWidth: r.boundaryWidth,
        targetRatio: s.bottleneckRatio > 0 ? s.bottleneckRatio : null,
        evalLoss: round(r.evalLoss, 5),
        lossRatio: round(lossRatio, 5),
        lossIncreasePct: round(pct, 3),
        goalPct: s.goalPct,
        meetsGoal: s.goalPct == null ? null : pct <= s.goalPct,
        bytesPerTokenForward: round(pt.forward, 4),
        bytesPerTokenBackward: round(pt.backward, 4),
        bytesPerTokenTotal: round(pt.total, 4),
        ratioForward: round(f32 / pt.forward, 3),
        ratioTotal: round(2 * f32 / pt.total, 3),
        lossLast10: round(tail.reduce((a, b) => a + b, 0) / tail.length, 5),
        trainSeconds: round(r.trainSeconds, 1),
        params: r.params
      })
      say(`  ${s.name}: eval loss ${r.evalLoss.toFixed(4)} (${pct >= 0 ? '+' : ''}${pct.toFixed(2)}% vs none), ${pt.forward.toFixed(2)} B/token/boundary forward, ${(f32 / pt.forward).toFixed(1)}x, ${r.trainSeconds.toFixed(0)} s`)
    }
  } finally {
    await host.stop()
    for (const f of cleanup.reverse()) await f()
  }

  const base = rows.find(r => r.name === 'none') as QualityRow
  const f32 = 4 * C
  const results: BenchResult[] = []
  for (const r of rows) {
    // ratio = value / baseline: loss ratio (1.02 = +2%), and bytes as a share of f32 (1/128 at 128x)
    results.push(
      { name: `${r.name}.eval_loss`, value: r.evalLoss, unit: 'nats/token', baseline: { name: 'none.eval_loss', value: base.evalLoss }, ratio: round(r.evalLoss / base.evalLoss, 5) },
      { name: `${r.name}.loss_increase`, value: r.lossIncreasePct, unit: '%', baseline: r.goalPct != null ? { name: 'goal', value: r.goalPct } : null, ratio: r.goalPct != null && r.goalPct !== 0 ? round(r.lossIncreasePct / r.goalPct, 4) : null },
      { name: `${r.name}.bytes_per_token_fwd`, value: r.bytesPerTokenForward, unit: 'B/token/boundary', baseline: { name: 'f32', value: f32 }, ratio: round(r.bytesPerTokenForward / f32, 6) },
      { name: `${r.name}.bytes_per_token_bwd`, value: r.bytesPerTokenBackward, unit: 'B/token/boundary', baseline: { name: 'f32', value: f32 }, ratio: round(r.bytesPerTokenBackward / f32, 6) },
      { name: `${r.name}.bytes_per_token_total`, value: r.bytesPerTokenTotal, unit: 'B/token/boundary', baseline: { name: 'f32', value: 2 * f32 }, ratio: round(r.bytesPerTokenTotal / (2 * f32), 6) }
    )
  }
  // the most compressed setting within its goal (32x: 3%, 64x: 5%, 128x: 2%)
  const meeting = rows.filter(r => r.meetsGoal === true).sort((a, b) => b.ratioTotal - a.ratioTotal)
  machine.loadAvgEnd = round(os.loadavg()[0], 2)
  return {
    suite: 'compression-quality',
    backend: backendName,
    device,
    machine,
    baseline: {
      name: 'none (raw f32 boundaries)',
      what: 'held-out loss of the same model, seed and token budget with uncompressed boundaries; bytes vs f32 (4C per token per direction)',
      model: config,
      stages: S,
      boundaries: S - 1,
      steps,
      batchSize: B,
      seqLen: T,
      tokens: steps * B * T,
      settingsRun: rows.map(r => r.name),
      seed,
      lr,
      schedule: `warmup ${Math.max(1, Math.floor(steps / 10))}, cosine to lr/10`,
      int8BlockSize: block,
      evalBatches: opts.evalBatches ?? 64,
      data: corpusInfo,
      path: 'in-process stage chain: pipeline boundaryCodecs encode -> wire frame -> FrameDecoder -> decode, both directions, every boundary'
    },
    results,
    settings: rows,
    recommended: meeting[0]?.name ?? null
  }
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string' },
      model: { type: 'string' },
      stages: { type: 'string' },
      seed: { type: 'string' },
      batch: { type: 'string' },
      'seq-len': { type: 'string' },
      data: { type: 'string' },
      lr: { type: 'string' },
      'eval-batches': { type: 'string' },
      block: { type: 'string' },
      threads: { type: 'string' },
      configs: { type: 'string' }
    }
  })
  const num = (v: string | undefined): number | undefined => v != null ? Number(v) : undefined
  const report = await benchCompressionQuality({
    steps: num(values.steps),
    model: values.model,
    stages: num(values.stages),
    seed: num(values.seed),
    batchSize: num(values.batch),
    seqLen: num(values['seq-len']),
    dataPath: values.data,
    lr: num(values.lr),
    evalBatches: num(values['eval-batches']),
    int8BlockSize: num(values.block),
    threads: num(values.threads),
    settings: values.configs?.split(',').map(s => s.trim()).filter(Boolean),
    progress: line => process.stderr.write(line + '\n')
  })
  process.stdout.write(JSON.stringify(report, null, 2) + '\n')
}
