// A node reachable only through relays publishes a discounted throughput (rule.ts
// RELAYED_CAPACITY_FACTOR): the scheduler's rule balances stages on it, and the router's prior for
// an unmeasured peer (its gossiped throughput) gives it proportionally less work.
import assert from 'node:assert/strict'
import type { Member, Membership, PlacementFields } from '../core/contracts/membership.ts'
import { Router } from '../core/pipeline/router.ts'
import { GossipScheduler, publishedThroughput, RELAYED_CAPACITY_FACTOR, stageThroughputs } from '../plugins/scheduler/index.ts'

/** A membership that only records what the scheduler provides. */
function fakeMembership (): Membership & { placement?: () => PlacementFields } {
  const m: Membership & { placement?: () => PlacementFields } = {
    me: 'me', runId: 'r', stages: 2,
    members: () => [],
    member: () => undefined,
    self: () => ({ peer: 'me', ...m.placement!(), phase: 'training', step: 0, throughput: 0, queue: 0, version: 'v', time: 0, seq: 0, seen: 0 }) as Member,
    peersForStage: () => [],
    throughputOf: () => undefined,
    onMember: () => () => {},
    publish: async () => {},
    providePlacement (p) { m.placement = p; return () => {} },
    provideRun: () => () => {},
    exclude () {},
    neighbours: () => [],
    stats: () => ({ published: 0, accepted: 0, rejected: {}, ignored: {} })
  }
  return m
}

describe('scheduler: relayed nodes publish a discounted capacity', () => {
  it('the factor is a documented share in (0, 1)', () => {
    assert.ok(RELAYED_CAPACITY_FACTOR > 0 && RELAYED_CAPACITY_FACTOR < 1)
    assert.equal(publishedThroughput(10, false), 10)
    assert.equal(publishedThroughput(10, true), 10 * RELAYED_CAPACITY_FACTOR)
  })

  it('a pinned node behind NAT publishes its capacity x the factor, and the full one once reachable', async () => {
    let relayed = true
    const membership = fakeMembership()
    const s = new GossipScheduler(membership, { runId: 'r', stages: 2, pinnedStage: 1, capacity: 8, heartbeatMs: 60_000, relayedOnly: () => relayed })
    await s.start()
    try {
      assert.equal(membership.placement!().tput, 8 * RELAYED_CAPACITY_FACTOR)
      relayed = false
      assert.equal(membership.placement!().tput, 8)
    } finally {
      await s.stop()
    }
  })

  it('the rule counts a relayed node for less at its stage', () => {
    const e = (peer: string, stage: number, tput: number) => ({ peer, stage, tput, state: 'serving' as const, pinned: false, since: 0 })
    const T = stageThroughputs([e('a', 0, 4), e('b', 1, publishedThroughput(4, true)), e('c', 1, 4)], { stages: 2 })
    assert.deepEqual(T, [4, 4 + 4 * RELAYED_CAPACITY_FACTOR])
  })

  it('the router gives an unmeasured relayed peer proportionally less work', () => {
    const tput: Record<string, number> = { direct: 4, relayed: publishedThroughput(4, true) }
    let i = 0
    const r = new Router({ peersForStage: () => ['direct', 'relayed'], throughputOf: p => tput[p] }, { rng: () => (i++ % 2) / 2 })
    const sent: Record<string, number> = { direct: 0, relayed: 0 }
    for (let k = 0; k < 300; k++) sent[r.choose(1)!]++
    const share = sent.relayed / sent.direct
    assert.ok(Math.abs(share - RELAYED_CAPACITY_FACTOR) < 0.05, `relayed/direct work ${share}`)
  })
})
