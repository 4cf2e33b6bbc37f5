// The receiving end of the benches' framed transfers (wire-throughput, transport-peer, allreduce-peer):
// reads every frame to the end of the stream, then answers one ack with the payload bytes it got,
// which the sender checks against what it sent.
import type { FramedStream } from '../core/wire/index.ts'

/** A FramedHandler: count the payload bytes of every frame, then ack `{ got }`. */
export async function countAndAck (fs: FramedStream, _connection: unknown, signal?: AbortSignal): Promise<void> {
  let got = 0
  for (;;) {
    const f = await fs.read({ signal })
    if (f == null) break
    got += f.payload.byteLength
  }
  await fs.send({ kind: 'ack', metadata: { got } }, undefined, { signal })
}
