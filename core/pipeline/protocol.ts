// The pipeline protocol: one libp2p stream per microbatch per hop, frames from core/wire.
//
//   stage s node                                   stage s+1 node
//   ── activation  [B,T,W] f32 (meta: origin, step, micro, micros, mode) ──>
//   ── request     [B,T]  i32 targets (meta: op "targets") ─────────────────>
//                                        (forward; calls stage s+2 the same way, or the loss)
//   <── activation-grad [B,T,W] (meta: loss, count)      train mode
//   <── response, empty          (meta: loss, count)      eval mode
//   <── error frame (code, message)                       on any failure
//
// Every frame header carries the run id, the microbatch id, the target stage, the route (peer ids
// of the stages it went through, oldest first), shape, codec id, length and CRC. This module
// builds and validates the messages; the node (pipeline-node.ts) moves them.
import type { RunManifest } from '../run/manifest.ts'
import { RAW_CODEC_ID, type Frame } from '../wire/index.ts'
import { InvalidMicrobatchError, StageMismatchError } from './errors.ts'

export const PIPELINE_FORWARD_PROTOCOL = '/layerswarm/pipeline/forward/1.0.0'

export type MicrobatchMode = 'train' | 'eval'

/** Metadata of an activation frame: who started the microbatch and which step it belongs to. */
export interface MicrobatchMeta {
  /** Peer id of the stage-0 node that sampled it. */
  readonly origin: string
  /** 0-based optimizer step of the origin (drives the learning-rate schedule downstream). */
  readonly step: number
  readonly micro: number
  /** Microbatches per step at the origin. */
  readonly micros: number
  readonly mode: MicrobatchMode
  /** Eval microbatches: index of this batch and how many make up the eval. */
  readonly evalIndex?: number
  readonly evalCount?: number
  /** The origin's signature over the microbatch's tuple, base64 (route-auth.ts); checked where the node has a key. */
  readonly auth?: string
}

export interface ReplyMeta {
  /** Mean loss of the microbatch (nats per counted target). */
  readonly loss: number
  /** Counted targets. */
  readonly count: number
}

/** Bounds an inbound microbatch must fit (from the manifest and this node's stage). */
export interface MicrobatchBounds {
  readonly stage: number
  readonly stages: number
  /** Largest B (the manifest's batch size). */
  readonly maxB: number
  /** Largest T (the manifest's sequence length). */
  readonly maxT: number
  /** W: boundary width of this stage's input. */
  readonly width: number
  readonly vocabSize: number
  /** Steps of the run: a train microbatch's step must be below it. */
  readonly steps: number
}

export function boundsFor (manifest: RunManifest, stage: number, width: number): MicrobatchBounds {
  return {
    stage,
    stages: manifest.stages.count,
    maxB: manifest.data.batchSize,
    maxT: manifest.data.seqLen,
    width,
    vocabSize: Number(manifest.model.vocabSize),
    steps: manifest.optimizer.steps
  }
}

const PEER_ID_RE = /^[A-Za-z0-9]{1,128}$/
const MAX_INDEX = 2 ** 31 - 1

function isInt (v: unknown, lo: number, hi: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= lo && v <= hi
}

/** Checks an activation frame's header and metadata (not its values: the codec decodes those). */
export function validateActivation (frame: Frame, bounds: MicrobatchBounds, fromPeer: string): { B: number, T: number, meta: MicrobatchMeta } {
  const h = frame.header
  const bad = (msg: string): never => { throw new InvalidMicrobatchError(msg) }
  if (h.kind !== 'activation') bad(`expected an activation frame, got ${h.kind}`)
  if (h.stage !== bounds.stage) throw new StageMismatchError(bounds.stage, h.stage)
  if (h.dtype !== 'f32') bad(`activation dtype must be f32, got ${h.dtype}`)
  if (h.partCount !== 1) bad('multi-part activations are not used by this protocol')
  if (h.shape.length !== 3) bad(`activation shape must be [B,T,W], got [${h.shape.join(',')}]`)
  const [B, T, W] = h.shape
  if (!isInt(B, 1, bounds.maxB)) bad(`B = ${B} is outside [1, ${bounds.maxB}]`)
  if (!isInt(T, 1, bounds.maxT)) bad(`T = ${T} is outside [1, ${bounds.maxT}]`)
  if (W !== bounds.width) bad(`W = ${W}, this stage's input width is ${bounds.width}`)
  const route = h.route
  if (route.length !== bounds.stage) bad(`route has ${route.length} hops, a stage-${bounds.stage} microbatch has ${bounds.stage}`)
  if (route[route.length - 1] !== fromPeer) bad('the route does not end with the sending peer')
  if (new Set(route).size !== route.length) bad('the route visits a peer twice')
  const meta = parseMeta(h.metadata, bounds)
  if (route[0] !== meta.origin) bad('the route does not start at the origin')
  return { B, T, meta }
}

function parseMeta (m: Readonly<Record<string, unknown>> | undefined, bounds: MicrobatchBounds): MicrobatchMeta {
  const bad = (msg: string): never => { throw new InvalidMicrobatchError(`activation metadata: ${msg}`) }
  if (m == null) return bad('missing')
  // `commitment` is the hop's signed commitment (hop-commits.ts), checked by the receiver, not part of the meta
  const known = new Set(['origin', 'step', 'micro', 'micros', 'mode', 'evalIndex', 'evalCount', 'commitment', 'auth'])
  for (const k of Object.keys(m)) if (!known.has(k)) bad(`unknown field ${k}`)
  const { origin, step, micro, micros, mode, evalIndex, evalCount, auth } = m
  if (auth !== undefined && (typeof auth !== 'string' || !/^[A-Za-z0-9+/]{1,200}={0,2}$/.test(auth))) bad('auth must be a base64 signature')
  if (typeof origin !== 'string' || !PEER_ID_RE.test(origin)) bad('origin must be a peer id')
  if (mode !== 'train' && mode !== 'eval') bad('mode must be "train" or "eval"')
  if (!isInt(step, 0, mode === 'train' ? bounds.steps - 1 : bounds.steps)) bad(`step ${String(step)} is outside the run's ${bounds.steps} steps`)
  if (!isInt(micros, 1, 1 << 20)) bad('micros must be an integer in [1, 2^20]')
  if (!isInt(micro, 0, (micros as number) - 1)) bad('micro must be an integer in [0, micros)')
  if (mode === 'eval') {
    if (!isInt(evalCount, 1, 1 << 20)) bad('evalCount must be an integer in [1, 2^20]')
    if (!isInt(evalIndex, 0, (evalCount as number) - 1)) bad('evalIndex must be an integer in [0, evalCount)')
  } else if (evalIndex !== undefined || evalCount !== undefined) {
    bad('evalIndex/evalCount belong to eval microbatches')
  }
  const { commitment: _, ...meta } = m
  return meta as unknown as MicrobatchMeta
}

/** Checks the targets frame that follows an activation and returns the ids. */
export function validateTargets (frame: Frame, B: number, T: number, microbatchId: bigint, bounds: MicrobatchBounds): Int32Array {
  const h = frame.header
  const bad = (msg: string): never => { throw new InvalidMicrobatchError(`targets: ${msg}`) }
  if (h.kind !== 'request' || h.metadata?.op !== 'targets') bad(`expected a targets request, got ${h.kind}`)
  if (h.microbatchId !== microbatchId) bad('microbatch id differs from the activation\'s')
  if (h.stage !== bounds.stage) throw new StageMismatchError(bounds.stage, h.stage)
  if (h.dtype !== 'i32' || h.codecId !== RAW_CODEC_ID) bad('must be raw i32')
  if (h.shape.length !== 2 || h.shape[0] !== B || h.shape[1] !== T) bad(`shape must be [${B},${T}], got [${h.shape.join(',')}]`)
  const p = frame.payload
  const ids = p.byteOffset % 4 === 0 ? new Int32Array(p.buffer, p.byteOffset, p.byteLength / 4) : new Int32Array(p.slice().buffer)
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < -1 || ids[i] >= bounds.vocabSize) bad(`id ${ids[i]} at ${i} is outside [-1, ${bounds.vocabSize})`)
  }
  return ids
}

/** Checks a reply's metadata (loss of the microbatch). */
export function parseReplyMeta (m: Readonly<Record<string, unknown>> | undefined): ReplyMeta {
  const bad = (msg: string): never => { throw new InvalidMicrobatchError(`reply metadata: ${msg}`) }
  if (m == null) return bad('missing')
  const { loss, count } = m
  if (typeof loss !== 'number' || !Number.isFinite(loss) || loss < 0) bad('loss must be a finite number >= 0')
  if (!isInt(count, 0, 2 ** 40)) bad('count must be a non-negative integer')
  return { loss: loss as number, count: count as number }
}

/** Checks a train reply: a gradient of exactly the shape that was sent. */
export function validateGradReply (frame: Frame, microbatchId: bigint, stage: number, shape: readonly number[]): ReplyMeta {
  const h = frame.header
  const bad = (msg: string): never => { throw new InvalidMicrobatchError(`gradient reply: ${msg}`) }
  if (h.kind !== 'activation-grad') bad(`expected activation-grad, got ${h.kind}`)
  if (h.microbatchId !== microbatchId) bad('microbatch id differs from the request\'s')
  if (h.stage !== stage) bad(`stage ${h.stage}, expected ${stage}`)
  if (h.dtype !== 'f32') bad(`dtype must be f32, got ${h.dtype}`)
  if (h.shape.length !== shape.length || h.shape.some((d, i) => d !== shape[i])) bad(`shape [${h.shape.join(',')}], expected [${shape.join(',')}]`)
  return parseReplyMeta(h.metadata)
}

/** Checks an eval reply. */
export function validateEvalReply (frame: Frame, microbatchId: bigint): ReplyMeta {
  const h = frame.header
  if (h.kind !== 'response') throw new InvalidMicrobatchError(`eval reply: expected response, got ${h.kind}`)
  if (h.microbatchId !== microbatchId) throw new InvalidMicrobatchError('eval reply: microbatch id differs from the request\'s')
  if (h.payloadLength !== 0) throw new InvalidMicrobatchError('eval reply: carries no payload')
  return parseReplyMeta(h.metadata)
}

/** Raw little-endian bytes of i32 ids (a copy). */
export function int32Bytes (ids: Int32Array): Uint8Array {
  return new Uint8Array(ids.buffer.slice(ids.byteOffset, ids.byteOffset + ids.byteLength))
}

const MAX_ID = MAX_INDEX
/** A fresh 64-bit microbatch id: 32 random bits, then a per-node counter. */
export function microbatchIdFactory (rng: () => number = Math.random): () => bigint {
  const high = BigInt(Math.floor(rng() * 0x1_0000_0000)) << 32n
  let n = 0
  return () => high | BigInt(n++ % MAX_ID)
}
