// Butterfly all-reduce over one group: the messages, the shard arithmetic and both sides of the
// exchange. The averaging service (averager.ts) forms the group; the round's runner
// (all-reduce-round.ts) drives the exchange with this module's pieces.
//
// The flattened vector (N float32) is cut into one contiguous shard per member (equal sizes, in
// sorted peer-id order). Member i owns shard i. One stream per (contributor, owner) pair carries
// both phases, protocol /layerswarm/averaging/1.0.0, frames from core/wire with credit flow control:
//
//   contributor k                                          owner j
//   ── request (meta: round, group digest, shard j, total N, weight, stats of all n shards) ──>
//   ── parameter(-grad)-shard parts: k's values of shard j, codec per role, chunked ──────────>
//                                 (j waits for every member or its deadline, then averages,
//                                  weighted by samples, in member order)
//   <── response (meta: contributors [index, weight, norm, maxAbs], parts) ───────────────────
//   <── parameter(-grad)-shard parts: the average of shard j (the same bytes to everyone) ────
//   <── error frame instead, on any failure (late, banned, other view, bad data)
//
// Honesty: every contributor declares, in each request, the L2 norm and max |x| of its values for
// *every* shard. Member i therefore hears each member's declaration directly, and checks the result
// of shard j against them: a weighted average cannot exceed its inputs' max |x| nor their max norm
// (plus the codec's declared error). The owner checks each contribution against its declaration
// (so a contributor cannot make an honest owner look dishonest by declaring small and sending large).
import type { Frame, FramedStream, FrameKind } from '../wire/index.ts'
import { AveragingProtocolError, ShardBoundsError, ShardSizeError, ShardStatsMismatchError } from './errors.ts'
import type { AveragingRole, TensorCodecs } from '../codecs/tensor-codecs.ts'

export const AVERAGING_PROTOCOL = '/layerswarm/averaging/1.0.0'
/**
 * Elements per data frame (1 MiB of f32 before the codec). Small frames keep little queued per
 * stream (window x frame): libp2p's connection monitor aborts a connection whose ping waits > 5 s
 * behind bulk data on a loaded machine (seen with 4 MiB frames, 4 processes on 2 cores).
 */
export const DEFAULT_CHUNK_ELEMENTS = 1 << 18
/** Largest group this protocol accepts (its metadata grows with the group). */
export const MAX_GROUP_SIZE = 64

export function shardKind (role: AveragingRole): FrameKind {
  return role === 'parameter' ? 'parameter-shard' : 'parameter-grad-shard'
}

/** Contiguous, equal (within one element) shard ranges [start, end) of `total` elements over `n` members. */
export function shardRanges (total: number, n: number): Array<[number, number]> {
  const out: Array<[number, number]> = []
  const base = Math.floor(total / n)
  const extra = total % n
  let start = 0
  for (let i = 0; i < n; i++) {
    const len = base + (i < extra ? 1 : 0)
    out.push([start, start + len])
    start += len
  }
  return out
}

export interface ShardStats {
  /** L2 norm (float64). */
  readonly norm: number
  /** max |x|. */
  readonly maxAbs: number
}

export function shardStats (x: Float32Array): ShardStats {
  return new StatsAccumulator().add(x).stats
}

/**
 * Running L2 norm and max |x| over consecutive pieces of one vector (parts as they arrive). Four
 * float64 lanes: one running sum waits on each add's latency; the order differs from a single sum by
 * rounding only, which the checks' relative slack covers.
 */
export class StatsAccumulator {
  private s0 = 0
  private s1 = 0
  private s2 = 0
  private s3 = 0
  private m = 0
  elements = 0

  add (x: Float32Array): this {
    let s0 = this.s0; let s1 = this.s1; let s2 = this.s2; let s3 = this.s3
    let m0 = this.m; let m1 = 0
    const n = x.length
    let i = 0
    for (; i + 4 <= n; i += 4) {
      const a = x[i]; const b = x[i + 1]; const c = x[i + 2]; const d = x[i + 3]
      s0 += a * a; s1 += b * b; s2 += c * c; s3 += d * d
      m0 = Math.max(m0, Math.abs(a), Math.abs(b)); m1 = Math.max(m1, Math.abs(c), Math.abs(d))
    }
    for (; i < n; i++) { const a = x[i]; s0 += a * a; m0 = Math.max(m0, Math.abs(a)) }
    this.s0 = s0; this.s1 = s1; this.s2 = s2; this.s3 = s3
    this.m = Math.max(m0, m1)
    this.elements += n
    return this
  }

  get stats (): ShardStats {
    return { norm: Math.sqrt((this.s0 + this.s1) + (this.s2 + this.s3)), maxAbs: this.m }
  }
}

// ---- messages ---------------------------------------------------------------------------------

export interface ReduceRequest {
  readonly op: 'reduce'
  readonly round: number
  readonly group: string
  /** Index of the shard (= its owner's index in the group). */
  readonly shard: number
  /** Group size. */
  readonly n: number
  /** Elements of the whole flattened vector. */
  readonly total: number
  readonly role: AveragingRole
  /** Samples processed since the last round (the contribution's weight), > 0. */
  readonly weight: number
  /** [norm, maxAbs] of the sender's values for every shard, in shard order. */
  readonly stats: ReadonlyArray<readonly [number, number]>
  /** Data frames that follow. */
  readonly parts: number
}

export interface ReduceResponse {
  readonly op: 'result'
  /** [member index, weight, norm, maxAbs] of each contribution in the average, owner included. */
  readonly contributors: ReadonlyArray<readonly [number, number, number, number]>
  readonly parts: number
}

const MAX_WEIGHT = 1e15
const isNat = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0
const isNonNeg = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0

export function parseReduceRequest (frame: Frame): ReduceRequest {
  const h = frame.header
  if (h.kind !== 'request') throw new AveragingProtocolError(`expected a request frame, got ${h.kind}`)
  const m = h.metadata as Record<string, unknown> | undefined
  const bad = (what: string): never => { throw new AveragingProtocolError(`bad reduce request: ${what}`) }
  if (m == null || m.op !== 'reduce') bad('op must be "reduce"')
  const r = m as Record<string, unknown>
  if (!isNat(r.round)) bad('round')
  if (typeof r.group !== 'string' || !/^[0-9a-f]{16}$/.test(r.group)) bad('group digest')
  if (!isNat(r.n) || (r.n as number) < 2 || (r.n as number) > MAX_GROUP_SIZE) bad('group size')
  if (!isNat(r.shard) || (r.shard as number) >= (r.n as number)) bad('shard index')
  if (!isNat(r.total)) bad('total')
  if (r.role !== 'parameter' && r.role !== 'parameter-grad') bad('role')
  if (typeof r.weight !== 'number' || !Number.isFinite(r.weight) || r.weight <= 0 || r.weight > MAX_WEIGHT) bad('weight must be in (0, 1e15]')
  if (!Array.isArray(r.stats) || r.stats.length !== r.n) bad('stats must list every shard')
  for (const s of r.stats as unknown[]) {
    if (!Array.isArray(s) || s.length !== 2 || !isNonNeg(s[0]) || !isNonNeg(s[1])) bad('stats entries must be [norm, maxAbs], finite, >= 0')
  }
  if (!isNat(r.parts)) bad('parts')
  return r as unknown as ReduceRequest
}

export function parseReduceResponse (frame: Frame, n: number): ReduceResponse {
  const h = frame.header
  if (h.kind !== 'response') throw new AveragingProtocolError(`expected a response frame, got ${h.kind}`)
  const m = h.metadata as Record<string, unknown> | undefined
  const bad = (what: string): never => { throw new AveragingProtocolError(`bad reduce response: ${what}`) }
  if (m == null || m.op !== 'result') bad('op must be "result"')
  const r = m as Record<string, unknown>
  if (!isNat(r.parts)) bad('parts')
  if (!Array.isArray(r.contributors) || r.contributors.length < 1 || r.contributors.length > n) bad('contributors')
  const seen = new Set<number>()
  for (const c of r.contributors as unknown[]) {
    if (!Array.isArray(c) || c.length !== 4) bad('contributor entries must be [index, weight, norm, maxAbs]')
    const [i, w, norm, maxAbs] = c as unknown[]
    if (!isNat(i) || i >= n || seen.has(i)) bad('contributor index')
    seen.add(i as number)
    if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0 || w > MAX_WEIGHT) bad('contributor weight')
    if (!isNonNeg(norm) || !isNonNeg(maxAbs)) bad('contributor stats')
  }
  return r as unknown as ReduceResponse
}

// ---- moving shards ----------------------------------------------------------------------------

export interface EncodedPart { readonly codecId: number, readonly bytes: Uint8Array, readonly elements: number }

/**
 * Encoded parts of `data` (chunkElements each): the bytes to send, one entry per frame. `checked`
 * false skips the codecs adapter's finite check (values checked before, or fault injection).
 */
export function encodeParts (codecs: TensorCodecs<AveragingRole>, role: AveragingRole, data: Float32Array, chunkElements: number,
  checked = true): EncodedPart[] {
  const out: EncodedPart[] = []
  for (let p = 0; p < partCount(data.length, chunkElements); p++) out.push(encodePart(codecs, role, data, chunkElements, p, checked))
  return out
}

/** Frames a shard of `length` elements takes in parts of `chunkElements`. */
export function partCount (length: number, chunkElements: number): number {
  return Math.ceil(length / chunkElements)
}

/** Part p of `data` in parts of `chunkElements`, encoded. */
export function encodePart (codecs: TensorCodecs<AveragingRole>, role: AveragingRole, data: Float32Array, chunkElements: number,
  p: number, checked = true): EncodedPart {
  const chunk = data.subarray(p * chunkElements, Math.min((p + 1) * chunkElements, data.length))
  const enc = checked ? codecs.encode(role, chunk) : codecs.encodeUnchecked(role, chunk)
  return { ...enc, elements: chunk.length }
}

/**
 * Sends `count` parts, each produced when its turn comes (`part(i)`): encoding part i+1 waits
 * behind sending part i, so codec work and the transfer interleave and only one part is held.
 */
export async function sendParts (fs: FramedStream, role: AveragingRole, stage: number, round: number, count: number,
  part: (i: number) => EncodedPart | Promise<EncodedPart>, signal: AbortSignal): Promise<void> {
  for (let i = 0; i < count; i++) {
    const p = await part(i)
    signal.throwIfAborted()
    await fs.send({
      kind: shardKind(role), stage, microbatchId: round, codecId: p.codecId, dtype: 'f32', shape: [p.elements],
      partIndex: i, partCount: count
    }, p.bytes, { signal })
  }
}

/** Where receiveParts puts what it decodes: `out` (the shard's `length` elements), `onPart` after each part. */
export interface PartSink {
  readonly out: Float32Array
  /** Called with each decoded part and its offset, in order (e.g. stats, work on what arrived). */
  readonly onPart?: (data: Float32Array, at: number) => void
}

/**
 * Reads `parts` data frames making up exactly `length` elements; every part validated, decoded and
 * written into `sink.out` (default: a new array) as it arrives.
 */
export async function receiveParts (fs: FramedStream, codecs: TensorCodecs<AveragingRole>, role: AveragingRole, stage: number,
  parts: number, length: number, signal: AbortSignal, sink?: PartSink): Promise<Float32Array> {
  if ((length === 0) !== (parts === 0) || parts > length) throw new AveragingProtocolError(`${parts} parts cannot carry ${length} elements`)
  const out = sink?.out ?? new Float32Array(length)
  if (out.length !== length) throw new ShardSizeError(length, out.length, 'output')
  let at = 0
  for (let i = 0; i < parts; i++) {
    const f = await fs.expect({ signal })
    const h = f.header
    if (h.kind !== shardKind(role)) throw new AveragingProtocolError(`expected a ${shardKind(role)} frame, got ${h.kind}`)
    if (h.stage !== stage) throw new AveragingProtocolError(`shard part for stage ${h.stage}, expected ${stage}`)
    if (h.partIndex !== i || h.partCount !== parts) throw new AveragingProtocolError(`part ${h.partIndex}/${h.partCount}, expected ${i}/${parts}`)
    if (h.shape.length !== 1 || h.dtype !== 'f32') throw new AveragingProtocolError('shard parts are 1-D f32 tensors')
    if (at + h.shape[0] > length) throw new ShardSizeError(length, at + h.shape[0])
    const data = codecs.decode(role, f)
    out.set(data, at)
    sink?.onPart?.(data, at)
    at += data.length
  }
  if (at !== length) throw new ShardSizeError(length, at)
  return out
}

// ---- checks -----------------------------------------------------------------------------------

const REL_SLACK = 1e-5

/** The owner's check of a decoded contribution against what its sender declared. */
export function checkDeclaredStats (data: Float32Array, declared: ShardStats, rel: number): void {
  checkDeclaredStatsOf(shardStats(data), data.length, declared, rel)
}

/** checkDeclaredStats on the stats of `length` received values. */
export function checkDeclaredStatsOf (got: ShardStats, length: number, declared: ShardStats, rel: number): void {
  const maxAbsBound = declared.maxAbs * (1 + rel) * (1 + REL_SLACK) + 1e-30
  const normBound = (declared.norm + Math.sqrt(length) * rel * declared.maxAbs) * (1 + REL_SLACK) + 1e-30
  if (got.maxAbs > maxAbsBound) throw new ShardStatsMismatchError(`contribution max |x| ${got.maxAbs} exceeds the declared ${declared.maxAbs}`)
  if (got.norm > normBound) throw new ShardStatsMismatchError(`contribution norm ${got.norm} exceeds the declared ${declared.norm}`)
}

/**
 * Checks an averaged shard against its inputs: max |avg| <= max_k maxAbs_k and ||avg|| <= max_k
 * norm_k (a weighted mean is a convex combination), widened by the codec's error twice (the
 * contributions and the result both crossed the codec).
 */
export function checkAverageBounds (avg: Float32Array, inputs: readonly ShardStats[], rel: number): void {
  checkAverageStats(shardStats(avg), avg.length, inputs, rel)
}

/** checkAverageBounds on the stats of an averaged shard of `length` values. */
export function checkAverageStats (got: ShardStats, length: number, inputs: readonly ShardStats[], rel: number): void {
  let maxAbs = 0
  let maxNorm = 0
  for (const s of inputs) {
    if (s.maxAbs > maxAbs) maxAbs = s.maxAbs
    if (s.norm > maxNorm) maxNorm = s.norm
  }
  const grow = (1 + rel) * (1 + rel) * (1 + REL_SLACK)
  const maxAbsBound = maxAbs * grow + 1e-30
  const normBound = (maxNorm + 2 * Math.sqrt(length) * rel * maxAbs * (1 + rel)) * (1 + REL_SLACK) + 1e-30
  if (!(got.maxAbs <= maxAbsBound)) throw new ShardBoundsError(`averaged shard has max |x| ${got.maxAbs}, its inputs allow at most ${maxAbsBound}`)
  if (!(got.norm <= normBound)) throw new ShardBoundsError(`averaged shard has norm ${got.norm}, its inputs allow at most ${normBound}`)
}

/** Weighted mean of `inputs` (float64 accumulation, in the given order), as float32. */
export function weightedMean (inputs: ReadonlyArray<{ weight: number, data: Float32Array }>, length: number): Float32Array {
  const acc = new Float64Array(length)
  let wsum = 0
  for (const { weight, data } of inputs) {
    if (data.length !== length) throw new ShardSizeError(length, data.length, 'input')
    wsum += weight
    for (let e = 0; e < length; e++) acc[e] += weight * data[e]
  }
  const out = new Float32Array(length)
  for (let e = 0; e < length; e++) out[e] = acc[e] / wsum
  return out
}

