// A hostile stage peer that takes every microbatch and answers ERR_PIPELINE_DROPPED at once (as an
// honest peer does when the stages behind it fail): it costs its senders their microbatches while
// looking like a fast, free peer. Used by test/pipeline-route-auth.test.ts.
import type { Libp2p } from '@libp2p/interface'
import { MicrobatchDroppedError } from '../../core/pipeline/errors.ts'
import { PIPELINE_FORWARD_PROTOCOL } from '../../core/pipeline/protocol.ts'
import { handleFramed } from '../../core/wire/index.ts'

export interface Dropper {
  /** Microbatches it received (and dropped). */
  readonly received: number
}

/** Serves the pipeline protocol on `libp2p`: read the activation and the targets, answer a drop. */
export async function startDropper (libp2p: Libp2p, runId: string, stage: number): Promise<Dropper> {
  const state = { received: 0 }
  await handleFramed(libp2p, PIPELINE_FORWARD_PROTOCOL, async (fs, _conn, signal) => {
    await fs.expect({ signal })
    await fs.expect({ signal })
    state.received++
    throw new MicrobatchDroppedError(stage + 1)
  }, { runId, streamOptions: { maxInboundStreams: 256 } })
  return state
}
