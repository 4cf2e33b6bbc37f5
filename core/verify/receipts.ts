// Receipts: the signed commitments a node received from a producer, handed to a checker that wants
// to sample that producer's recent hops (`/layerswarm/verify/receipts/1.0.0`). The checker asks a
// neighbour of its target (a peer of the next stage for forward hops, of the previous one for
// backward hops), not the target itself, so the target cannot choose which of its hops are checked.
//
//   -> request  {op: "receipts", producer, kind, max}
//   <- response {op: "receipts", count}  payload: count x (u16 LE length | signed commitment bytes)
//
// The asker verifies every receipt (signature, producer, kind, run): a neighbour that hands over a
// forged or foreign one broke the protocol (an honest receiver keeps only commitments it verified).
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { handleFramed, requestFrame } from '../wire/index.ts'
import { MAX_SIGNED_COMMITMENT_BYTES, verifyCommitment, type HopKind, type VerifiedCommitment } from './commitment.ts'
import { VerifyProtocolError } from './errors.ts'
import type { ReceiptSource } from './hop-records.ts'

export const RECEIPTS_PROTOCOL = '/layerswarm/verify/receipts/1.0.0'
/** Most receipts one request returns. */
export const MAX_RECEIPTS = 64
const PEER_RE = /^[A-Za-z0-9]{1,128}$/

export interface ReceiptServerInit {
  readonly runId: string
  /** The node's receiver-side store (the pipeline's), or undefined while it serves no stage. */
  readonly source: () => ReceiptSource | undefined
  readonly log?: Logger
  /** Admission (PeerJudge.admit): run before serving a peer. */
  readonly admit?: (peer: string, signal: AbortSignal) => Promise<void>
}

/** Answers receipt requests from the node's ReceiptSource (none held: an empty answer). */
export class ReceiptServer {
  private started = false
  constructor (private readonly libp2p: Pick<Libp2p, 'handle' | 'unhandle'>, private readonly init: ReceiptServerInit) {}

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await handleFramed(this.libp2p, RECEIPTS_PROTOCOL, async (fs, _conn, signal) => {
      const req = await fs.expect({ signal })
      const m = req.header.metadata as { op?: unknown, producer?: unknown, kind?: unknown, max?: unknown } | undefined
      if (req.header.kind !== 'request' || m?.op !== 'receipts' || typeof m.producer !== 'string' || !PEER_RE.test(m.producer) ||
        (m.kind !== 'forward' && m.kind !== 'backward') || !Number.isSafeInteger(m.max) || (m.max as number) < 1) {
        throw new VerifyProtocolError('expected a receipts request {op, producer, kind, max}')
      }
      const list = this.init.source()?.recent(m.producer, m.kind, Math.min(m.max as number, MAX_RECEIPTS)) ?? []
      await fs.send({ kind: 'response', metadata: { op: 'receipts', count: list.length } }, pack(list), { signal })
    }, { runId: this.init.runId, timeoutMs: 10_000, log: this.init.log, streamOptions: { maxInboundStreams: 32 }, admit: this.init.admit })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.libp2p.unhandle(RECEIPTS_PROTOCOL).catch(() => {})
  }
}

export interface ReceiptsRequest {
  readonly producer: string
  readonly kind: HopKind
  /** At most this many (<= MAX_RECEIPTS). */
  readonly max: number
}

/**
 * Asks `peer` for the receipts it holds of `producer`'s `kind` hops; returns them verified (newest
 * first, as served). VerifyProtocolError when any does not verify or is not what was asked for.
 */
export async function requestReceipts (libp2p: Pick<Libp2p, 'dialProtocol'>, peer: string, req: ReceiptsRequest,
  opts: { readonly runId: string, readonly timeoutMs?: number, readonly signal?: AbortSignal, readonly log?: Logger }): Promise<VerifiedCommitment[]> {
  const max = Math.max(1, Math.min(MAX_RECEIPTS, Math.floor(req.max)))
  const f = await requestFrame(libp2p, peerIdFromString(peer), RECEIPTS_PROTOCOL, { kind: 'request', metadata: { op: 'receipts', producer: req.producer, kind: req.kind, max } },
    undefined, { runId: opts.runId, timeoutMs: opts.timeoutMs ?? 5000, signal: opts.signal, log: opts.log, limits: { maxPayloadBytes: max * (2 + MAX_SIGNED_COMMITMENT_BYTES) } })
  const m = f.header.metadata as { op?: unknown, count?: unknown } | undefined
  if (f.header.kind !== 'response' || m?.op !== 'receipts' || !Number.isSafeInteger(m.count) || (m.count as number) > max) throw new VerifyProtocolError('bad receipts response')
  const list = unpack(f.payload, m.count as number)
  const out: VerifiedCommitment[] = []
  for (const bytes of list) {
    let v: VerifiedCommitment
    try {
      v = await verifyCommitment(bytes, { producer: req.producer })
    } catch (err) {
      throw new VerifyProtocolError(`a receipt does not verify: ${(err as Error).message}`)
    }
    if (v.commitment.kind !== req.kind || v.commitment.runId !== opts.runId) throw new VerifyProtocolError('a receipt of another kind or run than asked for')
    out.push(v)
  }
  return out
}

function pack (list: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(list.reduce((a, b) => a + 2 + b.length, 0))
  let o = 0
  for (const b of list) {
    out[o] = b.length & 0xff
    out[o + 1] = b.length >>> 8
    out.set(b, o + 2)
    o += 2 + b.length
  }
  return out
}

function unpack (bytes: Uint8Array, count: number): Uint8Array[] {
  const out: Uint8Array[] = []
  let o = 0
  for (let i = 0; i < count; i++) {
    if (o + 2 > bytes.length) throw new VerifyProtocolError('receipts truncated')
    const n = bytes[o] | (bytes[o + 1] << 8)
    if (n > MAX_SIGNED_COMMITMENT_BYTES || o + 2 + n > bytes.length) throw new VerifyProtocolError('receipt length out of range')
    out.push(bytes.slice(o + 2, o + 2 + n))
    o += 2 + n
  }
  if (o !== bytes.length) throw new VerifyProtocolError('trailing bytes after the receipts')
  return out
}
