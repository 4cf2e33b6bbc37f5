// Checkpoints on disk: two safetensors files written atomically (temp file, fsync, rename,
// fsync of the directory).
//   NAME.safetensors        model parameters under their HF-style names (f32, [OC,C] matmul
//                           weights); metadata: format, model config, stage layout, checkpoint
//                           id, SHA-256 of the data section.
//   NAME.optim.safetensors  AdamW moments as `m.<name>` / `v.<name>`; metadata: the same
//                           checkpoint id, AdamW's step, the trainer's state (JSON), SHA-256.
// The optimizer file is written first, so a model file on disk always has its optimizer file;
// the shared random id catches a pair mixed from two different saves.
import { createHash, randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { LayerswarmError } from '../errors.ts'
import { validateModelConfig, type ModelConfig } from '../model/config.ts'
import type { AdamWState } from '../model/optimizer.ts'
import { numel, stageParamSpecs, type ParamSpec } from '../model/params.ts'
import { stageLayouts } from '../model/stage-split.ts'
import { decodeSafetensors, encodeSafetensors, SafetensorsError, type StTensor } from './safetensors.ts'
import { writeFileAtomic } from '../files.ts'

/** A checkpoint file is unreadable: missing, truncated, corrupted, or not a layerswarm checkpoint. */
export class CheckpointCorruptError extends LayerswarmError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_CHECKPOINT_CORRUPT', message, options)
  }
}

/** A valid checkpoint that does not fit what it is loaded into (other model config or layout). */
export class CheckpointMismatchError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_CHECKPOINT_MISMATCH', message)
  }
}

export const MODEL_FORMAT = 'layerswarm.model/1'
export const OPTIMIZER_FORMAT = 'layerswarm.optimizer/1'

/** Which parameters a checkpoint holds: one stage of a split, or every stage (stage null). */
export interface CheckpointLayout {
  /** S of the split the parameters come from. */
  readonly stages: number
  /** k, bottleneck width (0 = off). */
  readonly bottleneck: number
  /** The stage index, or null for all stages (a whole model). */
  readonly stage: number | null
}

export interface Checkpoint {
  readonly config: ModelConfig
  readonly layout: CheckpointLayout
  readonly params: Map<string, Float32Array>
  /** AdamW moments and step; absent when loaded with `optimizer: false`. */
  readonly optimizer?: AdamWState
  /** Trainer state (step, seed, data, schedule): plain JSON, in the optimizer file. */
  readonly train?: Record<string, unknown>
  /** What a reader of the model file alone needs (tokenizer name, run info): plain JSON. */
  readonly info?: Record<string, unknown>
}

/** foo.safetensors -> foo.optim.safetensors */
export function optimizerPathFor (modelPath: string): string {
  return modelPath.replace(/(\.safetensors)?$/, '.optim.safetensors')
}

/** Parameter specs a layout holds, in order. */
export function checkpointSpecs (config: ModelConfig, layout: CheckpointLayout): ParamSpec[] {
  const layouts = stageLayouts(config, layout.stages, layout.bottleneck)
  if (layout.stage === null) return layouts.flatMap(stageParamSpecs)
  const l = layouts[layout.stage]
  if (l == null) throw new CheckpointMismatchError(`stage ${layout.stage} does not exist in a ${layout.stages}-stage split`)
  return stageParamSpecs(l)
}

/** Writes the optimizer file (when `ckpt.optimizer` is set), then the model file. */
export async function saveCheckpoint (path: string, ckpt: Checkpoint): Promise<void> {
  const specs = checkpointSpecs(ckpt.config, ckpt.layout)
  checkParams(specs, ckpt.params, 'params')
  const id = randomBytes(16).toString('hex')
  if (ckpt.optimizer != null) {
    checkParams(specs, ckpt.optimizer.m, 'optimizer m')
    checkParams(specs, ckpt.optimizer.v, 'optimizer v')
    const tensors: Array<[string, StTensor]> = []
    for (const s of specs) tensors.push([`m.${s.name}`, { dtype: 'F32', shape: s.shape, data: ckpt.optimizer.m.get(s.name) as Float32Array }])
    for (const s of specs) tensors.push([`v.${s.name}`, { dtype: 'F32', shape: s.shape, data: ckpt.optimizer.v.get(s.name) as Float32Array }])
    await writeFileAtomic(optimizerPathFor(path), withChecksum(tensors, {
      format: OPTIMIZER_FORMAT,
      checkpoint_id: id,
      adam_step: String(ckpt.optimizer.step),
      train: JSON.stringify(ckpt.train ?? {})
    }))
  }
  const tensors: Array<[string, StTensor]> = specs.map(s => [s.name, { dtype: 'F32', shape: s.shape, data: ckpt.params.get(s.name) as Float32Array }])
  await writeFileAtomic(path, withChecksum(tensors, {
    format: MODEL_FORMAT,
    checkpoint_id: id,
    config: JSON.stringify(ckpt.config),
    layout: JSON.stringify(ckpt.layout),
    has_optimizer: String(ckpt.optimizer != null),
    ...(ckpt.info != null ? { info: JSON.stringify(ckpt.info) } : {})
  }))
}

export interface LoadOptions {
  /** Also read the optimizer file (default true); missing => CheckpointCorruptError. */
  readonly optimizer?: boolean
}

export async function loadCheckpoint (path: string, opts: LoadOptions = {}): Promise<Checkpoint> {
  const model = await readVerified(path, MODEL_FORMAT)
  let config: ModelConfig
  let layout: CheckpointLayout
  let specs: ParamSpec[]
  let info: Record<string, unknown> | undefined
  try {
    config = validateModelConfig(JSON.parse(model.metadata.config))
    layout = parseLayout(JSON.parse(model.metadata.layout))
    specs = checkpointSpecs(config, layout)
    if (model.metadata.info != null) info = JSON.parse(model.metadata.info)
  } catch (err) {
    throw new CheckpointCorruptError(`${path}: bad config, layout or info metadata (${(err as Error).message})`, { cause: err })
  }
  const params = tensorsByName(path, specs, model.tensors, '')
  const withInfo = info != null ? { info } : {}
  if (opts.optimizer === false) return { config, layout, params, ...withInfo }
  if (model.metadata.has_optimizer !== 'true') throw new CheckpointMismatchError(`${path} was saved without optimizer state; cannot resume from it`)

  const optPath = optimizerPathFor(path)
  const opt = await readVerified(optPath, OPTIMIZER_FORMAT)
  if (opt.metadata.checkpoint_id !== model.metadata.checkpoint_id) {
    throw new CheckpointCorruptError(`${optPath} belongs to another save than ${basename(path)} (checkpoint ids differ)`)
  }
  const step = Number(opt.metadata.adam_step)
  let train: Record<string, unknown>
  try {
    train = JSON.parse(opt.metadata.train)
  } catch (err) {
    throw new CheckpointCorruptError(`${optPath}: train metadata is not JSON`, { cause: err })
  }
  if (!Number.isSafeInteger(step) || step < 0 || train == null || typeof train !== 'object') {
    throw new CheckpointCorruptError(`${optPath}: bad adam_step or train metadata`)
  }
  return {
    config,
    layout,
    params,
    optimizer: { step, m: tensorsByName(optPath, specs, opt.tensors, 'm.', 'v.'), v: tensorsByName(optPath, specs, opt.tensors, 'v.', 'm.') },
    train,
    ...withInfo
  }
}

/** The checkpoint with the highest step in `dir` (files named step-NNNNNN.safetensors), or null. */
export async function latestCheckpoint (dir: string): Promise<string | null> {
  let best: { step: number, file: string } | null = null
  for (const f of await readdir(dir)) {
    const m = /^step-(\d+)\.safetensors$/.exec(f)
    if (m == null) continue
    const step = Number(m[1])
    if (best == null || step > best.step) best = { step, file: join(dir, f) }
  }
  return best?.file ?? null
}

export function checkpointFileName (step: number): string {
  return `step-${String(step).padStart(6, '0')}.safetensors`
}

// ---- helpers ---------------------------------------------------------------------------------

function checkParams (specs: ParamSpec[], data: ReadonlyMap<string, Float32Array>, what: string): void {
  for (const s of specs) {
    const d = data.get(s.name)
    if (d == null || d.length !== numel(s.shape)) {
      throw new CheckpointMismatchError(`${what}: ${s.name} ${d == null ? 'missing' : `has ${d.length} values, expected ${numel(s.shape)}`}`)
    }
  }
}

function withChecksum (tensors: Array<[string, StTensor]>, metadata: Record<string, string>): Uint8Array {
  // the checksum covers the data section; compute it from an encoding without it, then re-encode
  const probe = encodeSafetensors(tensors, metadata)
  const headerEnd = 8 + Number(new DataView(probe.buffer, probe.byteOffset, 8).getBigUint64(0, true))
  const sha = createHash('sha256').update(probe.subarray(headerEnd)).digest('hex')
  return encodeSafetensors(tensors, { ...metadata, data_sha256: sha })
}

async function readVerified (path: string, format: string): Promise<{ tensors: Map<string, StTensor>, metadata: Record<string, string> }> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err) {
    throw new CheckpointCorruptError(`cannot read checkpoint ${path}: ${(err as Error).message}`, { cause: err })
  }
  let file
  try {
    file = decodeSafetensors(bytes)
  } catch (err) {
    if (err instanceof SafetensorsError) throw new CheckpointCorruptError(`${path}: ${err.message}`, { cause: err })
    throw err
  }
  if (file.metadata.format !== format) throw new CheckpointCorruptError(`${path}: not a ${format} file (format ${JSON.stringify(file.metadata.format)})`)
  const sha = createHash('sha256').update(bytes.subarray(file.dataOffset)).digest('hex')
  if (sha !== file.metadata.data_sha256) throw new CheckpointCorruptError(`${path}: data checksum mismatch (corrupted)`)
  return file
}

function tensorsByName (path: string, specs: ParamSpec[], tensors: Map<string, StTensor>, prefix: string, otherPrefix?: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  for (const s of specs) {
    const t = tensors.get(prefix + s.name)
    if (t == null) throw new CheckpointMismatchError(`${path}: missing tensor ${prefix}${s.name}`)
    if (t.dtype !== 'F32' || t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) {
      throw new CheckpointMismatchError(`${path}: ${prefix}${s.name} is ${t.dtype} [${t.shape.join(',')}], expected F32 [${s.shape.join(',')}]`)
    }
    out.set(s.name, t.data as Float32Array)
  }
  const expected = specs.length * (otherPrefix != null ? 2 : 1)
  if (tensors.size !== expected) throw new CheckpointMismatchError(`${path}: ${tensors.size} tensors, expected ${expected}`)
  return out
}

function parseLayout (x: unknown): CheckpointLayout {
  const o = x as Record<string, unknown>
  if (o == null || typeof o !== 'object' || !Number.isSafeInteger(o.stages) || !Number.isSafeInteger(o.bottleneck) ||
    !(o.stage === null || Number.isSafeInteger(o.stage))) {
    throw new Error('layout must be {stages, bottleneck, stage}')
  }
  return { stages: o.stages as number, bottleneck: o.bottleneck as number, stage: o.stage as number | null }
}

/** Atomic file writes live in core/files.ts; re-exported for callers of this module. */
export { writeFileAtomic }
