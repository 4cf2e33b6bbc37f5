// The training runtime of a node: what `layerswarm start --stages S ... [--stage N]` runs beside the
// libp2p node. From the options (flags, or the config file's `runtime` object) it builds the run
// manifest (or loads one), takes the compute backend the plugin host started, and hands the stage to
// a StageHost (stage-host.ts): the pinned stage, or the stage the scheduler plugin assigns, moving
// when it says so. It extends the control endpoint with `training` in `status`, `GET /training` and
// `POST /checkpoint`. When the run is over it writes the stage checkpoint (--checkpoint-dir) and the
// report (--report).
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { ComputeBackend } from '../contracts/backend.ts'
import type { Logger } from '../contracts/logger.ts'
import type { Scheduler } from '../contracts/scheduler.ts'
import { Tokens } from '../contracts/tokens.ts'
import type { Role, RoleName, RuntimeAccess } from '../contracts/role.ts'
import { DEFAULT_RETRY_POLICY } from '../pipeline/dispatch.ts'
import { ConfigError } from '../errors.ts'
import { silentLogger } from '../logger.ts'
import { createTokenizer, isPreparedFolder, readPreparedManifest } from '../data/index.ts'
import { modelPreset, parseModelConfig, validateModelConfig, type ModelConfig } from '../model/config.ts'
import { ControlRequestError, registerControlExtension } from '../node/control-endpoint.ts'
import type { LayerswarmNode } from '../node/create-node.ts'
import { CODEC_PLUGIN } from '../codecs/tensor-codecs.ts'
import { RAW_CODEC_NAMES } from '../codecs/raw.ts'
import type { PipelineNode } from '../pipeline/pipeline-node.ts'
import { defaultManifest, loadManifest, runId, type RunManifest } from '../run/manifest.ts'
import { writeFileAtomic } from '../files.ts'
import { idleStatus, StageHost, type HostStatus } from './stage-host.ts'
import { NodeVerification } from './node-verification.ts'
import type { ChainNode } from '../chain/chain-node.ts'
import { Adversary, type AdversaryKind } from '../pipeline/adversary.ts'
import { PeerJudge } from '../peer-judge.ts'
import type { Membership } from '../contracts/membership.ts'
import { createMembership, type MembershipService } from '../membership/index.ts'
import { SCHEDULER_PLUGIN } from './scheduling.ts'
import { MemorySizeError, parseMemorySize } from '../model/memory-estimate.ts'
import { checkStageBudget, memoryStatus, runStageMemory } from './stage-memory.ts'

/** Options of the training runtime (CLI flags of `start`; config file key `runtime`). */
export interface TrainingOptions {
  /** Pinned stage; without it the scheduler plugin assigns the stage (and moves the node). */
  readonly stage?: number
  readonly stages: number
  /** Preset name (tiny, small) or a JSON file path. */
  readonly model: string
  readonly tokenizer: string
  /** Corpus path; default the shipped corpus. */
  readonly data?: string
  readonly steps: number
  readonly seed: number
  readonly batch: number
  /** Default: the model's context length. */
  readonly seqLen?: number
  readonly microbatches: number
  readonly lr: number
  /** Default min(100, floor(steps/10)), as `train --local`. */
  readonly warmup?: number
  readonly weightDecay: number
  readonly gradClip: number
  readonly bottleneck: number
  readonly runName: string
  /** Boundary codec of activations (and of their gradients unless gradCodec is given); `none` = raw f32. */
  readonly codec: string
  /** Codec of activation gradients; default `codec`. */
  readonly gradCodec?: string
  /** A manifest file: replaces the model/stages/data/optimizer options above. */
  readonly runManifest?: string
  readonly maxInflight: number
  /** Node id of the batch sampler key; default this node's peer id (`local` = as train --local). */
  readonly sampleNodeId?: string
  readonly evalBatches: number
  readonly evalEvery: number
  readonly report?: string
  readonly checkpointDir?: string
  readonly exitWhenDone: boolean
  /** The roles this node runs (ROLE_NAMES); `data` pins stage 0 (and implies `stage`); `validator` alone serves no stage. Default ['stage']. */
  readonly roles: readonly RoleName[]
  /** Attempts per microbatch and hop (RetryPolicy.maxAttempts). */
  readonly maxAttempts: number
  /** How long a microbatch waits for a peer of the next stage (RetryPolicy.peerWaitMs). */
  readonly peerWait: number
  /** The validator role's check period (ms; Validator intervalMs). Default 2000. */
  readonly checkInterval?: number
  /** The validator role's checks per period (the sample rate). Default 1. */
  readonly checksPerInterval?: number
  /** Make this node cheat (the verification tests and `bench verify` only; no flag: core/pipeline/adversary.ts). */
  readonly adversary?: AdversaryKind
  /** False: averaging takes the plain mean (bench verify's unverified baseline only; no flag). Default true. */
  readonly robustAveraging?: boolean
  /** --max-memory in bytes: a stage estimated above it is refused (pinned) or never assigned (stage-memory.ts). */
  readonly maxMemory?: number
}

/** The roles `start --role` accepts: a node may hold several. */
export const ROLE_NAMES: readonly RoleName[] = ['stage', 'data', 'validator']

const DEFAULTS = {
  stages: 2, model: 'tiny', tokenizer: 'byte', steps: 1000, seed: 0, batch: 8, microbatches: 1, lr: 1e-3,
  weightDecay: 0.1, gradClip: 1, bottleneck: 0, runName: 'layerswarm', codec: 'none', maxInflight: 4,
  evalBatches: 8, evalEvery: 0, exitWhenDone: false, roles: ['stage'], maxAttempts: DEFAULT_RETRY_POLICY.maxAttempts, peerWait: DEFAULT_RETRY_POLICY.peerWaitMs
}

const INT_KEYS = ['stage', 'stages', 'steps', 'seed', 'batch', 'seqLen', 'microbatches', 'warmup', 'bottleneck', 'maxInflight', 'evalBatches', 'evalEvery', 'maxAttempts', 'peerWait', 'checkInterval', 'checksPerInterval'] as const
const NUM_KEYS = ['lr', 'weightDecay', 'gradClip'] as const
const STR_KEYS = ['model', 'tokenizer', 'data', 'runName', 'codec', 'gradCodec', 'runManifest', 'sampleNodeId', 'report', 'checkpointDir'] as const
const MIN: Record<string, number> = { stage: 0, stages: 1, steps: 1, seed: 0, batch: 1, seqLen: 1, microbatches: 1, warmup: 0, bottleneck: 0, maxInflight: 1, evalBatches: 0, evalEvery: 0, maxAttempts: 1, peerWait: 0, checkInterval: 1, checksPerInterval: 1 }
const FLAG: Record<string, string> = {
  stage: '--stage', stages: '--stages', steps: '--steps', seed: '--seed', batch: '--batch', seqLen: '--seq-len', microbatches: '--microbatches',
  warmup: '--warmup', bottleneck: '--bottleneck', maxInflight: '--max-inflight', evalBatches: '--eval-batches', evalEvery: '--eval-every',
  lr: '--lr', weightDecay: '--weight-decay', gradClip: '--grad-clip', model: '--model', tokenizer: '--tokenizer', data: '--data',
  runName: '--run-name', codec: '--codec', gradCodec: '--grad-codec', runManifest: '--run-manifest', sampleNodeId: '--sample-node-id', report: '--report',
  checkpointDir: '--checkpoint-dir', exitWhenDone: '--exit-when-done', role: '--role', maxAttempts: '--max-attempts', peerWait: '--peer-wait',
  checkInterval: '--check-interval', checksPerInterval: '--checks-per-interval'
}

/** Whether these raw options ask for training: any training option (`--stage` or not) is given. */
export function wantsTraining (raw: Readonly<Record<string, unknown>> | undefined): boolean {
  return raw != null && Object.keys(raw).some(k => k in FLAG && raw[k] != null)
}

/**
 * What the node's plugins read from NodeConfig.runtime (the scheduler plugin: run id, stage count,
 * pin), so `start` builds the manifest before it creates the node.
 */
export async function schedulerRuntime (o: TrainingOptions): Promise<{ runId: string, stages: number, stage?: number, maxMemory?: number, stageMemory?: number[] }> {
  const m = await buildManifest(o)
  // a pinned stage over the budget fails here, before `start` brings the node up
  if (o.stage != null && o.roles.includes('stage')) checkStageBudget(m, o.stage, o.maxMemory)
  // with a budget, the scheduler gossips it and assigns only stages whose estimate fits
  const memory = o.maxMemory != null ? { maxMemory: o.maxMemory, stageMemory: runStageMemory(m) } : {}
  return { runId: runId(m), stages: m.stages.count, ...(o.stage != null ? { stage: o.stage } : {}), ...memory }
}

/**
 * Parses options given as flag strings or JSON values (paths resolve against `cwd`). Unknown keys
 * and bad values are ConfigErrors naming the flag.
 */
export function parseTrainingOptions (raw: Readonly<Record<string, unknown>>, cwd = process.cwd()): TrainingOptions {
  const known = new Set<string>([...INT_KEYS, ...NUM_KEYS, ...STR_KEYS, 'exitWhenDone', 'role', 'maxMemory'])
  for (const k of Object.keys(raw)) if (!known.has(k)) throw new ConfigError(`unknown training option "${k}" (known: ${[...known].join(', ')})`)
  const out: Record<string, unknown> = { ...DEFAULTS }
  for (const k of INT_KEYS) {
    const v = raw[k]
    if (v == null) continue
    const n = typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < MIN[k]) throw new ConfigError(`${FLAG[k]} must be an integer >= ${MIN[k]}, got ${String(v)}`)
    out[k] = n
  }
  for (const k of NUM_KEYS) {
    const v = raw[k]
    if (v == null) continue
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || (k === 'lr' && n === 0)) throw new ConfigError(`${FLAG[k]} must be a ${k === 'lr' ? 'positive' : 'non-negative'} number, got ${String(v)}`)
    out[k] = n
  }
  for (const k of STR_KEYS) {
    const v = raw[k]
    if (v == null) continue
    if (typeof v !== 'string' || v.trim() === '') throw new ConfigError(`${FLAG[k]} must be a non-empty string`)
    out[k] = ['data', 'runManifest', 'report', 'checkpointDir'].includes(k) || (k === 'model' && v.endsWith('.json')) ? resolve(cwd, v) : v
  }
  if (raw.exitWhenDone != null) {
    if (typeof raw.exitWhenDone !== 'boolean') throw new ConfigError('--exit-when-done is a switch (true/false in a config file)')
    out.exitWhenDone = raw.exitWhenDone
  }
  if (out.sampleNodeId != null && !/^[A-Za-z0-9._-]{1,128}$/.test(out.sampleNodeId as string)) throw new ConfigError('--sample-node-id must be 1..128 of [A-Za-z0-9._-]')
  if (raw.role != null) out.roles = parseRoles(raw.role)
  // a budget alone does not make a node train (it is not in FLAG, which wantsTraining reads)
  if (raw.maxMemory != null) {
    try {
      out.maxMemory = parseMemorySize(raw.maxMemory as string)
    } catch (err) {
      throw new MemorySizeError(`--max-memory: ${(err as Error).message}`, { cause: err })
    }
  }
  if ((out.roles as RoleName[]).includes('data')) {
    if (out.stage != null && out.stage !== 0) throw new ConfigError(`--role data originates microbatches, which only stage 0 does; it cannot run with --stage ${String(out.stage)}`)
    out.stage = 0
  }
  return out as unknown as TrainingOptions
}

/** `--role stage,data` (or a JSON array in a config file): known names, at least one, stage implied by data. */
function parseRoles (v: unknown): RoleName[] {
  const list = typeof v === 'string' ? v.split(',').map(x => x.trim()).filter(x => x !== '') : v
  if (!Array.isArray(list) || list.length === 0 || !list.every(x => typeof x === 'string')) throw new ConfigError('--role needs a comma-separated list of roles, e.g. --role stage,data')
  const unknown = list.filter(x => !(ROLE_NAMES as readonly string[]).includes(x))
  if (unknown.length > 0) throw new ConfigError(`unknown role ${unknown.join(', ')} (roles: ${ROLE_NAMES.join(', ')})`)
  // the data role runs stage 0's compute: it needs the stage role
  const roles = list as RoleName[]
  return [...new Set<RoleName>(roles.includes('data') ? ['stage', ...roles] : roles)]
}

/** The run manifest these options describe (or the file they name), validated. */
export async function buildManifest (o: TrainingOptions): Promise<RunManifest> {
  if (o.runManifest != null) return await loadManifest(o.runManifest, { validateModel: validateModelConfig })
  // a prepared folder (`data prepare`) names the tokenizer and is pinned by its data id
  const prepared = o.data != null && await isPreparedFolder(o.data) ? await readPreparedManifest(o.data) : undefined
  const tokenizer = await createTokenizer(prepared?.content.tokenizer ?? o.tokenizer)
  const model = await resolveModel(o.model, tokenizer.vocabSize)
  return defaultManifest({
    name: o.runName,
    model: { ...model },
    stages: { count: o.stages, split: null },
    data: { corpus: o.data ?? 'builtin:kjv', seed: o.seed, tokenizer: tokenizer.name, batchSize: o.batch, seqLen: o.seqLen ?? model.blockSize, ...(prepared != null ? { dataId: prepared.dataId } : {}) },
    optimizer: {
      lr: o.lr,
      warmup: o.warmup ?? Math.min(100, Math.floor(o.steps / 10)),
      steps: o.steps,
      weightDecay: o.weightDecay,
      clip: o.gradClip
    },
    codecs: { activation: o.codec, 'activation-grad': o.gradCodec ?? o.codec },
    bottleneck: o.bottleneck > 0 ? o.bottleneck : null
  }, { validateModel: validateModelConfig })
}

/**
 * Plugins these training options need on top of the node's own: the built-in codecs plugin when a
 * codec the run will use is anything but raw f32 (`none`/`raw`): the boundary codecs always, the
 * parameter codecs when averaging rounds fall within the run (period <= steps; the manifest's
 * default parameter codec is `fp32`, a plugin codec). The plugin host cannot load plugins once
 * started, so `start` asks this before it creates the node; a node started without the plugin would
 * fail at its first boundary or round with "no plugin registered ...".
 */
export async function trainingPlugins (o: TrainingOptions): Promise<string[]> {
  const m = await buildManifest(o)
  const names = [m.codecs.activation, m.codecs['activation-grad']]
  if (m.averaging.period <= m.optimizer.steps) names.push(m.codecs.parameter, m.codecs['parameter-grad'])
  return names.some(n => !RAW_CODEC_NAMES.has(n)) ? [CODEC_PLUGIN] : []
}

async function resolveModel (model: string, vocabSize: number): Promise<ModelConfig> {
  if (model.endsWith('.json')) {
    let text: string
    try {
      text = await readFile(model, 'utf8')
    } catch (err) {
      throw new ConfigError(`cannot read model config ${model}: ${(err as Error).message}`, { cause: err })
    }
    return parseModelConfig(text, model)
  }
  return { ...modelPreset(model), vocabSize }
}

export interface TrainingRuntime {
  readonly options: TrainingOptions
  readonly manifest: RunManifest
  readonly runId: string
  /** The pipeline serving now (undefined before the first assignment and during a move). */
  readonly pipeline: PipelineNode | undefined
  /** Resolves when the run is over for this node and its checkpoint and report are written. */
  readonly done: Promise<void>
  status(): HostStatus
  stop(): Promise<void>
}

/** Starts training on a started node: the pinned stage, or the stages the scheduler plugin assigns (stage-host.ts). */
export async function startTrainingRuntime (node: LayerswarmNode, options: TrainingOptions, logger: Logger = silentLogger): Promise<TrainingRuntime> {
  const log = logger.forComponent('layerswarm:runtime')
  const t0 = Date.now()
  const manifest = await buildManifest(options)
  const id = runId(manifest)
  if (options.stage != null && options.stage >= manifest.stages.count) throw new ConfigError(`--stage ${options.stage} is outside [0, ${manifest.stages.count - 1}]`)
  if (options.stage != null && options.roles.includes('stage')) checkStageBudget(manifest, options.stage, options.maxMemory)
  if (!node.container.isRegistered(Tokens.ComputeBackend, true)) {
    throw new ConfigError('training needs a compute backend plugin (e.g. --backend cpu); none is loaded')
  }
  const serves = options.roles.includes('stage')
  const scheduler = node.container.isRegistered(Tokens.Scheduler, true) ? node.container.resolve<Scheduler>(Tokens.Scheduler) : undefined
  if (serves && options.stage == null && scheduler == null) throw new ConfigError(`without --stage the ${SCHEDULER_PLUGIN} plugin assigns the stage, and it is not loaded`)
  const backend = node.container.resolve<ComputeBackend>(Tokens.ComputeBackend)
  const judge = node.container.isRegistered(Tokens.PeerJudge, true) ? node.container.resolve<PeerJudge>(Tokens.PeerJudge) : new PeerJudge()
  // the run's one membership view: the node's (createNode binds it when its runtime names the run),
  // else one for the runtime's life
  let ownMembership: MembershipService | undefined
  if (!node.container.isRegistered(Tokens.Membership, true)) {
    ownMembership = createMembership(node.libp2p as never, { runId: id, stages: manifest.stages.count, log: logger })
    node.container.register(Tokens.Membership, { useValue: ownMembership })
  }
  const membership = node.container.resolve<Membership>(Tokens.Membership)
  if (membership.runId !== id) throw new ConfigError(`the node's membership view is of run ${membership.runId}, the training options describe run ${id}`)
  let host: StageHost | undefined
  const verification = new NodeVerification({
    libp2p: node.libp2p as never,
    privateKey: node.privateKey,
    container: node.container,
    manifest,
    backend,
    membership,
    judge,
    pipeline: () => host?.pipeline,
    chain: node.container.isRegistered(Tokens.Chain, true) ? node.container.resolve<ChainNode>(Tokens.Chain) : undefined,
    validator: options.roles.includes('validator')
      ? { ...(options.checkInterval != null ? { intervalMs: options.checkInterval } : {}), ...(options.checksPerInterval != null ? { checksPerInterval: options.checksPerInterval } : {}) }
      : undefined,
    log: logger
  })
  host = !serves
    ? undefined
    : new StageHost({
      node,
      backend,
      manifest,
      membership,
      pin: options.stage,
      scheduler,
      pipeline: {
        microbatches: options.microbatches,
        maxInflight: options.maxInflight,
        ...(options.maxMemory != null ? { maxMemory: options.maxMemory } : {}),
        evalBatches: options.evalBatches,
        evalEvery: options.evalEvery,
        retry: { maxAttempts: options.maxAttempts, peerWaitMs: options.peerWait },
        ...(options.adversary != null ? { adversary: new Adversary(options.adversary) } : {}),
        ...(options.robustAveraging === false ? { robust: { enabled: false } } : {})
      },
      data: options.data,
      sampleNodeId: options.sampleNodeId,
      onReceipt: (c, tokens) => { verification.receipt(c, tokens) },
      log: logger
    })
  const stageHost = host
  const status = (): HostStatus => {
    const st = stageHost?.status() ?? idleStatus({ runId: id, peerId: node.peerId, manifest, judge, maxInflight: options.maxInflight })
    const validator = verification.validator
    return { ...st, roles: validator != null ? [...st.roles, validator.name] : st.roles, verification: verification.status(), memory: memoryStatus(manifest, st.stage, options.maxMemory) }
  }
  // plugins reach the running roles through the container (they change when the node moves)
  node.container.register(Tokens.Runtime, { useValue: runtimeAccess(stageHost, verification.validator) })
  const unregister = registerControlExtension(node.config.dataDir, {
    status: () => ({ training: status() }),
    routes: {
      'GET /training': () => status(),
      'POST /checkpoint': async (body: unknown) => {
        const dir = (body as { dir?: unknown } | undefined)?.dir ?? options.checkpointDir
        if (typeof dir !== 'string' || dir === '') throw new ControlRequestError('POST /checkpoint needs {"dir": "..."} (or --checkpoint-dir)')
        const p = stageHost?.pipeline
        if (p == null) throw new ControlRequestError(stageHost == null ? 'this node serves no stage' : 'the stage is not ready yet')
        return { path: await p.checkpoint(resolve(dir)) }
      }
    }
  })
  const stopAll = async (): Promise<void> => {
    await stageHost?.stop()
    await verification.stop()
    ownMembership?.stop()
  }
  try {
    ownMembership?.start()
    await verification.start()
    await stageHost?.start()
  } catch (err) {
    unregister()
    await stopAll()
    throw err
  }
  log.info('training', { runId: id, roles: options.roles.join(','), stage: serves ? options.stage ?? 'assigned by the scheduler' : 'none', stages: manifest.stages.count, steps: manifest.optimizer.steps })

  // a node that serves no stage (a validator) has no run of its own to finish: it runs until stopped
  const done = stageHost == null
    ? new Promise<void>(() => {})
    : stageHost.done.then(async () => {
      const p = stageHost.pipeline
      const st = status()
      let checkpoint: string | null = null
      if (options.checkpointDir != null && p != null && st.state === 'done') {
        checkpoint = await p.checkpoint(options.checkpointDir)
        log.info('checkpoint written', { path: checkpoint })
      }
      if (options.report != null && p != null) {
        await writeFileAtomic(options.report, new TextEncoder().encode(JSON.stringify(report(st, manifest, options, t0, checkpoint), null, 2) + '\n'))
        log.info('report written', { path: options.report })
      }
    })

  return {
    options,
    manifest,
    runId: id,
    get pipeline () { return stageHost?.pipeline },
    done,
    status,
    async stop () {
      await stopAll()
      unregister()
    }
  }
}

function runtimeAccess (host: StageHost | undefined, validator: Role | undefined): RuntimeAccess {
  const roles = (): readonly Role[] => [...host?.pipeline?.roles() ?? [], ...validator != null ? [validator] : []]
  return {
    roles,
    role: name => roles().find(r => r.name === name),
    onRolesChanged: listener => host?.onPipelineChanged(listener) ?? (() => {})
  }
}

function report (st: HostStatus, manifest: RunManifest, o: TrainingOptions, t0: number, checkpoint: string | null): Record<string, unknown> {
  const seconds = (Date.now() - t0) / 1000
  const losses = st.loss.map(([, l]) => l)
  return {
    run_id: st.runId,
    peer_id: st.peerId,
    stage: st.stage,
    assignment: st.assignment,
    moves: st.moves,
    stages: st.stages,
    state: st.state,
    steps: st.step,
    total_steps: st.steps,
    tokens: st.tokens,
    seconds: Math.round(seconds * 1000) / 1000,
    tokens_per_s: seconds > 0 ? Math.round(10 * st.tokens / seconds) / 10 : 0,
    loss_first: losses[0] ?? null,
    loss_last: losses.at(-1) ?? null,
    loss_curve: st.loss,
    eval_loss: st.evalLoss,
    eval_curve: st.evals,
    microbatches: { started: st.microbatchesStarted, done: st.microbatchesDone, dropped: st.microbatchesDropped, retried: st.microbatchesRetried },
    bytes_forward: st.bytesForward,
    bytes_backward: st.bytesBackward,
    boundary: {
      bytes_forward: st.boundaryBytesForward,
      tokens_forward: st.boundaryTokensForward,
      bytes_backward: st.boundaryBytesBackward,
      tokens_backward: st.boundaryTokensBackward
    },
    codecs: st.codecs,
    bottleneck: st.bottleneck,
    penalties: st.penalties,
    max_inflight: o.maxInflight,
    microbatches_per_step: o.microbatches,
    checkpoint,
    memory: st.memory ?? null,
    manifest
  }
}
