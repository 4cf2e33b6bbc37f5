// The recompute check: given what a producer revealed of one hop (its HopRecord and the weights the
// commitment names), rebuild the stage on this node's backend, recompute the hop and compare it with
// what was sent. The one place where a check's verdict is reached; the validator, the evidence
// service (an accusation re-checked by every node) and tests all call `recomputeHop`.
//
// Order, cheapest and most telling first:
//   1. the reveal against the signed commitment: signature, run, stage, kind, microbatch, and the
//      hashes of the revealed inputs, output and params (hop-records.ts rules). A mismatch means the
//      reveal is not what was committed to: the revealer's fault, not evidence about the hop
//   2. decoding with the run's codecs (tensor-codecs.ts) and shape checks: bytes that match the
//      commitment but cannot be what an honest peer received or sent convict the producer
//   3. the recomputation: forward (stage 0: from the token ids); backward: forward, then backward
//      with the gradient received (the last stage: from its targets). The reference goes through
//      the commitment's codec and back, so both sides carry the same quantization; the claim is
//      the committed output decoded; compare.ts judges them with the run's tolerance
// Reasons are typed; `conclusive` says whether a failure convicts the producer (a reveal mismatch
// does not: see `revealMismatch`; nor does a recomputation that fails or comes out non-finite here).
import type { ComputeBackend } from '../contracts/backend.ts'
import type { BoundaryRole, TensorCodecs } from '../codecs/tensor-codecs.ts'
import { validateModelConfig } from '../model/config.ts'
import { stageParamSpecs } from '../model/params.ts'
import { Stage } from '../model/stage.ts'
import { boundaryWidth, stageLayouts, type StageLayout } from '../model/stage-split.ts'
import { runId as manifestRunId, type RunManifest } from '../run/manifest.ts'
import { compareTensors, DEFAULT_TOLERANCE, type MismatchReason, type TensorDiff, type Tolerance } from './compare.ts'
import { verifyCommitment, type HopCommitment } from './commitment.ts'
import { hopInputHash, hopOutputHash, type HopRecord, type HopTensor } from './hop-records.ts'
import { paramsDigest } from './params-digest.ts'
import { RecomputeSetupError } from './errors.ts'

/** What a check needs of a hop: the producer's record and the weights its commitment names. */
export interface RevealedHop {
  readonly record: HopRecord
  readonly params: ReadonlyMap<string, Float32Array>
}

/** Why a check failed. */
export type RecomputeReason =
  /** the record's commitment does not verify, or its fields disagree with the record or the expected commitment */
  | 'record'
  /** the revealed params / inputs / output do not hash to what the commitment says */
  | 'params-hash' | 'input-hash' | 'output-hash'
  /** committed bytes no honest peer sends: undecodable, wrong codec, wrong shape, ids out of range, wrong param layout */
  | 'malformed'
  /** the recomputed output differs from the committed one beyond the tolerance */
  | 'output-mismatch'
  /** the recomputation failed or came out non-finite on this node: no verdict */
  | 'inconclusive'

export type RecomputeResult =
  | { readonly ok: true, readonly diff: TensorDiff, readonly commitment: HopCommitment }
  | {
    readonly ok: false
    readonly reason: RecomputeReason
    /** True when the failure convicts the producer (see the top of this file). */
    readonly conclusive: boolean
    readonly detail: string
    /** The comparison's metrics, for 'output-mismatch'. */
    readonly diff: TensorDiff | null
    /** compare.ts's reason, for 'output-mismatch'. */
    readonly mismatch?: MismatchReason
    /** The commitment, once it verified. */
    readonly commitment?: HopCommitment
  }

/** The reasons that mean "the reveal is not what was committed": blame the revealer, never the hop. */
export function revealMismatch (reason: RecomputeReason): boolean {
  return reason === 'record' || reason === 'params-hash' || reason === 'input-hash' || reason === 'output-hash'
}

/** What a check runs with: the run, a backend, the run's boundary codecs. */
export interface RecomputeContext {
  readonly manifest: RunManifest
  readonly backend: ComputeBackend
  /** The run's boundary codecs (tensor-codecs.ts boundaryCodecs). */
  readonly codecs: TensorCodecs<BoundaryRole>
  /** Default DEFAULT_TOLERANCE. */
  readonly tolerance?: Tolerance
}

export interface RecomputeOptions {
  /** The commitment the check is about (e.g. from a receipt): the record's must be the same. */
  readonly expected?: HopCommitment
}

class Fail extends Error {
  constructor (readonly reason: RecomputeReason, message: string, readonly conclusive: boolean) {
    super(message)
  }
}

/** Checks one revealed hop (see the top of this file); never throws for anything the reveal holds. */
export async function recomputeHop (hop: RevealedHop, ctx: RecomputeContext, opts: RecomputeOptions = {}): Promise<RecomputeResult> {
  let commitment: HopCommitment | undefined
  try {
    commitment = await checkRecord(hop.record, ctx.manifest, opts.expected)
    const layout = layoutOf(ctx.manifest, commitment.stage)
    checkHashes(hop, commitment, layout)
    const { claim, reference, shape } = await recompute(hop.record, hop.params, commitment, layout, ctx)
    const v = compareTensors({ data: claim, shape }, { data: reference, shape }, ctx.tolerance ?? DEFAULT_TOLERANCE)
    if (v.ok) return { ok: true, diff: v.diff, commitment }
    if (!v.conclusive) return { ok: false, reason: 'inconclusive', conclusive: false, detail: v.detail, diff: v.diff, commitment }
    return { ok: false, reason: 'output-mismatch', conclusive: true, detail: `${v.reason}: ${v.detail}`, diff: v.diff, mismatch: v.reason, commitment }
  } catch (err) {
    if (err instanceof Fail) return { ok: false, reason: err.reason, conclusive: err.conclusive, detail: err.message, diff: null, ...(commitment != null ? { commitment } : {}) }
    if (err instanceof RecomputeSetupError) throw err
    return { ok: false, reason: 'inconclusive', conclusive: false, detail: `recomputation failed here: ${(err as Error).message}`, diff: null, ...(commitment != null ? { commitment } : {}) }
  }
}

/** The layout of `stage` in the run (RecomputeSetupError for a stage the run does not have). */
export function layoutOf (manifest: RunManifest, stage: number): StageLayout {
  const S = manifest.stages.count
  if (!Number.isSafeInteger(stage) || stage < 0 || stage >= S) throw new RecomputeSetupError(`stage ${stage} is outside the run's ${S} stages`)
  return stageLayouts(validateModelConfig(manifest.model), S, manifest.bottleneck ?? 0)[stage]
}

/** The hops a stage sends: forward except the last stage, backward except stage 0. */
export function stageSends (stage: number, stages: number, kind: HopCommitment['kind']): boolean {
  return kind === 'forward' ? stage < stages - 1 : stage > 0
}

async function checkRecord (record: HopRecord, manifest: RunManifest, expected: HopCommitment | undefined): Promise<HopCommitment> {
  let c: HopCommitment
  try {
    c = (await verifyCommitment(record.commitment)).commitment
  } catch (err) {
    throw new Fail('record', `the record's commitment does not verify: ${(err as Error).message}`, false)
  }
  const bad = (m: string): never => { throw new Fail('record', m, false) }
  if (c.runId !== manifestRunId(manifest)) bad(`commitment is for run ${c.runId}`)
  if (record.kind !== c.kind || record.stage !== c.stage || record.microbatchId !== c.microbatchId || record.paramsDigest !== c.paramsDigest) {
    bad('the record\'s kind, stage, microbatch or params digest differ from its commitment\'s')
  }
  if (expected != null) {
    for (const k of ['producer', 'stage', 'kind', 'microbatchId', 'step', 'inputHash', 'outputHash', 'paramsDigest', 'codecId', 'runId'] as const) {
      if (expected[k] !== c[k]) bad(`the record's commitment differs from the one checked (${k})`)
    }
  }
  if (!stageSends(c.stage, manifest.stages.count, c.kind)) throw new Fail('malformed', `stage ${c.stage} of ${manifest.stages.count} sends no ${c.kind} output`, true)
  return c
}

function checkHashes (hop: RevealedHop, c: HopCommitment, layout: StageLayout): void {
  const { record } = hop
  if (!Array.isArray(record.inputs) || record.inputs.some(t => !(t?.bytes instanceof Uint8Array)) || !(record.output?.bytes instanceof Uint8Array)) {
    throw new Fail('record', 'the record lacks input or output bytes', false)
  }
  if (hopInputHash(record.inputs.map(t => t.bytes)) !== c.inputHash) throw new Fail('input-hash', 'the revealed inputs do not hash to the commitment\'s inputHash', false)
  if (hopOutputHash(record.output.bytes) !== c.outputHash) throw new Fail('output-hash', 'the revealed output does not hash to the commitment\'s outputHash', false)
  if (record.output.codecId !== c.codecId) throw new Fail('record', `the record's output codec ${record.output.codecId} is not the commitment's ${c.codecId}`, false)
  let digest: string
  try {
    digest = paramsDigest(hop.params, stageParamSpecs(layout))
  } catch (err) {
    throw new Fail('params-hash', `the revealed params do not fit stage ${c.stage}'s layout: ${(err as Error).message}`, false)
  }
  if (digest !== c.paramsDigest) throw new Fail('params-hash', 'the revealed params do not hash to the commitment\'s paramsDigest', false)
}

async function recompute (record: HopRecord, params: ReadonlyMap<string, Float32Array>, c: HopCommitment, layout: StageLayout, ctx: RecomputeContext): Promise<{ claim: Float32Array, reference: Float32Array, shape: number[] }> {
  const { manifest } = ctx
  const S = manifest.stages.count
  const last = c.stage === S - 1
  const W = boundaryWidth(layout)
  const expectInputs = c.kind === 'forward' ? 1 : 2
  const malformed = (m: string): never => { throw new Fail('malformed', m, true) }
  if (record.inputs.length !== expectInputs) malformed(`a ${c.kind} hop has ${expectInputs} inputs, the record ${record.inputs.length}`)
  // B and T from the first input, bounded by the run before anything is allocated
  const first = record.inputs[0]
  const [B, T] = first.shape
  if (!(Number.isSafeInteger(B) && B >= 1 && B <= manifest.data.batchSize && Number.isSafeInteger(T) && T >= 1 && T <= Math.min(manifest.data.seqLen, layout.config.blockSize))) {
    malformed(`input shape [${first.shape.join(',')}] is outside the run's bounds`)
  }
  const hiddenShape = [B, T, W]
  const vocab = layout.config.vocabSize
  const input0 = c.stage === 0
    ? { tokens: ids(first, [B, T], 0, vocab, 'tokens') }
    : { hidden: floats(ctx.codecs, 'activation', first, hiddenShape, 'input activation') }
  const outRole: BoundaryRole = c.kind === 'forward' ? 'activation' : 'activation-grad'
  const claim = floats(ctx.codecs, outRole, record.output, hiddenShape, 'committed output', c.codecId)
  let second: { dout?: Float32Array, targets?: Int32Array } = {}
  if (c.kind === 'backward') {
    second = last
      ? { targets: ids(record.inputs[1], [B, T], -Infinity, vocab, 'targets') }
      : { dout: floats(ctx.codecs, 'activation-grad', record.inputs[1], hiddenShape, 'output gradient') }
  }

  let stage: Stage
  try {
    stage = new Stage(ctx.backend, layout, { params })
  } catch (err) {
    throw new Fail('inconclusive', `cannot build stage ${c.stage} here: ${(err as Error).message}`, false)
  }
  let out: Float32Array
  try {
    if (c.kind === 'forward') {
      out = (await stage.forward({ B, T, ...input0 })).hidden as Float32Array
    } else {
      await stage.forward({ B, T, ...input0, ...(second.targets != null ? { targets: second.targets } : {}) })
      out = await stage.backward(second.dout) as Float32Array
    }
  } finally {
    stage.dispose()
  }
  if (!(out instanceof Float32Array) || out.length !== B * T * W) throw new Fail('inconclusive', 'the recomputation returned no tensor of the hop\'s shape', false)
  // a non-finite recomputation is judged by compareTensors (inconclusive); no codec round trip for it
  const reference = out.every(Number.isFinite) ? ctx.codecs.decodeBytes(outRole, c.codecId, ctx.codecs.encodeUnchecked(outRole, out, hiddenShape).bytes) : out
  return { claim, reference, shape: hiddenShape }
}

/** Decodes a committed f32 tensor with the run's codec for `role`; anything off is 'malformed'. */
function floats (codecs: TensorCodecs<BoundaryRole>, role: BoundaryRole, t: HopTensor, shape: number[], what: string, codecId = t.codecId): Float32Array {
  const malformed = (m: string): never => { throw new Fail('malformed', `${what}: ${m}`, true) }
  if (t.dtype !== 'f32') malformed(`dtype ${t.dtype}, expected f32`)
  if (!sameShape(t.shape, shape)) malformed(`shape [${t.shape.join(',')}], expected [${shape.join(',')}]`)
  let data: Float32Array
  try {
    data = codecs.decodeBytes(role, codecId, t.bytes)
  } catch (err) {
    return malformed(`does not decode with the run's ${role} codec: ${(err as Error).message}`)
  }
  if (data.length !== shape.reduce((a, b) => a * b, 1)) malformed(`decodes to ${data.length} values, expected ${shape.join('x')}`)
  return data
}

/** Token ids or targets: raw i32 little-endian, in [lo, hi). */
function ids (t: HopTensor, shape: number[], lo: number, hi: number, what: string): Int32Array {
  const malformed = (m: string): never => { throw new Fail('malformed', `${what}: ${m}`, true) }
  if (t.dtype !== 'i32' || t.codecId !== 0) malformed(`expected raw i32, got ${t.dtype} codec ${t.codecId}`)
  if (!sameShape(t.shape, shape)) malformed(`shape [${t.shape.join(',')}], expected [${shape.join(',')}]`)
  const n = shape[0] * shape[1]
  if (t.bytes.byteLength !== 4 * n) malformed(`${t.bytes.byteLength} bytes for ${n} ids`)
  const dv = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength)
  const out = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const v = dv.getInt32(4 * i, true)
    if (v < lo || v >= hi) malformed(`[${i}] = ${v} is outside [${lo}, ${hi})`)
    out[i] = v
  }
  return out
}

function sameShape (a: readonly number[], b: readonly number[]): boolean {
  return Array.isArray(a) && a.length === b.length && a.every((d, i) => d === b[i])
}
