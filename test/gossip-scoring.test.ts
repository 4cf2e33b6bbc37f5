// Every gossip topic scored (issue 15): the membership topic limits each publisher's heartbeat rate
// before parsing (beyond it IGNORE, far beyond REJECT: publisher-rates.ts), so a flood of valid
// heartbeats from a fresh identity costs the node little and the flooder its gossipsub score and its
// connection (core/timed-bans.ts: aborted, refused for a while by createNode's connection gater); absurd
// heartbeats (throughput 1e308, stage -1 serving, 100 KB, another peer's id) never enter the view and
// cost their sender too.
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Libp2p } from '@libp2p/interface'
import { HeartbeatFloodError, HeartbeatRateLimitedError } from '../core/membership/errors.ts'
import { encodeHeartbeat, membersTopic, type Heartbeat } from '../core/membership/heartbeat.ts'
import { createMembership, type MembershipHost, type MembershipService } from '../core/membership/index.ts'
import { PublisherRates } from '../core/membership/publisher-rates.ts'
import { TimedBans } from '../core/timed-bans.ts'
import { createGossipNode, stopNodes } from './wire-helpers.ts'
import { waitFor } from './wait-helpers.ts'

const RUN = 'gossip-scoring-run'
const TOPIC = membersTopic(RUN)

const gossipNode = async (): Promise<Libp2p> => await createGossipNode()

const pubsubOf = (n: Libp2p): GossipSub => (n as unknown as { services: { pubsub: GossipSub } }).services.pubsub
/** gossipsub's score of `peer` at `n` (cached by gossipsub for one heartbeat interval). */
const scoreAt = (n: Libp2p, peer: string): number => (pubsubOf(n) as unknown as { getScore: (p: string) => number }).getScore(peer)

function heartbeat (peer: string, seq: number, over: Record<string, unknown> = {}): Heartbeat {
  const now = Date.now()
  return { v: 1, run: RUN, peer, stage: 1, state: 'serving', pinned: true, since: now - 1000, tput: 1, phase: 'training', step: 0, throughput: 1, queue: 0, version: '0.1.0', time: now, seq, ...over } as Heartbeat
}

describe('gossip scoring: publisher rates (unit)', () => {
  it('a burst passes, then IGNORE, then REJECT past the hard bound; the rate refills', () => {
    let t = 0
    const r = new PublisherRates({ perSec: 2, burst: 4, hardExcess: 5, now: () => t })
    for (let i = 0; i < 4; i++) r.take('a')
    for (let i = 0; i < 5; i++) assert.throws(() => { r.take('a') }, HeartbeatRateLimitedError)
    assert.throws(() => { r.take('a') }, HeartbeatFloodError)
    r.take('b') // another publisher has its own bucket
    t += 10_000 // the excess drains and the bucket refills at the rate
    for (let i = 0; i < 4; i++) r.take('a')
  })

  it('tracks a bounded number of publishers', () => {
    const r = new PublisherRates({ perSec: 1, burst: 1, hardExcess: 1, maxPublishers: 10 })
    for (let i = 0; i < 100; i++) r.take(`p${i}`)
    assert.equal(r.size, 10)
  })
})

describe('gossip scoring: the membership topic under attack (real gossipsub)', function () {
  this.timeout(120_000)
  let nodes: Libp2p[] = []
  let view: MembershipService | undefined
  let bans = new TimedBans()
  let flooded: string[] = []
  beforeEach(() => {
    bans = new TimedBans()
    flooded = []
  })
  afterEach(async () => {
    view?.stop()
    await stopNodes(...nodes)
    nodes = []
  })

  /** An honest node with a membership view and an attacker with bare gossipsub, connected, the attacker seeing the view's subscription. */
  async function pair (): Promise<{ honest: Libp2p, attacker: Libp2p, v: MembershipService }> {
    nodes = [await gossipNode(), await gossipNode()]
    const [honest, attacker] = nodes
    await attacker.dial(honest.getMultiaddrs()[0])
    view = createMembership(honest as unknown as MembershipHost, { runId: RUN, stages: 3, intervalMs: 1000, floodBans: bans, onFlood: p => { flooded.push(p) } })
    view.start()
    pubsubOf(attacker).subscribe(TOPIC)
    await waitFor(() => pubsubOf(attacker).getSubscribers(TOPIC).length > 0, { what: 'the attacker to see the honest node subscribed' })
    return { honest, attacker, v: view }
  }

  it('a flood of valid heartbeats from a fresh identity: a few accepted, the rest IGNOREd then REJECTed; the flooder\'s score falls', async () => {
    const { honest, attacker, v } = await pair()
    const me = attacker.peerId.toString()
    const N = 3000
    const t0 = performance.now()
    const base = Date.now()
    for (let i = 0; i < N; i++) await pubsubOf(attacker).publish(TOPIC, encodeHeartbeat(heartbeat(me, base + i)))
    const sent = performance.now() - t0
    // once the flooder's score is below gossipsub's graylist threshold the rest is not even validated
    await waitFor(() => (v.stats().rejected.ERR_MEMBER_HB_FLOOD ?? 0) > 0 && scoreAt(honest, me) < 0, { what: 'the flood rejected and scored', timeoutMs: 60_000, state: () => v.stats() })
    const s = v.stats()
    const score = scoreAt(honest, me)
    const validated = s.accepted + Object.values(s.ignored).reduce((a, b) => a + b, 0) + Object.values(s.rejected).reduce((a, b) => a + b, 0)
    console.log(`      ${N} heartbeats published in ${sent.toFixed(0)} ms; validated ${validated}: accepted ${s.accepted}, ignored ${JSON.stringify(s.ignored)}, rejected ${JSON.stringify(s.rejected)}; flooder's score ${score.toFixed(1)}`)
    assert.ok(s.accepted < N / 10, `accepted ${s.accepted} of ${N}`)
    assert.ok((s.ignored.ERR_MEMBER_HB_RATE ?? 0) > 0, 'over the rate: ignored')
    assert.ok((s.rejected.ERR_MEMBER_HB_FLOOD ?? 0) > 0, 'far over the rate: rejected')
    assert.ok(score < 0, `the flooder's score ${score}`)
    // the publisher itself flooded: banned, reported once, its connection aborted (what it sends no longer costs the node anything)
    assert.deepEqual(flooded, [me])
    assert.ok(bans.isBanned(me))
    await waitFor(() => honest.getConnections(attacker.peerId).length === 0, { what: 'the flooder cut off', timeoutMs: 10_000 })
  })

  it('absurd heartbeats never enter the view and cost their sender', async () => {
    const { honest, attacker, v } = await pair()
    const me = attacker.peerId.toString()
    const raw = (o: Record<string, unknown>): Uint8Array => new TextEncoder().encode(JSON.stringify(o))
    const seq = Date.now()
    const bad: Array<[string, Uint8Array]> = [
      ['throughput 1e308', raw({ ...heartbeat(me, seq), throughput: 1e308 })],
      ['stage -1 serving', raw({ ...heartbeat(me, seq + 1), stage: -1 })],
      ['100 KB', new Uint8Array(100 * 1024).fill(0x20)],
      ['another peer\'s id', raw({ ...heartbeat(honest.peerId.toString(), seq + 2) })],
      ['not JSON', new Uint8Array([0xff, 0xfe, 0x01])]
    ]
    for (const [, bytes] of bad) await pubsubOf(attacker).publish(TOPIC, bytes)
    await waitFor(() => Object.values(v.stats().rejected).reduce((a, b) => a + b, 0) >= bad.length, { what: 'every absurd heartbeat rejected', timeoutMs: 20_000, state: () => v.stats() })
    assert.equal(v.member(me), undefined, 'nothing of the attacker entered the view')
    await waitFor(() => scoreAt(honest, me) < 0, { what: 'the sender\'s score to fall', timeoutMs: 10_000, state: () => scoreAt(honest, me) })
    const score = scoreAt(honest, me)
    console.log(`      rejected ${JSON.stringify(v.stats().rejected)}, sender's score ${score.toFixed(1)}`)
    assert.ok(score < 0, `the sender's score ${score}`)
  })
})
