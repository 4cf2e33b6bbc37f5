// A hostile stage peer, run as a process of its own (outside the project's node code): a bare
// libp2p node that gossips membership heartbeats as a fast server of one stage, accepts every
// forward stream of the pipeline protocol, reads what it is sent and never answers. It once stalled
// stage 0 for 196 s (issue 15). Used by test/pipeline-silent-peer.test.ts.
//
//   node --import tsx test/hostile/silent-peer.ts --run RUN_ID --stage 1 --stages 3 --connect ADDR[,ADDR...]
//
// Prints one JSON line at start ({"peer": id}) and one per second ({"accepted": n, "bytes": b}).
import '../../core/polyfills.ts'
import { parseArgs } from 'node:util'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import { encodeHeartbeat, HEARTBEAT_FORMAT, membersTopic } from '../../core/membership/heartbeat.ts'
import { PIPELINE_FORWARD_PROTOCOL } from '../../core/pipeline/protocol.ts'

const { values } = parseArgs({
  options: {
    run: { type: 'string' },
    stage: { type: 'string', default: '1' },
    stages: { type: 'string', default: '3' },
    connect: { type: 'string', default: '' },
    version: { type: 'string', default: '0.0.0' }
  }
})
if (values.run == null) throw new Error('--run is required')
const runId = values.run
const stage = Number(values.stage)

const libp2p = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
})
const me = libp2p.peerId.toString()
const state = { accepted: 0, bytes: 0 }

// accept, drain (so the sender's writes succeed), never answer, never close
await libp2p.handle(PIPELINE_FORWARD_PROTOCOL, async (stream) => {
  state.accepted++
  try {
    for await (const chunk of stream as unknown as AsyncIterable<{ byteLength: number }>) state.bytes += chunk.byteLength
  } catch {}
}, { maxInboundStreams: 1024 })

const pubsub = libp2p.services.pubsub as unknown as GossipSub
const topic = membersTopic(runId)
pubsub.subscribe(topic)
for (const a of values.connect.split(',').filter(s => s !== '')) {
  await libp2p.dial(multiaddr(a)).catch((err: Error) => { process.stderr.write(`dial ${a}: ${err.message}\n`) })
}
process.stdout.write(JSON.stringify({ peer: me }) + '\n')

const since = Date.now()
let seq = 0
const beat = async (): Promise<void> => {
  const now = Date.now()
  // a fast, idle, serving peer: the kind every router wants to try
  const hb = {
    v: HEARTBEAT_FORMAT as typeof HEARTBEAT_FORMAT, run: runId, peer: me, stage, state: 'serving' as const, pinned: false, since, tput: 50, phase: 'training' as const,
    step: 0, throughput: 50, queue: 0, version: values.version, time: now, seq: ++seq
  }
  await pubsub.publish(topic, encodeHeartbeat(hb)).catch(() => {})
}
const timer = setInterval(() => {
  void beat()
  process.stdout.write(JSON.stringify(state) + '\n')
}, 1000)
void beat()

const stop = async (): Promise<void> => {
  clearInterval(timer)
  await libp2p.stop()
  process.exit(0)
}
process.on('SIGTERM', () => { void stop() })
process.on('SIGINT', () => { void stop() })
