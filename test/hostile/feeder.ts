// A hostile (or merely misplaced) peer that opens a pipeline stream to a stage node and feeds it a
// microbatch of its own choosing: activations, targets, route and origin metadata all overridable.
// Used by test/pipeline-route-auth.test.ts.
import type { Libp2p, PeerId } from '@libp2p/interface'
import { PIPELINE_FORWARD_PROTOCOL } from '../../core/pipeline/protocol.ts'
import { openFramed, RemoteError, type Frame } from '../../core/wire/index.ts'

export interface FeedOptions {
  readonly runId: string
  readonly stage: number
  /** [B, T, W] */
  readonly shape: readonly [number, number, number]
  readonly id?: bigint
  readonly route: readonly string[]
  readonly metadata: Record<string, unknown>
  readonly vocab?: number
  readonly timeoutMs?: number
}

/** Sends one microbatch to `target`; returns its reply frame, or the remote error it answered. */
export async function feed (from: Libp2p, target: PeerId, o: FeedOptions): Promise<{ frame?: Frame, error?: RemoteError }> {
  const signal = AbortSignal.timeout(o.timeoutMs ?? 20_000)
  const [B, T, W] = o.shape
  const id = o.id ?? 7n
  const fs = await openFramed(from, target, PIPELINE_FORWARD_PROTOCOL, { runId: o.runId, signal })
  try {
    const hidden = Float32Array.from({ length: B * T * W }, (_, i) => Math.sin(i) * 0.5)
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % (o.vocab ?? 256))
    await fs.send({ kind: 'activation', microbatchId: id, stage: o.stage, dtype: 'f32', shape: [B, T, W], route: [...o.route], metadata: o.metadata }, new Uint8Array(hidden.buffer), { signal })
    await fs.send({ kind: 'request', microbatchId: id, stage: o.stage, dtype: 'i32', shape: [B, T], route: [...o.route], metadata: { op: 'targets' } }, new Uint8Array(targets.buffer), { signal })
    const frame = await fs.expect({ signal })
    await fs.close().catch(() => {})
    return { frame }
  } catch (err) {
    fs.abort(err as Error)
    if (err instanceof RemoteError) return { error: err }
    throw err
  }
}
