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
//   hbflood   --count N [--rate R] [--presign 0] [--subscribers K]: (once K nodes are seen on the topic) N valid heartbeats of a fresh, joining identity
//             (stage -1), R a second (default 476: the rate the flood reached when it signed as it
//             went). Every one is signed before the first goes out ("ready" in the counters), so the
//             flooder's own CPU during the flood is sending only; the counters carry its CPU time
//             (cpuMs). --presign 0: gossipsub's publish signing each as it goes, as fast as it takes them
//             (the issue: 20,000 stalled training for ~55 s)
//   burn      --cpu F: connects like the flooder and sends nothing, busy for F of one core (the
//             flood's control: what the flooder's CPU alone costs the nodes on a shared machine)
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
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { RPC } from '@libp2p/gossipsub/message'
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
    rate: { type: 'string', default: '476' },
    presign: { type: 'string', default: '1' },
    subscribers: { type: 'string', default: '1' },
    cpu: { type: 'string', default: '0' },
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
/** Sets a flag and prints the counters at once (the test waits on it). */
const mark = (k: string): void => { stats[k] = 1; process.stdout.write(JSON.stringify(stats) + '\n') }

const keys = new WeakMap<Libp2p, PrivateKey>()
async function identity (): Promise<Libp2p> {
  const privateKey = await generateKeyPair('Ed25519')
  const services: Record<string, unknown> = { identify: identify(), ping: ping(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
  if (attack === 'sybil') services.dht = kadDHT({ protocol: values.dht, clientMode: true, peerInfoMapper: passthroughMapper })
  const node = await createLibp2p({
    privateKey,
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
  keys.set(node, privateKey)
  return node
}

/** 64 zero bytes, base64: a well-formed Ed25519 signature that verifies under no key. */
const FORGED_SIGNATURE = 'A'.repeat(86) + '=='
const since = Date.now()
let seq = 0
/** A heartbeat validateHeartbeat accepts: a fast idle server of `s`, or a joining peer (s = -1), dated `time`. */
function heartbeat (node: Libp2p, s: number, time = Date.now()): Uint8Array {
  const hb: Heartbeat = {
    v: HEARTBEAT_FORMAT, run: runId, peer: node.peerId.toString(), stage: s, state: s < 0 ? 'joining' : 'serving', pinned: false, since, tput: 50,
    phase: 'training', step: 0, throughput: 50, queue: 0, version: '0.0.0', time, seq: ++seq
  } as unknown as Heartbeat
  return encodeHeartbeat(hb)
}
const publish = async (node: Libp2p, data: Uint8Array): Promise<void> => {
  await (node.services as { pubsub: GossipSub }).pubsub.publish(topic, data).then(() => { bump('published') }, () => { bump('publishFailed') })
}

/** CPU time (user + system, ms) this process spent since `from`. */
const cpuMsSince = (from: NodeJS.CpuUsage): number => { const d = process.cpuUsage(from); return Math.round((d.user + d.system) / 1000) }
/** A gossipsub message of `node` on the membership topic, signed as gossipsub's StrictSign publish signs it. */
let seqno = BigInt(Date.now()) * 1_000_000n
async function signedMessage (node: Libp2p, data: Uint8Array): Promise<RPC.Message> {
  const key = keys.get(node) as PrivateKey
  const no = new Uint8Array(8)
  new DataView(no.buffer).setBigUint64(0, ++seqno, false)
  const m: RPC.Message = { from: node.peerId.toMultihash().bytes, data, seqno: no, topic }
  const prefix = new TextEncoder().encode('libp2p-pubsub:')
  const body = RPC.Message.encode(m)
  const toSign = new Uint8Array(prefix.length + body.length)
  toSign.set(prefix)
  toSign.set(body, prefix.length)
  return { ...m, signature: await key.sign(toSign), key: publicKeyToProtobuf(key.publicKey) }
}

/** Waits (up to 60 s) until `n` sees --subscribers peers on the topic, so the flood reaches every node it dialled. */
async function subscribed (n: Libp2p): Promise<void> {
  const until = Date.now() + 60_000
  while ((n.services as { pubsub: GossipSub }).pubsub.getSubscribers(topic).length < Number(values.subscribers) && Date.now() < until) {
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** The flood as first written: gossipsub's publish, signing each heartbeat as it goes, as fast as it takes them. */
async function signingFlood (n: Libp2p, count: number): Promise<void> {
  await subscribed(n)
  mark('ready')
  const c0 = process.cpuUsage()
  for (let i = 0; i < count; i++) {
    let t: NodeJS.Timeout | undefined
    const late = new Promise<void>(resolve => { t = setTimeout(() => { bump('publishLate'); resolve() }, 1000) })
    const reached = (n.services as { pubsub: GossipSub }).pubsub.getSubscribers(topic).length > 0
    await Promise.race([publish(n, heartbeat(n, -1)), late])
    clearTimeout(t)
    bump('sent')
    if (reached) bump('reached')
    // publish can resolve in microtasks only: without a turn of the event loop now and then, the
    // counters (and "ready") would not come out until the flood is over
    if (i % 50 === 0) {
      stats.cpuMs = cpuMsSince(c0)
      await new Promise(resolve => setImmediate(resolve))
    }
  }
}

const nodes = await Promise.all(Array.from({ length: attack === 'hbflood' || attack === 'feed' || attack === 'burn' ? 1 : Number(values.identities) }, identity))
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
    const count = Number(values.count)
    const rate = Number(values.rate)
    if (values.presign === '0') {
      await signingFlood(n, count)
      return
    }
    await subscribed(n)
    // every heartbeat signed up front, each dated when it is due to go out: the signing speed first
    // (twice the time it takes, on a loaded machine), so the dates hold
    const probe = performance.now()
    for (let i = 0; i < 200; i++) await signedMessage(n, heartbeat(n, -1))
    const t0 = Date.now() + 1000 + 2 * (performance.now() - probe) / 200 * count
    const c0 = process.cpuUsage()
    const signed: RPC.Message[] = []
    for (let i = 0; i < count; i++) signed.push(await signedMessage(n, heartbeat(n, -1, Math.round(t0 + i * 1000 / rate))))
    stats.signMs = cpuMsSince(c0)
    while (Date.now() < t0) await new Promise(resolve => setTimeout(resolve, 50))
    // paced from when it starts: signing that ran late makes the heartbeats older (lateMs), never a burst
    const start = Date.now()
    stats.lateMs = Math.round(start - t0)
    mark('ready')
    const c1 = process.cpuUsage()
    const ps = (n.services as { pubsub: GossipSub }).pubsub as unknown as { getSubscribers: (t: string) => Array<{ toString: () => string }>, sendRpc: (id: string, rpc: RPC) => boolean }
    // gossipsub's own path minus the signing: one RPC per heartbeat to every subscriber (flood publish)
    for (let i = 0; i < count;) {
      const due = Math.min(count, Math.floor((Date.now() - start) * rate / 1000) + 1)
      for (; i < due; i++) {
        let reached = false
        for (const p of ps.getSubscribers(topic)) reached = ps.sendRpc(p.toString(), { subscriptions: [], messages: [signed[i]] }) || reached
        bump('sent')
        // sent to nobody once every node has cut the flooder off (no stream left to send on)
        if (reached) bump('reached')
      }
      stats.cpuMs = cpuMsSince(c1)
      await new Promise(resolve => setTimeout(resolve, 10))
    }
  },
  async burn () {
    const share = Math.max(0, Math.min(1, Number(values.cpu)))
    const c0 = process.cpuUsage()
    mark('ready')
    // busy `share` of every 10 ms
    timers.push(setInterval(() => {
      const until = performance.now() + 10 * share
      while (performance.now() < until) {}
      stats.cpuMs = cpuMsSince(c0)
    }, 10))
    await new Promise(() => {})
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
// in the counters themselves: the next periodic line must not hide it
stats.finished = 1
process.stdout.write(JSON.stringify(stats) + '\n')
// the identities stay up (their records and view entries stand) until killed
