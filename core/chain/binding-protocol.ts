// The binding exchange (`/layerswarm/binding/1.0.0`): one request/response in which a node hands over
// its peer-id <-> hotkey binding (core/chain/binding.ts), so that admission can verify it.
//
//   -> request  {op: "binding"}
//   <- response {op: "binding"}  payload: encodeBinding(binding)
//
// The exchange is not gated by admission (it is how admission learns who a peer is) and not scoped
// to a run: its frames carry the all-zero run id.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { handleFramed, requestFrame } from '../wire/index.ts'
import { BindingError } from './errors.ts'

export const BINDING_PROTOCOL = '/layerswarm/binding/1.0.0'
/** Frames of this protocol belong to no run. */
export const BINDING_RUN_ID = '0'.repeat(32)
/** A binding is a few hundred bytes; anything far larger is not one. */
const MAX_BINDING_BYTES = 4096

/** Serves `binding` (already encoded) to whoever asks; returns the function that stops serving. */
export async function serveBinding (libp2p: Pick<Libp2p, 'handle' | 'unhandle'>, encoded: Uint8Array, log?: Logger): Promise<() => Promise<void>> {
  await handleFramed(libp2p, BINDING_PROTOCOL, async (fs, _conn, signal) => {
    const req = await fs.expect({ signal })
    const m = req.header.metadata as { op?: unknown } | undefined
    if (req.header.kind !== 'request' || m?.op !== 'binding') throw new BindingError('expected a binding request {op: "binding"}')
    await fs.send({ kind: 'response', metadata: { op: 'binding' } }, encoded, { signal })
  }, { runId: BINDING_RUN_ID, timeoutMs: 10_000, log, limits: { maxPayloadBytes: MAX_BINDING_BYTES }, streamOptions: { maxInboundStreams: 32 } })
  return async () => { await libp2p.unhandle(BINDING_PROTOCOL).catch(() => {}) }
}

export interface FetchBindingOptions {
  readonly signal?: AbortSignal
  /** Deadline of the exchange (ms). Default 10000. */
  readonly timeoutMs?: number
  readonly log?: Logger
}

/**
 * Asks `peer` for its binding; returns the payload's bytes (decode and verify them: decodeBinding,
 * verifyBinding). A peer that does not speak the protocol, or answers with something other than a
 * binding response, presented no binding: BindingError. Network failures throw as they are.
 */
export async function fetchBinding (libp2p: Pick<Libp2p, 'dialProtocol'>, peer: string, options: FetchBindingOptions = {}): Promise<Uint8Array> {
  let f
  try {
    f = await requestFrame(libp2p, peerIdFromString(peer), BINDING_PROTOCOL, { kind: 'request', metadata: { op: 'binding' } }, undefined, {
      runId: BINDING_RUN_ID, timeoutMs: options.timeoutMs ?? 10_000, signal: options.signal, log: options.log, limits: { maxPayloadBytes: MAX_BINDING_BYTES }
    })
  } catch (err) {
    if ((err as Error)?.name === 'UnsupportedProtocolError') throw new BindingError('the peer serves no binding (it runs without --chain)', { cause: err })
    throw err
  }
  const m = f.header.metadata as { op?: unknown } | undefined
  if (f.header.kind !== 'response' || m?.op !== 'binding') throw new BindingError(`expected a binding response, got a ${f.header.kind} frame`)
  return f.payload
}
