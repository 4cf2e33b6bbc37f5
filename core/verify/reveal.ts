// Revealing a hop: what a checker asks a producer for (`/layerswarm/verify/reveal/1.0.0`) and what an
// accuser serves as the evidence of a failed check (`/layerswarm/verify/evidence/1.0.0`). Both answer
// with one hop in the same frames, so a bundle reads the same whoever serves it:
//
//   -> request  {op: "reveal", kind, params, step?, outputHash?}   microbatchId, stage
//                 (reveal: the producer looks it up; step and outputHash pick the computation the
//                 checked commitment names when a retried microbatch was computed more than once)
//   -> request  {op: "evidence", id}                                    (evidence: by commitment id)
//   <- response {op: "hop", kind, inputs: n, params}  payload: the signed commitment
//   <- n x response (codecId, dtype, shape of one input)  payload: its bytes as they crossed the wire
//   <- response (codecId, dtype, shape of the output)      payload: its bytes
//   <- response {op: "params"}  payload: serializeState of the weights (when asked for / evidence)
//   <- error frame ERR_VERIFY_NOT_RETAINED (the producer no longer holds it), ERR_VERIFY_NO_EVIDENCE
//
// The reader checks only the framing and bounds (sizes, counts, dtypes, the params' format); whether
// the bytes are what the commitment says is recompute.ts's job (the caller re-verifies every hash).
// A checker that already holds the weights of a digest asks without them (`params: false`) and fills
// them in from its cache: weights change once per optimizer step, hops many times a step.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { parseState, serializeState } from '../averaging/state-format.ts'
import { silentLogger } from '../logger.ts'
import { deadline } from '../timers.ts'
import { LayerswarmError } from '../errors.ts'
import { handleFramed, openFramed, RemoteError, signalError, type Frame, type FramedStream, type WireLimits } from '../wire/index.ts'
import { decodeCommitment, MAX_SIGNED_COMMITMENT_BYTES, signedBody, type HopCommitment, type HopKind } from './commitment.ts'
import { hashHex } from './digest.ts'
import { EvidenceNotHeldError, RevealNotRetainedError, VerifyProtocolError } from './errors.ts'
import type { HopRecord, HopRecordSource, HopTensor } from './hop-records.ts'
import type { RevealedHop } from './recompute.ts'

export const REVEAL_PROTOCOL = '/layerswarm/verify/reveal/1.0.0'
export const EVIDENCE_PROTOCOL = '/layerswarm/verify/evidence/1.0.0'
/** Largest frame (one tensor, or the params) a reader accepts by default: 256 MiB. */
export const DEFAULT_MAX_HOP_BYTES = 256 * 1024 * 1024
/** How long a server may take to answer one request (ms). */
const SERVE_TIMEOUT_MS = 60_000
const MAX_RANK = 4
const KINDS: ReadonlySet<string> = new Set(['forward', 'backward'])

/** A commitment's id: SHA-256 (hex) of its canonical body (one per commitment, whatever its signature bytes). */
export function commitmentId (signed: Uint8Array): string {
  return hashHex(signedBody(signed))
}

// ---- the frames of one hop ------------------------------------------------------------------

/** Sends `hop` (params included when `withParams`) on `fs` as described at the top of this file. */
export async function sendHop (fs: FramedStream, hop: { record: HopRecord, params?: ReadonlyMap<string, Float32Array> }, withParams: boolean, signal: AbortSignal): Promise<void> {
  const r = hop.record
  await fs.send({ kind: 'response', microbatchId: r.microbatchId, stage: r.stage, metadata: { op: 'hop', kind: r.kind, inputs: r.inputs.length, params: withParams } }, r.commitment, { signal })
  for (const t of [...r.inputs, r.output]) {
    await fs.send({ kind: 'response', microbatchId: r.microbatchId, stage: r.stage, codecId: t.codecId, dtype: t.dtype, shape: t.shape }, t.bytes, { signal })
  }
  if (withParams) {
    if (hop.params == null) throw new RevealNotRetainedError(`weights ${r.paramsDigest.slice(0, 12)} are no longer held`)
    await fs.send({ kind: 'response', stage: r.stage, metadata: { op: 'params' } }, serializeState({ version: 0, step: 0, tensors: hop.params }), { signal })
  }
}

/** Reads one hop sent by sendHop; `params` fills in the weights when they were not sent. */
export async function readHop (fs: FramedStream, signal: AbortSignal, params?: ReadonlyMap<string, Float32Array>): Promise<RevealedHop> {
  const bad = (m: string): never => { throw new VerifyProtocolError(`hop: ${m}`) }
  const head = await fs.expect({ signal })
  const m = head.header.metadata as { op?: unknown, kind?: unknown, inputs?: unknown, params?: unknown } | undefined
  if (head.header.kind !== 'response' || m?.op !== 'hop') bad('expected a hop response')
  if (typeof m?.kind !== 'string' || !KINDS.has(m.kind)) bad('bad kind')
  if (m?.inputs !== 1 && m?.inputs !== 2) bad('a hop has 1 or 2 inputs')
  if (typeof m?.params !== 'boolean') bad('params must be a boolean')
  if (head.payload.byteLength > MAX_SIGNED_COMMITMENT_BYTES) bad('commitment too large')
  const tensors: HopTensor[] = []
  for (let i = 0; i <= (m?.inputs as number); i++) tensors.push(tensorOf(await fs.expect({ signal })))
  let weights = params
  if (m?.params === true) {
    const f = await fs.expect({ signal })
    if (f.header.kind !== 'response' || (f.header.metadata as { op?: unknown } | undefined)?.op !== 'params') bad('expected the params frame')
    try {
      weights = parseState(f.payload).tensors
    } catch (err) {
      bad(`params: ${(err as Error).message}`)
    }
  }
  if (weights == null) bad('no params sent, and none held here')
  const h = head.header
  let paramsDigest = ''
  try {
    paramsDigest = decodeCommitment(signedBody(head.payload)).paramsDigest
  } catch (err) {
    bad(`commitment: ${(err as Error).message}`)
  }
  const record: HopRecord = {
    commitment: head.payload,
    kind: m?.kind as HopKind,
    microbatchId: h.microbatchId,
    stage: h.stage,
    inputs: tensors.slice(0, -1),
    output: tensors[tensors.length - 1],
    paramsDigest
  }
  return { record, params: weights as ReadonlyMap<string, Float32Array> }
}

function tensorOf (f: Frame): HopTensor {
  const h = f.header
  if (h.kind !== 'response') throw new VerifyProtocolError(`hop: expected a tensor response, got ${h.kind}`)
  if (h.dtype !== 'f32' && h.dtype !== 'i32') throw new VerifyProtocolError(`hop: tensor dtype ${h.dtype}`)
  if (h.shape.length < 1 || h.shape.length > MAX_RANK) throw new VerifyProtocolError(`hop: tensor rank ${h.shape.length}`)
  return { bytes: f.payload, codecId: h.codecId, dtype: h.dtype, shape: [...h.shape] }
}

// ---- serving ----------------------------------------------------------------------------------

type Registrar = Pick<Libp2p, 'handle' | 'unhandle'>
type Dialer = Pick<Libp2p, 'dialProtocol'>

export interface RevealServerInit {
  readonly runId: string
  /** The node's producer-side store (the pipeline's), or undefined while it serves no stage. */
  readonly source: () => HopRecordSource | undefined
  readonly log?: Logger
  /** Admission (PeerJudge.admit): run before serving a peer. */
  readonly admit?: (peer: string, signal: AbortSignal) => Promise<void>
}

/** Answers reveal requests from the node's HopRecordSource. */
export class RevealServer {
  private started = false
  private served = 0
  private refused = 0
  private readonly log: Logger

  constructor (private readonly libp2p: Registrar, private readonly init: RevealServerInit) {
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:verify:reveal')
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await handleFramed(this.libp2p, REVEAL_PROTOCOL, async (fs, conn, signal) => { await this.serve(fs, conn.remotePeer.toString(), signal) }, {
      runId: this.init.runId, timeoutMs: SERVE_TIMEOUT_MS, log: this.init.log, streamOptions: { maxInboundStreams: 16 }, admit: this.init.admit
    })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.libp2p.unhandle(REVEAL_PROTOCOL).catch(() => {})
  }

  status (): { served: number, refused: number } {
    return { served: this.served, refused: this.refused }
  }

  private async serve (fs: FramedStream, peer: string, signal: AbortSignal): Promise<void> {
    const req = await fs.expect({ signal })
    const m = req.header.metadata as { op?: unknown, kind?: unknown, params?: unknown, step?: unknown, outputHash?: unknown } | undefined
    if (req.header.kind !== 'request' || m?.op !== 'reveal' || typeof m.kind !== 'string' || !KINDS.has(m.kind) || typeof m.params !== 'boolean') {
      throw new VerifyProtocolError('expected a reveal request {op, kind, params}')
    }
    const named = m.step !== undefined || m.outputHash !== undefined
    if (named && (!Number.isSafeInteger(m.step) || (m.step as number) < 0 || typeof m.outputHash !== 'string' || !/^[0-9a-f]{64}$/.test(m.outputHash))) {
      throw new VerifyProtocolError('a reveal request names its computation by step (a non-negative integer) and outputHash (64 hex), both or neither')
    }
    const id = req.header.microbatchId
    const kind = m.kind as HopKind
    const source = this.init.source()
    const record = source?.record(id, kind, named ? { step: m.step as number, outputHash: m.outputHash as string } : undefined)
    const params = record != null && m.params ? source?.params(record.paramsDigest) : undefined
    if (record == null || (m.params && params == null)) {
      this.refused++
      this.log.debug('reveal refused: not retained', { peer, microbatchId: id.toString(), kind })
      throw new RevealNotRetainedError(`the ${kind} hop of microbatch ${id} is not retained here`)
    }
    await sendHop(fs, { record, params }, m.params, signal)
    this.served++
  }
}

/** The evidence bundles this node serves: the hops behind its own accusations, newest kept. */
export class EvidenceStore {
  private readonly bundles = new Map<string, RevealedHop>()
  constructor (private readonly max = 32) {}

  put (hop: RevealedHop): string {
    const id = commitmentId(hop.record.commitment)
    this.bundles.delete(id)
    this.bundles.set(id, hop)
    while (this.bundles.size > this.max) this.bundles.delete(this.bundles.keys().next().value as string)
    return id
  }

  get (id: string): RevealedHop | undefined {
    return this.bundles.get(id)
  }

  get size (): number {
    return this.bundles.size
  }
}

/** Serves `store`'s bundles on EVIDENCE_PROTOCOL. */
export class EvidenceServer {
  private started = false
  constructor (private readonly libp2p: Registrar, private readonly init: {
    readonly runId: string, readonly store: EvidenceStore, readonly log?: Logger, readonly admit?: (peer: string, signal: AbortSignal) => Promise<void>
  }) {}

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await handleFramed(this.libp2p, EVIDENCE_PROTOCOL, async (fs, _conn, signal) => {
      const req = await fs.expect({ signal })
      const id = (req.header.metadata as { op?: unknown, id?: unknown } | undefined)
      if (req.header.kind !== 'request' || id?.op !== 'evidence' || typeof id.id !== 'string' || !/^[0-9a-f]{64}$/.test(id.id)) {
        throw new VerifyProtocolError('expected an evidence request {op, id}')
      }
      const hop = this.init.store.get(id.id)
      if (hop == null) throw new EvidenceNotHeldError(id.id)
      await sendHop(fs, hop, true, signal)
    }, { runId: this.init.runId, timeoutMs: SERVE_TIMEOUT_MS, log: this.init.log, streamOptions: { maxInboundStreams: 16 }, admit: this.init.admit })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.libp2p.unhandle(EVIDENCE_PROTOCOL).catch(() => {})
  }
}

// ---- asking ---------------------------------------------------------------------------------

export interface HopRequestOptions {
  readonly runId: string
  /** Deadline of the whole exchange (ms). Default 10000. */
  readonly timeoutMs?: number
  readonly signal?: AbortSignal
  /** Largest frame accepted (one tensor, or the params). Default DEFAULT_MAX_HOP_BYTES. */
  readonly maxBytes?: number
  readonly log?: Logger
}

export interface RevealOptions extends HopRequestOptions {
  /** Weights this node already holds, by digest: asked for only when missing here. */
  readonly paramsCache?: { get: (digest: string) => ReadonlyMap<string, Float32Array> | undefined }
}

/**
 * Asks `peer` (normally the commitment's producer) to reveal the hop `commitment` names. Returns
 * what it sent, unchecked: the caller runs recompute.ts (which re-verifies every hash). Errors:
 * RemoteError (ERR_VERIFY_NOT_RETAINED and others), VerifyProtocolError, the wire's timeouts.
 */
export async function requestReveal (libp2p: Dialer, peer: string, commitment: HopCommitment, opts: RevealOptions): Promise<RevealedHop> {
  const cached = opts.paramsCache?.get(commitment.paramsDigest)
  return await exchange(libp2p, peer, REVEAL_PROTOCOL, {
    kind: 'request', microbatchId: commitment.microbatchId, stage: commitment.stage, metadata: { op: 'reveal', kind: commitment.kind, params: cached == null, step: commitment.step, outputHash: commitment.outputHash }
  }, opts, cached)
}

/** Fetches the evidence bundle of commitment `id` (commitmentId) from the accuser `peer`. */
export async function requestEvidence (libp2p: Dialer, peer: string, id: string, opts: HopRequestOptions): Promise<RevealedHop> {
  return await exchange(libp2p, peer, EVIDENCE_PROTOCOL, { kind: 'request', metadata: { op: 'evidence', id } }, opts)
}

async function exchange (libp2p: Dialer, peer: string, protocol: string, request: Parameters<FramedStream['send']>[0],
  opts: HopRequestOptions, params?: ReadonlyMap<string, Float32Array>): Promise<RevealedHop> {
  const limits: Partial<WireLimits> = { maxPayloadBytes: opts.maxBytes ?? DEFAULT_MAX_HOP_BYTES }
  const guard = deadline(opts.timeoutMs ?? 10_000, opts.signal)
  const signal = guard.signal
  try {
    const fs = await openFramed(libp2p, peerIdFromString(peer), protocol, { runId: opts.runId, limits, log: opts.log, signal })
    try {
      await fs.send(request, undefined, { signal })
      const hop = await readHop(fs, signal, params)
      await fs.close({ signal })
      return hop
    } catch (err) {
      const e = err instanceof LayerswarmError && err.code !== 'ERR_ABORTED' ? err : signal.aborted ? signalError(signal, `a ${protocol} answer`) : err as Error
      if (!(e instanceof RemoteError)) fs.abort(e)
      throw e
    }
  } finally {
    guard.clear()
  }
}
