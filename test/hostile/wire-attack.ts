// A hostile client of the pipeline protocol, run as a process of its own: a bare libp2p node that
// dials one stage node and attacks its wire layer with raw bytes (no FramedStream, no credit). Used
// by test/wire-hostile.test.ts.
//
//   node --import tsx test/hostile/wire-attack.ts --run RUN --target ADDR --attack ATTACK [options]
//
//   bloat   --streams N --declare MiB --send MiB: N streams, each a header declaring `declare` MiB
//           of payload, then `send` MiB of it; the streams are held open (the issue: 32 x 64/56
//           took a receiver from 250 MiB to 2.1 GiB)
//   cutoff  the same, then each stream is closed cleanly mid-frame (the issue: 8 pinned 480 MiB)
//   flood   --seconds S --workers K: K loops of valid-looking microbatches (activation + targets
//           frames for stage --stage), as fast as the target takes them
//   hold    --every MS: a new stream every MS that never sends a byte, all held open (one held
//           stream kept a node from ever reaching `done`)
//
// Prints {"peer": id} once, then a JSON line of counters every second.
import '../../core/polyfills.ts'
import { parseArgs } from 'node:util'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { PIPELINE_FORWARD_PROTOCOL } from '../../core/pipeline/protocol.ts'
import { encodeFrame, encodeHeader } from '../../core/wire/index.ts'

const { values } = parseArgs({
  options: {
    run: { type: 'string' },
    target: { type: 'string' },
    attack: { type: 'string' },
    streams: { type: 'string', default: '32' },
    declare: { type: 'string', default: '64' },
    send: { type: 'string', default: '56' },
    seconds: { type: 'string', default: '20' },
    workers: { type: 'string', default: '16' },
    every: { type: 'string', default: '5000' },
    stage: { type: 'string', default: '1' },
    width: { type: 'string', default: '32' }
  }
})
if (values.run == null || values.target == null || values.attack == null) throw new Error('--run, --target and --attack are required')
const runId = values.run
const MiB = 1024 * 1024

const libp2p = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux({ maxInboundStreams: 4096, maxOutboundStreams: 4096 } as never)]
})
const me = libp2p.peerId.toString()
const target = multiaddr(values.target)
const stats = { opened: 0, refused: 0, reset: 0, sentMiB: 0, microbatches: 0, errors: 0, held: 0 }
const held: Stream[] = []
process.stdout.write(JSON.stringify({ peer: me }) + '\n')
const timer = setInterval(() => { process.stdout.write(JSON.stringify(stats) + '\n') }, 1000)

async function open (): Promise<Stream | undefined> {
  try {
    const s = await libp2p.dialProtocol(target, PIPELINE_FORWARD_PROTOCOL, { signal: AbortSignal.timeout(20_000) })
    stats.opened++
    s.addEventListener('close', (evt) => { if ((evt as unknown as { error?: Error }).error != null) stats.reset++ })
    return s
  } catch {
    stats.refused++
    return undefined
  }
}

/** Writes `bytes` in 1 MiB slices, waiting for drain; false when the stream died under it. */
async function write (s: Stream, bytes: Uint8Array): Promise<boolean> {
  try {
    for (let o = 0; o < bytes.byteLength; o += MiB) {
      if (s.status !== 'open') return false
      const chunk = bytes.subarray(o, Math.min(o + MiB, bytes.byteLength))
      if (!s.send(chunk)) await s.onDrain({ signal: AbortSignal.timeout(60_000) })
      stats.sentMiB += chunk.byteLength / MiB
    }
    return true
  } catch {
    return false
  }
}

/** bloat / cutoff: a header declaring `declare` MiB, then `send` MiB of it. */
async function partialFrames (closeAfter: boolean): Promise<void> {
  const declare = Number(values.declare) * MiB
  const payload = new Uint8Array(declare)
  const header = encodeHeader({ kind: 'activation', runId, microbatchId: 1, stage: Number(values.stage), dtype: 'f32', shape: [1, 1, declare / 4], route: [me], metadata: { origin: me, step: 0, micro: 0, micros: 1, mode: 'train' } }, payload)
  const part = payload.subarray(0, Number(values.send) * MiB)
  await Promise.all(Array.from({ length: Number(values.streams) }, async () => {
    const s = await open()
    if (s == null) return
    held.push(s)
    if (!await write(s, header) || !await write(s, part)) return
    stats.held++
    if (closeAfter) await s.close({ signal: AbortSignal.timeout(30_000) }).catch(() => {})
  }))
}

/** flood: valid-looking microbatches (B=1, T=8) as fast as they are taken. */
async function flood (): Promise<void> {
  const until = Date.now() + Number(values.seconds) * 1000
  const [B, T, W] = [1, 8, Number(values.width)]
  let id = 0
  const stage = Number(values.stage)
  await Promise.all(Array.from({ length: Number(values.workers) }, async () => {
    while (Date.now() < until) {
      const s = await open()
      if (s == null) { await new Promise(resolve => setTimeout(resolve, 50)); continue }
      const mb = ++id
      const meta = { origin: me, step: 0, micro: 0, micros: 1, mode: 'train' }
      const act = encodeFrame({ kind: 'activation', runId, microbatchId: mb, stage, dtype: 'f32', shape: [B, T, W], route: [me], metadata: meta }, new Uint8Array(B * T * W * 4))
      const tgt = encodeFrame({ kind: 'request', runId, microbatchId: mb, stage, dtype: 'i32', shape: [B, T], route: [me], metadata: { op: 'targets' } }, new Uint8Array(B * T * 4))
      stats.microbatches++
      if (!await write(s, act) || !await write(s, tgt)) { stats.errors++; continue }
      // the receiver's first bytes (its credit grant, a reply or an error frame) or its reset end the exchange
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, 10_000)
        s.addEventListener('message', () => { clearTimeout(t); resolve() }, { once: true })
        s.addEventListener('close', () => { clearTimeout(t); resolve() }, { once: true })
      })
      s.abort(new Error('done'))
    }
  }))
}

/** hold: streams that never send a byte, a new one every `every` ms, until killed. */
async function hold (): Promise<void> {
  for (;;) {
    const s = await open()
    if (s != null) { held.push(s); stats.held++ }
    await new Promise(resolve => setTimeout(resolve, Number(values.every)))
  }
}

await libp2p.dial(target).catch((err: Error) => { process.stderr.write(`dial: ${err.message}\n`) })
const attacks: Record<string, () => Promise<void>> = { bloat: async () => { await partialFrames(false) }, cutoff: async () => { await partialFrames(true) }, flood, hold }
const run = attacks[values.attack]
if (run == null) throw new Error(`unknown attack ${values.attack}`)
await run()
process.stdout.write(JSON.stringify({ ...stats, finished: true }) + '\n')

const stop = async (): Promise<void> => {
  clearInterval(timer)
  await libp2p.stop()
  process.exit(0)
}
process.on('SIGTERM', () => { void stop() })
process.on('SIGINT', () => { void stop() })
// the flood ends by itself; the others hold their streams until killed
if (values.attack === 'flood') await stop()
