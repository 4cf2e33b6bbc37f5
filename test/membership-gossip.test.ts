// The membership service (core/membership) between real libp2p nodes (TCP on 127.0.0.1, noise,
// yamux, gossipsub): one heartbeat per node on the run's members topic carries both contributors'
// fields (placement: scheduler or pin; run: pipeline); every node's view holds the others; routing
// takes serving peers that have not failed, best first; a peer drops out at once when its last
// connection closes, or a TTL after its last heartbeat; the pipeline's parts read the node's one
// service (core/pipeline/stage-peers.ts).
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import type { Libp2p } from '@libp2p/interface'
import type { Member, PlacementFields, RunFields } from '../core/contracts/index.ts'
import { createMembership, MembershipStateError, pinnedPlacement, type MembershipHost, type MembershipService } from '../core/membership/index.ts'
import { averagingPartners, peersPerStage, runEndView } from '../core/pipeline/stage-peers.ts'
import { createGossipNode, stopNodes } from './wire-helpers.ts'
import { waitFor } from './wait-helpers.ts'

const RUN = 'members-test-run'

const gossipNode = async (): Promise<Libp2p> => await createGossipNode()

/** n started gossip nodes, every pair connected. */
async function gossipNodes (n: number): Promise<Libp2p[]> {
  const nodes = await Promise.all(Array.from({ length: n }, gossipNode))
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) await nodes[i].dial(nodes[j].getMultiaddrs()[0])
  return nodes
}

const host = (n: Libp2p): MembershipHost => n as unknown as MembershipHost
const peer = (n: Libp2p): string => n.peerId.toString()
const placed = (over: Partial<PlacementFields> = {}): PlacementFields => ({ stage: 1, state: 'serving', pinned: false, since: Date.now(), tput: 0, ...over })
const running = (over: Partial<RunFields> = {}): RunFields => ({ phase: 'training', step: 0, throughput: 0, queue: 0, ...over })

describe('membership view over real gossipsub', function () {
  this.timeout(60_000)

  describe('heartbeats, routing, expiry', () => {
    let nodes: Libp2p[] = []
    let views: MembershipService[] = []
    let clockOffset = 0
    before(async () => {
      nodes = await gossipNodes(3)
      // a long TTL: expiry by time is shown with the clock of view 0 moved on, not by waiting
      views = nodes.map((n, i) => createMembership(host(n), { runId: RUN, stages: 3, intervalMs: 100, ttlMs: 30_000, ...(i === 0 ? { now: () => Date.now() + clockOffset } : {}) }))
      for (const v of views) v.start()
    })
    after(async () => {
      for (const v of views) v.stop()
      await stopNodes(...nodes)
    })

    it('one heartbeat carries the placement and the run fields; every node sees the others', async () => {
      const [a, b, c] = views
      a.providePlacement(pinnedPlacement(0))
      a.provideRun(() => running({ step: 5, throughput: 2, queue: 1 }))
      b.providePlacement(() => placed({ stage: 1, tput: 3 }))
      // c says nothing: a joiner without a stage
      await waitFor(() => views.every(v => v.members().length === 2), { what: 'every view to hold the two others', state: () => views.map(v => v.members().map(m => m.peer)) })
      const seenA = c.member(a.me) as Member
      assert.deepEqual([seenA.stage, seenA.state, seenA.pinned, seenA.phase, seenA.step, seenA.throughput, seenA.queue], [0, 'serving', true, 'training', 5, 2, 1])
      await waitFor(() => a.member(b.me)?.tput === 3, { what: 'b\'s placement to reach a' })
      const seenB = a.member(b.me) as Member
      assert.deepEqual([seenB.stage, seenB.state, seenB.phase, seenB.step], [1, 'serving', 'starting', 0])
      const seenC = a.member(c.me) as Member
      assert.deepEqual([seenC.stage, seenC.state, seenC.pinned], [-1, 'joining', false])
      assert.equal(a.self().peer, a.me)
      assert.equal(a.member(a.me)?.step, 5)
    })

    it('routes to serving peers that have not failed, never to itself or a joiner; best first', async () => {
      const [a, b, c] = views
      assert.deepEqual(c.peersForStage(0), [a.me])
      assert.deepEqual(c.peersForStage(1), [b.me])
      assert.deepEqual(a.peersForStage(0), [], 'not to itself')
      assert.ok(views.every(v => v.peersForStage(-1).length === 0), 'a joiner is not routed to')
      // the prior: capacity when measured, else the pipeline's rate
      assert.equal(c.throughputOf(b.me), 3)
      assert.equal(c.throughputOf(a.me), 2)
      // a second server of stage 1 that does more per queued microbatch comes first
      c.providePlacement(() => placed({ stage: 1, tput: 10 }))
      await waitFor(() => a.peersForStage(1).length === 2, { what: 'c to serve stage 1 in a\'s view' })
      assert.deepEqual(a.peersForStage(1), [c.me, b.me])
      // failed (run) or leaving (placement): out of the routes, still a member
      c.provideRun(() => running({ phase: 'failed' }))
      b.providePlacement(() => placed({ stage: 1, state: 'leaving', to: 2, tput: 3 }))
      await waitFor(() => a.peersForStage(1).length === 0, { what: 'failed and leaving peers to leave the routes', state: () => a.members() })
      assert.equal(a.members().length, 2)
      assert.equal(a.member(b.me)?.to, 2)
    })

    it('calls onMember with every accepted heartbeat (the averaging trigger)', async () => {
      const [a, b] = views
      const heard: Member[] = []
      const off = a.onMember(m => { if (m.peer === b.me) heard.push(m) })
      await waitFor(() => heard.length >= 3, { what: 'three heartbeats of b' })
      off()
      const n = heard.length
      assert.ok(heard.every((m, i) => i === 0 || m.seq > heard[i - 1].seq), 'seq increases')
      await waitFor(() => (a.member(b.me)?.seq ?? 0) > heard[n - 1].seq + 2, { what: 'more heartbeats of b' })
      assert.equal(heard.length, n, 'an unsubscribed listener hears nothing')
      assert.ok(a.stats().accepted >= n && a.stats().published > 0)
    })

    it('keeps a detached provider\'s last word', async () => {
      const b = views[1]
      let step = 7
      const detach = b.provideRun(() => running({ phase: 'done', step }))
      detach()
      step = 99
      await waitFor(() => views[2].member(b.me)?.phase === 'done', { what: 'b done in c\'s view' })
      const seq = views[2].member(b.me)!.seq
      await waitFor(() => (views[2].member(b.me)?.seq ?? 0) > seq, { what: 'a later heartbeat of b' })
      assert.equal(views[2].member(b.me)?.step, 7)
    })

    it('drops a peer a TTL after its last heartbeat arrived (receive time, local clock)', async () => {
      const a = views[0]
      assert.equal(a.members().length, 2)
      clockOffset = 31_000
      assert.deepEqual(a.members(), [])
      assert.equal(a.member(views[1].me), undefined)
      clockOffset = 0
      await waitFor(() => a.members().length === 2, { what: 'the peers to come back with their next heartbeats' })
    })

    it('drops a peer at once when its last connection closes', async () => {
      const [a, b] = views
      const t0 = Date.now()
      await nodes[0].hangUp(nodes[1].peerId)
      await waitFor(() => a.member(b.me) == null, { what: 'b to leave a\'s view on disconnect' })
      assert.ok(Date.now() - t0 < 10_000, 'well inside the 30 s TTL')
    })
  })

  describe('one service per node and run; the pipeline directory reads it', () => {
    let nodes: Libp2p[] = []
    const stoppers: Array<() => void> = []
    before(async () => { nodes = await gossipNodes(2) })
    after(async () => {
      for (const s of stoppers) s()
      await stopNodes(...nodes)
    })

    it('refuses a second service of the same run on one node', () => {
      const first = createMembership(host(nodes[0]), { runId: RUN, stages: 2, intervalMs: 100 })
      first.start()
      stoppers.push(() => { first.stop() })
      const second = createMembership(host(nodes[0]), { runId: RUN, stages: 2, intervalMs: 100 })
      assert.throws(() => { second.start() }, MembershipStateError)
      assert.throws(() => { first.start() }, MembershipStateError)
    })

    it('the pipeline reads one view: routing takes serving peers, averaging every live member of the stage, the run end every placed member', async () => {
      const a = createMembership(host(nodes[1]), { runId: 'other-run', stages: 2, intervalMs: 100 })
      const b = createMembership(host(nodes[0]), { runId: 'other-run', stages: 2, intervalMs: 100 })
      for (const m of [a, b]) {
        m.start()
        stoppers.push(() => { m.stop() })
      }
      a.providePlacement(() => placed({ stage: 1, tput: 4 }))
      a.provideRun(() => running({ phase: 'training', step: 3 }))
      b.providePlacement(pinnedPlacement(0))
      b.provideRun(() => running({ phase: 'waiting-peers' }))
      const heard: Member[] = []
      stoppers.push(b.onMember(m => { heard.push(m) }))
      await waitFor(() => a.members().length === 1 && b.members().length === 1, { what: 'the two views to see each other' })
      assert.deepEqual(runEndView(b).live(), [{ stage: 1, state: 'training' }])
      assert.deepEqual(peersPerStage(b, 2, 0), { 0: 1, 1: 1 })
      assert.deepEqual(peersPerStage(b, 2), { 0: 0, 1: 1 }, 'others only')
      assert.deepEqual(b.peersForStage(1), [a.me])
      assert.equal(b.throughputOf(a.me), 4)
      await waitFor(() => heard.length > 0, { what: 'onMember to hear node 1' })
      assert.equal(heard[0].peer, a.me)
      // a joining member is an averaging partner but not a routing target
      a.providePlacement(() => placed({ stage: 1, state: 'joining' }))
      await a.publish()
      await waitFor(() => b.member(a.me)?.state === 'joining', { what: 'the joining heartbeat' })
      assert.deepEqual(b.peersForStage(1), [])
      assert.deepEqual(averagingPartners(b).peersForStage(1), [a.me])
      // a failed one is neither
      a.provideRun(() => running({ phase: 'failed' }))
      await a.publish()
      await waitFor(() => b.member(a.me)?.phase === 'failed', { what: 'the failed heartbeat' })
      assert.deepEqual(averagingPartners(b).peersForStage(1), [])
      assert.deepEqual(peersPerStage(b, 2), { 0: 0, 1: 0 })
    })
  })
})
