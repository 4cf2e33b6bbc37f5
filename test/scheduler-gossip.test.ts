// The scheduler plugin between real nodes: createNode (TCP on 127.0.0.1, noise, yamux, gossipsub)
// loads the built-in `scheduler` plugin by name; it reads and writes the node's membership view
// (Tokens.Membership, core/membership); nodes join, agree on one view, fill empty stages, move with
// the runtime hooks, leave; invalid heartbeats are refused and cost the sender score.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { RPC } from '@libp2p/gossipsub/message'
import type { GossipSub } from '@libp2p/gossipsub'
import { createNode, Tokens, type LayerswarmNode, type StageAssignment } from '../core/index.ts'
import type { GossipScheduler } from '../plugins/scheduler/index.ts'
import { encodeHeartbeat, membersTopic, type Heartbeat } from '../core/membership/index.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'

const RUN = 'sched-test-run'
// a long TTL against the heartbeat: a loaded test machine can stall the event loop for seconds, and an
// entry that expires makes its stage look empty (and rightly triggers a move)
const FAST = { heartbeatMs: 150, epochMs: 600, epochJitterMs: 100, joinListenMs: 800, cooldownMs: 0 }
/** The membership's heartbeat settings (NodeConfig.runtime.membership). */
const FAST_MEMBERSHIP = { intervalMs: 150, ttlMs: 8000 }

interface Started { node: LayerswarmNode, scheduler: GossipScheduler, events: StageAssignment[] }

class Swarm {
  readonly nodes: Started[] = []
  readonly dirs: string[] = []
  readonly plain: LayerswarmNode[] = []

  async add (opts: { stages: number, capacity?: number, pin?: number, options?: Record<string, unknown>, membership?: Record<string, unknown> }): Promise<Started> {
    const dir = await tempDir('lsw-sched-')
    this.dirs.push(dir)
    const node = await createNode({
      dataDir: dir,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      controlEndpoint: false,
      plugins: ['scheduler'],
      // the pin comes the way `start --stage N` passes it: NodeConfig.runtime
      runtime: { runId: RUN, stages: opts.stages, ...(opts.pin !== undefined ? { stage: opts.pin } : {}), membership: { ...FAST_MEMBERSHIP, ...opts.membership } },
      pluginOptions: { scheduler: { ...FAST, capacity: opts.capacity ?? 1, ...opts.options } }
    })
    await node.start()
    // plugins register at start; a joiner picks its stage only after listening (joinListenMs), so no event is missed
    const scheduler = node.container.resolve<GossipScheduler>(Tokens.Scheduler)
    const events: StageAssignment[] = []
    scheduler.onAssignment(a => { events.push(a) })
    await this.connect(node)
    const s = { node, scheduler, events }
    this.nodes.push(s)
    return s
  }

  /** A node without the scheduler plugin (the attacker of the validation tests). */
  async addPlain (): Promise<LayerswarmNode> {
    const dir = await tempDir('lsw-sched-')
    this.dirs.push(dir)
    const node = await createNode({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], controlEndpoint: false, plugins: [] })
    await node.start()
    await this.connect(node)
    this.plain.push(node)
    return node
  }

  private async connect (node: LayerswarmNode): Promise<void> {
    for (const other of [...this.nodes.map(s => s.node), ...this.plain]) {
      if (other.isStarted()) await node.libp2p.dial(other.libp2p.getMultiaddrs()[0])
    }
  }

  live (): Started[] {
    return this.nodes.filter(s => s.node.isStarted())
  }

  async stop (): Promise<void> {
    await Promise.all([...this.nodes.map(s => s.node), ...this.plain].map(async n => { await n.stop() }))
    await removeDirs(this.dirs)
  }
}

/** Stage -> sorted serving peers, as `s` sees it. */
function assignment (s: Started, stages: number): string[][] {
  return Array.from({ length: stages }, (_, st) => s.scheduler.peersForStage(st).sort())
}

async function serving (s: Started): Promise<number> {
  return await waitFor(() => s.scheduler.nodeState === 'serving' ? s.scheduler.currentStage() : undefined, { what: `${s.scheduler.me} to serve a stage` })
}

describe('scheduler plugin over real gossipsub', function () {
  this.timeout(120_000)

  describe('join, agree, leave', () => {
    const swarm = new Swarm()
    after(async () => { await swarm.stop() })

    it('a pinned node serves its stage at once and reports it', async () => {
      const a = await swarm.add({ stages: 3, pin: 0, capacity: 10 })
      assert.equal(a.scheduler.currentStage(), 0)
      assert.equal(a.scheduler.nodeState, 'serving')
      assert.equal(a.scheduler.stats().pinned, true)
      assert.deepEqual(a.scheduler.view().peers.map(p => [p.peerId, p.stage, p.state]), [[a.scheduler.me, 0, 'serving']])
    })

    it('joiners fill the stages with no server first, then the least-served one', async () => {
      const b = await swarm.add({ stages: 3, capacity: 2 })
      const sb = await serving(b)
      assert.notEqual(sb, 0, 'stage 0 is served; an empty stage comes first')
      const c = await swarm.add({ stages: 3, capacity: 4 })
      const sc = await serving(c)
      assert.deepEqual([0, sb, sc].sort(), [0, 1, 2], 'every stage has a server')
      // T = [10, 2, 4] (stage of b is the least served): d ends up with b. It joins there when its
      // view is complete at its decision; on a loaded machine it may decide before c's heartbeats
      // reach it, take the stage that looks empty, and is then moved by the rebalancing rule, which
      // is the rule working as designed: assert where it ends, and that b and c (lone servers) stay
      const d = await swarm.add({ stages: 3, capacity: 3 })
      await waitFor(() => d.scheduler.nodeState === 'serving' && d.scheduler.currentStage() === sb, { what: 'd to serve the stage of b' })
      assert.equal(d.events.at(-1)?.stage, sb)
      assert.equal(d.events[0].reason, 'join')
      for (const s of [b, c]) assert.deepEqual(s.events, [{ stage: s.scheduler.currentStage(), reason: 'join' }])
    })

    it('every node holds the same view', async () => {
      const expected = assignment(swarm.nodes[0], 3)
      assert.equal(expected.flat().length, 4)
      await waitFor(() => swarm.live().every(s => JSON.stringify(assignment(s, 3)) === JSON.stringify(expected)), {
        what: 'all views to agree', state: () => ({ expected, views: swarm.live().map(s => assignment(s, 3)) })
      })
      for (const s of swarm.live()) assert.equal(s.scheduler.view().peers.length, 4)
    })

    it('a stopped node announces leaving and drops out of every view', async () => {
      const d = swarm.nodes[3]
      const stage = d.scheduler.currentStage()!
      await d.node.stop()
      const rest = swarm.live()
      await waitFor(() => rest.every(s => !s.scheduler.peersForStage(stage).includes(d.scheduler.me)), { what: 'd to leave the stage lists' })
      await waitFor(() => rest.every(s => s.scheduler.view().peers.every(p => p.peerId !== d.scheduler.me)), { what: 'd to expire from the views' })
      // nobody moved: b is now alone at its stage again, and the lone-server rule keeps everyone put
      for (const s of rest) assert.equal(s.scheduler.stats().moves, 0)
    })
  })

  describe('refilling an emptied stage', () => {
    const swarm = new Swarm()
    after(async () => { await swarm.stop() })

    it('when every server of a stage leaves, a node of an over-served stage moves there through the hooks', async () => {
      const hookCalls: string[] = []
      await swarm.add({ stages: 3, pin: 0, capacity: 10 })
      const joined: Started[] = []
      for (let i = 0; i < 4; i++) {
        const s = await swarm.add({ stages: 3, capacity: 5 })
        s.scheduler.setMoveHooks({
          beforeMove: async (from, to) => { hookCalls.push(`${s.scheduler.me}:before:${from}->${to}`) },
          fetchStageState: async (stage, peers) => { hookCalls.push(`${s.scheduler.me}:fetch:${stage}:${peers.length}`) }
        })
        await serving(s)
        joined.push(s)
      }
      // T = [10, 10, 10]: two joiners on each of stages 1 and 2 (a joiner that decided on a partial
      // view is moved there by the rule; wait for the settled assignment)
      const byStage = (st: number): Started[] => joined.filter(s => s.scheduler.currentStage() === st && s.scheduler.nodeState === 'serving')
      await waitFor(() => byStage(1).length === 2 && byStage(2).length === 2, { what: 'two servers on each of stages 1 and 2' })
      const victims = byStage(2)
      const others = byStage(1)
      const eventsBefore = new Map(others.map(s => [s, s.events.length]))
      const movesBefore = new Map(others.map(s => [s, s.scheduler.stats().moves]))
      hookCalls.length = 0
      await Promise.all(victims.map(async v => { await v.node.stop() }))
      const mover = await waitFor(() => others.find(s => s.scheduler.currentStage() === 2 && s.scheduler.nodeState === 'serving'), { what: 'a stage-1 node to serve stage 2' })
      const stayer = others.find(s => s !== mover)!
      assert.equal(stayer.scheduler.currentStage(), 1, 'the other one stays: stage 1 keeps a server')
      assert.deepEqual(mover.events.slice(eventsBefore.get(mover)).map(e => `${e.reason}:${e.stage}`), ['rebalance:2'])
      assert.equal(stayer.events.length, eventsBefore.get(stayer))
      assert.deepEqual(hookCalls, [`${mover.scheduler.me}:before:1->2`, `${mover.scheduler.me}:fetch:2:0`], 'drain, then fetch from nobody (no one served stage 2)')
      assert.equal(mover.scheduler.stats().moves, movesBefore.get(mover)! + 1)
      await waitFor(() => swarm.live().every(s => s.scheduler.peersForStage(2).includes(mover.scheduler.me)), { what: 'every view to show stage 2 served' })
    })
  })

  describe('gossip validation', () => {
    const swarm = new Swarm()
    let victim: Started
    let attacker: LayerswarmNode
    const topic = membersTopic(RUN)
    let seq = Date.now()
    after(async () => { await swarm.stop() })

    const heartbeat = (over: Partial<Record<keyof Heartbeat, unknown>> = {}): Heartbeat => ({
      v: 1, run: RUN, peer: attacker.peerId, stage: 0, state: 'serving', pinned: false, since: 0, tput: 1, phase: 'training', step: 0, throughput: 0, queue: 0, version: 'x', time: Date.now(), seq: ++seq, ...over
    } as unknown as Heartbeat)
    const json = (o: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(o))
    const pubsub = (): GossipSub => attacker.libp2p.services.pubsub
    const score = (): number => (victim.node.libp2p.services.pubsub as unknown as { getScore(id: string): number }).getScore(attacker.peerId)
    const count = (kind: 'rejected' | 'ignored', code: string): number => victim.scheduler.stats()[kind][code] ?? 0

    before(async () => {
      // weight -0.5: all the rejections below stay above the graylist threshold (-80), so each is still processed
      victim = await swarm.add({ stages: 2, pin: 0, membership: { invalidMessageWeight: -0.5 } })
      await swarm.add({ stages: 2, pin: 1 })
      attacker = await swarm.addPlain()
      await waitFor(() => pubsub().getSubscribers(topic).some(p => p.toString() === victim.scheduler.me), { what: 'the attacker to see the victim subscribed' })
    })

    const rejects: Array<[string, string, () => Uint8Array]> = [
      ['malformed (not JSON)', 'ERR_MEMBER_HB_MALFORMED', () => new TextEncoder().encode('{"v":1,')],
      ['malformed (unknown field)', 'ERR_MEMBER_HB_MALFORMED', () => json({ ...heartbeat(), extra: 1 })],
      ['payload peer != signer', 'ERR_MEMBER_HB_SENDER', () => encodeHeartbeat(heartbeat({ peer: victim.scheduler.me }))],
      ['another run', 'ERR_MEMBER_HB_RUN', () => encodeHeartbeat(heartbeat({ run: 'other-run' }))],
      ['stage out of range', 'ERR_MEMBER_HB_VALUE', () => json(heartbeat({ stage: 9 }))],
      ['negative throughput', 'ERR_MEMBER_HB_VALUE', () => json(heartbeat({ tput: -3 }))],
      ['time beyond the clock skew', 'ERR_MEMBER_HB_FUTURE', () => encodeHeartbeat(heartbeat({ time: Date.now() + 3_600_000 }))]
    ]
    for (const [what, code, bytes] of rejects) {
      it(`REJECTs ${what} (${code}) and lowers the sender's score`, async () => {
        const before = score()
        const n = count('rejected', code)
        await pubsub().publish(topic, bytes())
        await waitFor(() => count('rejected', code) === n + 1, { what: `${code} to be counted` })
        await waitFor(() => score() < before, { what: 'the attacker\'s score to drop' })
      })
    }

    it('IGNOREs a stale heartbeat without penalty', async () => {
      const before = score()
      const n = count('ignored', 'ERR_MEMBER_HB_STALE')
      await pubsub().publish(topic, encodeHeartbeat(heartbeat({ time: Date.now() - 3_600_000 })))
      await waitFor(() => count('ignored', 'ERR_MEMBER_HB_STALE') === n + 1, { what: 'the stale heartbeat to be counted' })
      assert.ok(score() >= before, 'an ignored message must not cost score')
    })

    it('accepts a valid heartbeat, then IGNOREs one whose seq does not increase', async () => {
      const accepted = victim.scheduler.stats().accepted
      const hb = heartbeat({ seq: ++seq + 1000 })
      await pubsub().publish(topic, encodeHeartbeat(hb))
      await waitFor(() => victim.scheduler.view().peers.some(p => p.peerId === attacker.peerId), { what: 'the valid heartbeat to be accepted' })
      assert.ok(victim.scheduler.stats().accepted > accepted)
      const before = score()
      const n = count('ignored', 'ERR_MEMBER_HB_REPLAY')
      await pubsub().publish(topic, encodeHeartbeat({ ...hb, seq: hb.seq - 1, time: Date.now() }))
      await waitFor(() => count('ignored', 'ERR_MEMBER_HB_REPLAY') === n + 1, { what: 'the replay to be counted' })
      assert.ok(score() >= before)
    })

    it('REJECTs a forged signature (gossipsub StrictSign, before our validator) and lowers the sender\'s score', async () => {
      // last: a second inbound gossipsub stream replaces the attacker's regular one at the victim
      const before = score()
      const refused = (): number => Object.values({ ...victim.scheduler.stats().rejected, ...victim.scheduler.stats().ignored }).reduce((a, b) => a + b, 0)
      const refusedBefore = refused()
      const stream = await attacker.libp2p.dialProtocol(victim.node.libp2p.peerId, '/meshsub/1.1.0')
      const rpc = RPC.encode({
        subscriptions: [],
        messages: [{ from: attacker.libp2p.peerId.toMultihash().bytes, data: encodeHeartbeat(heartbeat({ stage: 1, seq: seq + 1e6 })), seqno: randomBytes(8), topic, signature: randomBytes(64) }]
      })
      stream.send(concat(varint(rpc.byteLength), rpc))
      await waitFor(() => score() < before, { what: 'the attacker\'s score to drop' })
      // our validator never saw it (no refusal counted) and it never entered the view
      assert.equal(refused(), refusedBefore)
      assert.ok(!victim.scheduler.view().peers.some(p => p.peerId === attacker.peerId && p.stage === 1))
      await stream.close().catch(() => {})
    })
  })
})

function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n >>>= 7 }
  out.push(n)
  return Uint8Array.from(out)
}

function concat (a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength)
  out.set(a)
  out.set(b, a.byteLength)
  return out
}
