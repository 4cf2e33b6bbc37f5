// The run manifest: everything nodes must agree on to train one model together (model config,
// stage split, data, optimizer, codecs per tensor role, averaging, bottleneck). Its canonical JSON
// (sorted keys, no whitespace) is hashed with SHA-256; the first 16 bytes, as 32 hex chars, are the
// run id carried by every frame header and gossip topic. Nodes only exchange work within one run id.
//
// Validation is strict: unknown fields are refused at every level except inside `model` (the model
// module owns that schema; pass `validateModel` to check it), because a typo'd field would change
// the run id while changing nothing else.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { ConfigError, LayerswarmError } from '../errors.ts'
import type { TensorRole } from '../contracts/codec.ts'

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

export const MANIFEST_VERSION = 1
export const TENSOR_ROLES: readonly TensorRole[] = Object.freeze(['activation', 'activation-grad', 'parameter', 'parameter-grad'])

export interface RunManifest {
  /** Manifest format version (1). */
  readonly version: number
  /** Human label of the run (part of the hash). */
  readonly name: string
  /** Model config, a plain JSON object (core/model's ModelConfig: vocabSize, blockSize, nLayer, nHead, dModel). */
  readonly model: { readonly [key: string]: JsonValue }
  readonly stages: {
    /** S: number of pipeline stages. */
    readonly count: number
    /** Transformer blocks per stage (length S, sums to model.nLayer), or null for an even split. */
    readonly split: readonly number[] | null
  }
  readonly data: {
    /** Corpus name or path as every node resolves it. */
    readonly corpus: string
    readonly seed: number
    readonly tokenizer: string
    /** B: sequences per microbatch. */
    readonly batchSize: number
    /** T: tokens per sequence. */
    readonly seqLen: number
    /** Optional: the data id (64 hex) of a prepared shard folder (core/data/prepared-manifest.ts); nodes with other data refuse the run. */
    readonly dataId?: string
  }
  readonly optimizer: {
    readonly lr: number
    readonly warmup: number
    readonly steps: number
    readonly weightDecay: number
    /** Global-norm gradient clip; 0 disables. */
    readonly clip: number
    readonly beta1: number
    readonly beta2: number
    readonly eps: number
  }
  /** Codec name per tensor role (resolved to a codec's wire id through the codec registry). */
  readonly codecs: { readonly [R in TensorRole]: string }
  readonly averaging: {
    /** Optimizer steps between averaging rounds. */
    readonly period: number
    readonly mode: 'params' | 'pseudo-grad'
  }
  /** k of the learned bottleneck at stage boundaries (d -> k -> d), or null for none. */
  readonly bottleneck: number | null
}

export type DeepPartial<T> = T extends readonly unknown[] ? T : T extends object ? { -readonly [K in keyof T]?: DeepPartial<T[K]> } : T

export interface ManifestIssue {
  /** Dotted path of the bad field, e.g. "optimizer.lr" or "stages.split[2]". */
  readonly path: string
  readonly message: string
}

/** A manifest has invalid fields; `issues` lists every one with its path. CLI exit code 2. */
export class ManifestValidationError extends ConfigError {
  readonly issues: readonly ManifestIssue[]
  constructor (issues: readonly ManifestIssue[], source?: string) {
    super(`invalid run manifest${source != null ? ` ${source}` : ''}: ` + issues.map(i => `${i.path}: ${i.message}`).join('; '))
    this.issues = issues
  }
}

/** A manifest file cannot be read or is not JSON. CLI exit code 2. */
export class ManifestFileError extends ConfigError {
  readonly file: string
  constructor (file: string, reason: string, options?: { cause?: unknown }) {
    super(`run manifest ${file}: ${reason}`, options)
    this.file = file
  }
}

/** A value has no canonical JSON form (NaN, Infinity, undefined, bigint, function, non-plain object, cycle). */
export class CanonicalJsonError extends LayerswarmError {
  readonly path: string
  constructor (path: string, what: string) {
    super('ERR_CANONICAL_JSON', `no canonical JSON for ${what} at ${path === '' ? '(root)' : path}`)
    this.path = path
  }
}

// ---- canonical JSON and run id ---------------------------------------------------------------

const MAX_DEPTH = 64

/**
 * Canonical JSON: object keys sorted by UTF-16 code units (as RFC 8785), no whitespace, numbers in
 * JavaScript's shortest round-trip form (-0 as 0). Refuses what JSON.stringify would silently drop
 * or mangle, so equal manifests always hash equal and unequal ones differ.
 */
export function canonicalJson (value: unknown): string {
  return canon(value, '', 0, new Set())
}

function canon (v: unknown, path: string, depth: number, seen: Set<object>): string {
  if (depth > MAX_DEPTH) throw new CanonicalJsonError(path, `nesting deeper than ${MAX_DEPTH}`)
  if (v === null) return 'null'
  switch (typeof v) {
    case 'boolean': return v ? 'true' : 'false'
    case 'string': return JSON.stringify(v)
    case 'number':
      if (!Number.isFinite(v)) throw new CanonicalJsonError(path, String(v))
      return JSON.stringify(v)
    case 'object': break
    default: throw new CanonicalJsonError(path, typeof v)
  }
  const obj = v as object
  if (seen.has(obj)) throw new CanonicalJsonError(path, 'a cycle')
  seen.add(obj)
  try {
    if (Array.isArray(obj)) {
      const parts: string[] = []
      for (let i = 0; i < obj.length; i++) {
        if (!(i in obj)) throw new CanonicalJsonError(`${path}[${i}]`, 'an array hole')
        parts.push(canon(obj[i], `${path}[${i}]`, depth + 1, seen))
      }
      return '[' + parts.join(',') + ']'
    }
    const proto = Object.getPrototypeOf(obj)
    if (proto !== Object.prototype && proto !== null) throw new CanonicalJsonError(path, `a ${obj.constructor?.name ?? 'non-plain'} object`)
    const rec = obj as Record<string, unknown>
    const keys = Object.keys(rec).sort()
    return '{' + keys.map(k => {
      const child = path === '' ? k : `${path}.${k}`
      if (rec[k] === undefined) throw new CanonicalJsonError(child, 'undefined')
      return JSON.stringify(k) + ':' + canon(rec[k], child, depth + 1, seen)
    }).join(',') + '}'
  } finally {
    seen.delete(obj)
  }
}

/**
 * Run id: hex of the first 16 bytes of sha256(canonical JSON of the validated manifest). 128 bits
 * make accidental collisions impossible in practice and fit the frame header's run id field.
 */
export function runId (manifest: RunManifest): string {
  return createHash('sha256').update(canonicalJson(manifest), 'utf8').digest().subarray(0, 16).toString('hex')
}

// ---- defaults --------------------------------------------------------------------------------

/** Mirrors core/model's 'tiny' preset (byte vocabulary) so a run works with no flags. */
const DEFAULTS: RunManifest = Object.freeze<RunManifest>({
  version: MANIFEST_VERSION,
  name: 'layerswarm',
  model: { vocabSize: 257, blockSize: 64, nLayer: 4, nHead: 4, dModel: 128 },
  stages: { count: 2, split: null },
  data: { corpus: 'builtin:tiny', seed: 1, tokenizer: 'byte', batchSize: 8, seqLen: 64 },
  optimizer: { lr: 3e-4, warmup: 100, steps: 10_000, weightDecay: 0.1, clip: 1, beta1: 0.9, beta2: 0.95, eps: 1e-8 },
  codecs: { activation: 'fp16', 'activation-grad': 'fp16', parameter: 'fp32', 'parameter-grad': 'fp16' },
  averaging: { period: 50, mode: 'pseudo-grad' as const },
  bottleneck: null
})

/**
 * The default manifest with `overrides` merged in (objects merge field by field; arrays, null and
 * `model` replace whole, since a model config is one unit), validated.
 */
export function defaultManifest (overrides: DeepPartial<RunManifest> = {}, options: ValidateOptions = {}): RunManifest {
  const merged = merge(structuredClone(DEFAULTS) as unknown as Record<string, unknown>, overrides as Record<string, unknown>, '')
  return validateManifest(merged, options)
}

function merge (base: Record<string, unknown>, over: Record<string, unknown>, path: string): Record<string, unknown> {
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue
    const b = base[k]
    const whole = path === '' && k === 'model'
    if (!whole && isPlainObject(v) && isPlainObject(b)) base[k] = merge({ ...b }, v, path === '' ? k : `${path}.${k}`)
    else base[k] = v
  }
  return base
}

// ---- validation ------------------------------------------------------------------------------

export interface ValidateOptions {
  /** Checks the model object (e.g. core/model's validateModelConfig); a throw becomes an issue at "model". */
  readonly validateModel?: (model: unknown) => void
  /** Names the source (file) in error messages. */
  readonly source?: string
}

const CODEC_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/

/** Checks every field, collecting all issues, and returns a deep-frozen copy. */
export function validateManifest (input: unknown, options: ValidateOptions = {}): RunManifest {
  const issues: ManifestIssue[] = []
  const bad = (path: string, message: string): void => { issues.push({ path, message }) }
  const obj = (v: unknown, path: string, keys: readonly string[], optional: readonly string[] = []): Record<string, unknown> | undefined => {
    if (!isPlainObject(v)) { bad(path, 'must be an object'); return undefined }
    for (const k of Object.keys(v)) if (!keys.includes(k) && !optional.includes(k)) bad(path === '' ? k : `${path}.${k}`, 'unknown field')
    for (const k of keys) if (v[k] === undefined) bad(path === '' ? k : `${path}.${k}`, 'is required')
    return v
  }
  const int = (v: unknown, path: string, min: number, max = Number.MAX_SAFE_INTEGER): v is number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) { bad(path, `must be an integer in ${min}..${max}, got ${show(v)}`); return false }
    return true
  }
  const num = (v: unknown, path: string, ok: (x: number) => boolean, what: string): v is number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) { bad(path, `must be ${what}, got ${show(v)}`); return false }
    return true
  }
  const str = (v: unknown, path: string, max = 1024): v is string => {
    if (typeof v !== 'string' || v.length === 0 || v.length > max) { bad(path, `must be a non-empty string of at most ${max} chars, got ${show(v)}`); return false }
    return true
  }

  const root = obj(input, '', ['version', 'name', 'model', 'stages', 'data', 'optimizer', 'codecs', 'averaging', 'bottleneck'])
  if (root == null) throw new ManifestValidationError(issues, options.source)
  if (root.version !== MANIFEST_VERSION) bad('version', `must be ${MANIFEST_VERSION}, got ${show(root.version)}`)
  str(root.name, 'name', 128)

  let nLayer: number | undefined
  let dModel: number | undefined
  if (!isPlainObject(root.model) || Object.keys(root.model).length === 0) {
    bad('model', 'must be a non-empty object')
  } else {
    try {
      canonicalJson(root.model)
    } catch (err) {
      bad(`model${(err as CanonicalJsonError).path !== '' ? '.' + (err as CanonicalJsonError).path : ''}`, 'must be a JSON value (finite numbers, no undefined)')
    }
    if (options.validateModel != null) {
      try { options.validateModel(root.model) } catch (err) { bad('model', (err as Error).message) }
    }
    const m = root.model
    if (typeof m.nLayer === 'number' && Number.isSafeInteger(m.nLayer) && m.nLayer > 0) nLayer = m.nLayer
    if (typeof m.dModel === 'number' && Number.isSafeInteger(m.dModel) && m.dModel > 0) dModel = m.dModel
  }

  const stages = obj(root.stages, 'stages', ['count', 'split'])
  if (stages != null && int(stages.count, 'stages.count', 1, 1024)) {
    if (nLayer !== undefined && stages.count > nLayer) bad('stages.count', `${stages.count} stages need at least as many blocks, model.nLayer is ${nLayer}`)
    if (stages.split !== null && stages.split !== undefined) {
      if (!Array.isArray(stages.split) || stages.split.length !== stages.count) {
        bad('stages.split', `must be null or an array of ${stages.count} block counts`)
      } else {
        stages.split.forEach((x, i) => int(x, `stages.split[${i}]`, 1))
        const sum = (stages.split as unknown[]).reduce<number>((s, x) => s + (typeof x === 'number' ? x : 0), 0)
        if (nLayer !== undefined && sum !== nLayer) bad('stages.split', `sums to ${sum} blocks, model.nLayer is ${nLayer}`)
      }
    }
  }

  const data = obj(root.data, 'data', ['corpus', 'seed', 'tokenizer', 'batchSize', 'seqLen'], ['dataId'])
  if (data != null) {
    // absent (not null) when unpinned, so manifests without it keep their run id
    if (data.dataId !== undefined && (typeof data.dataId !== 'string' || !/^[0-9a-f]{64}$/.test(data.dataId))) bad('data.dataId', `must be 64 lowercase hex chars (a prepared folder's data id), got ${show(data.dataId)}`)
    str(data.corpus, 'data.corpus')
    int(data.seed, 'data.seed', 0)
    str(data.tokenizer, 'data.tokenizer', 128)
    int(data.batchSize, 'data.batchSize', 1, 1 << 20)
    int(data.seqLen, 'data.seqLen', 1, 1 << 24)
    const blockSize = isPlainObject(root.model) ? root.model.blockSize : undefined
    if (typeof data.seqLen === 'number' && typeof blockSize === 'number' && data.seqLen > blockSize) {
      bad('data.seqLen', `${data.seqLen} exceeds model.blockSize ${blockSize}`)
    }
  }

  const opt = obj(root.optimizer, 'optimizer', ['lr', 'warmup', 'steps', 'weightDecay', 'clip', 'beta1', 'beta2', 'eps'])
  if (opt != null) {
    num(opt.lr, 'optimizer.lr', x => x > 0, 'a positive number')
    const w = int(opt.warmup, 'optimizer.warmup', 0)
    const s = int(opt.steps, 'optimizer.steps', 1)
    if (w && s && (opt.warmup as number) > (opt.steps as number)) bad('optimizer.warmup', `${show(opt.warmup)} exceeds optimizer.steps ${show(opt.steps)}`)
    num(opt.weightDecay, 'optimizer.weightDecay', x => x >= 0, 'a number >= 0')
    num(opt.clip, 'optimizer.clip', x => x >= 0, 'a number >= 0 (0 disables clipping)')
    num(opt.beta1, 'optimizer.beta1', x => x >= 0 && x < 1, 'in [0, 1)')
    num(opt.beta2, 'optimizer.beta2', x => x >= 0 && x < 1, 'in [0, 1)')
    num(opt.eps, 'optimizer.eps', x => x > 0, 'a positive number')
  }

  const codecs = obj(root.codecs, 'codecs', TENSOR_ROLES)
  if (codecs != null) {
    for (const role of TENSOR_ROLES) {
      const v = codecs[role]
      if (v !== undefined && (typeof v !== 'string' || !CODEC_NAME_RE.test(v))) bad(`codecs.${role}`, `must be a codec name (lowercase, [a-z0-9._-], 1..64 chars), got ${show(v)}`)
    }
  }

  const avg = obj(root.averaging, 'averaging', ['period', 'mode'])
  if (avg != null) {
    int(avg.period, 'averaging.period', 1)
    if (avg.mode !== 'params' && avg.mode !== 'pseudo-grad') bad('averaging.mode', `must be "params" or "pseudo-grad", got ${show(avg.mode)}`)
  }

  if (root.bottleneck !== null && int(root.bottleneck, 'bottleneck', 1) && dModel !== undefined && (root.bottleneck) >= dModel) {
    bad('bottleneck', `k=${root.bottleneck} must be below model.dModel ${dModel}`)
  }

  if (issues.length > 0) throw new ManifestValidationError(issues, options.source)
  return deepFreeze(structuredClone(root)) as unknown as RunManifest
}

// ---- loading ---------------------------------------------------------------------------------

/** Parses and validates a manifest from JSON text; `source` names it in errors. */
export function parseManifest (text: string, options: ValidateOptions = {}): RunManifest {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new ManifestFileError(options.source ?? '(text)', `is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  return validateManifest(value, options)
}

/** Reads, parses and validates a manifest file. */
export async function loadManifest (file: string, options: ValidateOptions & { signal?: AbortSignal } = {}): Promise<RunManifest> {
  let text: string
  try {
    text = await readFile(file, { encoding: 'utf8', signal: options.signal })
  } catch (err) {
    throw new ManifestFileError(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err })
  }
  return parseManifest(text, { ...options, source: options.source ?? file })
}

// ---- helpers ---------------------------------------------------------------------------------

function isPlainObject (v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

function show (v: unknown): string {
  if (v === undefined) return 'undefined'
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v)
  try { return JSON.stringify(v) ?? String(v) } catch { return String(v) }
}

function deepFreeze<T> (v: T): T {
  if (v !== null && typeof v === 'object') {
    for (const x of Object.values(v)) deepFreeze(x)
    Object.freeze(v)
  }
  return v
}
