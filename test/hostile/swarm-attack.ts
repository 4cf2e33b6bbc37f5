// Hostile peers of the pipeline, membership and averaging layers, run as a process of their own
// against a live swarm of `layerswarm start` processes (test/hostile-swarm.test.ts). Each identity
// is a bare libp2p node (gossipsub, identify, ping; kad-dht for sybil) dialled to every --connect
// address.
//
//   node --import tsx test/hostile/swarm-attack.ts --run RUN --stages S --connect ADDR[,ADDR...] --attack ATTACK [options]
//
//   drop      --identities K --stage S: K identities heartbeat as fast stage-S servers and answer
//             every microbatch with ERR_PIPELINE_DROPPED (test/hostile/dropper.ts)
//   feed      --target ADDR --stage S [--origin PEER]: random microbatches into a stage-S node, one
//             at a time; with --origin, the identity heartbeats as a stage S-1 server (so it passes
//             the upstream check) and names PEER (an honest stage-0 node) as the origin
//   hbflood   --count N: N valid heartbeats of a fresh, joining identity (stage -1), as fast as
//             gossipsub takes them (the issue: 20,000 stalled training for ~55 s)
//   sybil     --identities K --stage S --from-round R --rounds N: K identities ADD_PROVIDER the
//             averaging group keys of rounds R..R+N-1 (the issue: honest nodes averaged alone for 25 rounds)
//
// Prints {"peers": [ids]} once, then a JSON line of counters every second and one with "finished".
import '../../core/polyfills.ts'
import { parseArgs } from 'node:util'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { encodeHeartbeat, HEARTBEAT_FORMAT, membersTopic, type Heartbeat } from '../../core/membership/heartbeat.ts'
import { groupName } from '../../core/averaging/group.ts'
import { dhtKey } from '../../core/node/dht-keys.ts'
import { startDropper } from './dropper.ts'
import { feed } from './feeder.ts'

const { values } = parseArgs({
  options: {
    run: { type: 'string' },
    stages: { type: 'string', default: '3' },
    connect: { type: 'string', default: '' },
    attack: { type: 'string' },
    identities: { type: 'string', default: '1' },
    stage: { type: 'string', default: '1' },
    target: { type: 'string' },
    origin: { type: 'string' },
    count: { type: 'string', default: '20000' },
    width: { type: 'string', default: '32' },
    'from-round': { type: 'string', default: '0' },
    rounds: { type: 'string', default: '30' },
    dht: { type: 'string', default: '/layerswarm/local/kad/1.0.0' }
  }
})
if (values.run == null || values.attack == null) throw new Error('--run and --attack are required')
const runId = values.run
const attack = values.attack
const stage = Number(values.stage)
const topic = membersTopic(runId)
const stats: Record<string, number> = {}
const bump = (k: string, n = 1): void => { stats[k] = (stats[k] ?? 0) + n }

async function identity (): Promise<Libp2p> {
  const services: Record<string, unknown> = { identify: identify(), ping: ping(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
  if (attack === 'sybil') services.dht = kadDHT({ protocol: values.dht, clientMode: true, peerInfoMapper: passthroughMapper })
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: services as never
  })
  // bare identities (sybil) stay off the membership topic: the attack was provider records only
  if (attack !== 'sybil') (node.services as { pubsub: GossipSub }).pubsub.subscribe(topic)
  for (const a of values.connect.split(',').filter(s => s !== '')) {
    await node.dial(multiaddr(a)).catch((err: Error) => { process.stderr.write(`dial ${a}: ${err.message}\n`) })
  }
  return node
}

/** 64 zero bytes, base64: a well-formed Ed25519 signature that verifies under no key. */
const FORGED_SIGNATURE = 'A'.repeat(86) + '=='
const since = Date.now()
let seq = 0
/** A heartbeat validateHeartbeat accepts: a fast idle server of `s`, or a joining peer (s = -1). */
function heartbeat (node: Libp2p, s: number): Uint8Array {
  const hb: Heartbeat = {
    v: HEARTBEAT_FORMAT, run: runId, peer: node.peerId.toString(), stage: s, state: s < 0 ? 'joining' : 'serving', pinned: false, since, tput: 50,
    phase: 'training', step: 0, throughput: 50, queue: 0, version: '0.0.0', time: Date.now(), seq: ++seq
  } as unknown as Heartbeat
  return encodeHeartbeat(hb)
}
const publish = async (node: Libp2p, data: Uint8Array): Promise<void> => {
  await (node.services as { pubsub: GossipSub }).pubsub.publish(topic, data).then(() => { bump('published') }, () => { bump('publishFailed') })
}

const nodes = await Promise.all(Array.from({ length: attack === 'hbflood' || attack === 'feed' ? 1 : Number(values.identities) }, identity))
process.stdout.write(JSON.stringify({ peers: nodes.map(n => n.peerId.toString()) }) + '\n')
const timers: NodeJS.Timeout[] = [setInterval(() => { process.stdout.write(JSON.stringify(stats) + '\n') }, 1000)]
/** Heartbeats every second as a server of `s`, from every identity. */
const beat = (s: number): void => {
  const all = (): void => { for (const n of nodes) void publish(n, heartbeat(n, s)) }
  all()
  timers.push(setInterval(all, 1000))
}

const attacks: Record<string, () => Promise<void>> = {
  async drop () {
    const droppers = await Promise.all(nodes.map(async n => await startDropper(n, runId, stage)))
    beat(stage)
    timers.push(setInterval(() => { droppers.forEach((d, i) => { stats[`received${i}`] = d.received }) }, 250))
    await new Promise(() => {})
  },
  async feed () {
    if (values.target == null) throw new Error('--target is required')
    const targetPeer = peerIdFromString(values.target.split('/p2p/').pop() as string)
    const n = nodes[0]
    const me = n.peerId.toString()
    const origin = values.origin ?? me
    // naming another origin: first look like a server of the stage before, so the upstream check passes
    if (values.origin != null) {
      beat(stage - 1)
      await new Promise(resolve => setTimeout(resolve, 5000))
    }
    const W = Number(values.width)
    for (let id = 1n; ; id++) {
      const route = values.origin != null ? [origin, me] : [me]
      const r = await feed(n, targetPeer, {
        runId, stage, shape: [1, 8, W], id, route, timeoutMs: 15_000,
        metadata: { origin, step: 1, micro: 0, micros: 1, mode: 'train', auth: values.origin != null ? FORGED_SIGNATURE : undefined }
      }).catch((err: Error) => ({ error: err as Error & { code?: string } }))
      bump('sent')
      if ('frame' in r && r.frame != null) bump('answered')
      else bump(String((r.error as { remoteCode?: string } | undefined)?.remoteCode ?? (r.error as { code?: string } | undefined)?.code ?? 'failed'))
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  },
  async hbflood () {
    const n = nodes[0]
    // a moment for the mesh to form, so the flood reaches the swarm
    await new Promise(resolve => setTimeout(resolve, 2000))
    // one at a time (as gossipsub's own queue would take them), none waited on for long
    for (let i = 0; i < Number(values.count); i++) {
      let t: NodeJS.Timeout | undefined
      const late = new Promise<void>(resolve => { t = setTimeout(() => { bump('publishLate'); resolve() }, 1000) })
      await Promise.race([publish(n, heartbeat(n, -1)), late])
      clearTimeout(t)
    }
  },
  async sybil () {
    const from = Number(values['from-round'])
    await new Promise(resolve => setTimeout(resolve, 2000))
    for (let r = from; r < from + Number(values.rounds); r++) {
      const key = await dhtKey(groupName(runId, stage, r, 0))
      await Promise.all(nodes.map(async n => {
        await n.contentRouting.provide(key, { signal: AbortSignal.timeout(10_000) }).then(() => { bump('provided') }, () => { bump('provideFailed') })
      }))
      stats.round = r
    }
  }
}
const run = attacks[attack]
if (run == null) throw new Error(`unknown attack ${attack}`)

const stop = async (): Promise<void> => {
  for (const t of timers) clearInterval(t)
  await Promise.all(nodes.map(async n => { await n.stop() }))
  process.exit(0)
}
process.on('SIGTERM', () => { void stop() })
process.on('SIGINT', () => { void stop() })
await run()
process.stdout.write(JSON.stringify({ ...stats, finished: 1 }) + '\n')
// the identities stay up (their records and view entries stand) until killed
