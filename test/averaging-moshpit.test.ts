// Moshpit group mixing, on the pure logic: 16 simulated members, groups of about 4 on a hashed
// 4 x 4 grid. Averaging within each round's groups keeps the global mean and, because consecutive
// rounds group along different axes, drives every member to it; the same groups every round do not.
import assert from 'node:assert/strict'
import { groupDigest, moshpitGrid, moshpitGroupIndex, moshpitGroups, selectGroup, shardRanges } from '../core/averaging/index.ts'
import { prng } from './wire-helpers.ts'

const peers = Array.from({ length: 16 }, (_, i) => `12D3KooWsimulated${String(i).padStart(2, '0')}`)

function spread (values: Map<string, number>): { mean: number, maxDev: number } {
  const xs = [...values.values()]
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length
  return { mean, maxDev: Math.max(...xs.map(x => Math.abs(x - mean))) }
}

/** Each group replaces its members' values by the group mean. */
function averageIn (groups: string[][], values: Map<string, number>): void {
  for (const g of groups) {
    const m = g.reduce((a, p) => a + (values.get(p) as number), 0) / g.length
    for (const p of g) values.set(p, m)
  }
}

describe('averaging: Moshpit group mixing (pure logic)', () => {
  it('sizes the grid from the stage size and the target group size', () => {
    assert.deepEqual(moshpitGrid(4, 8), { side: 8, dims: 0 })
    assert.deepEqual(moshpitGrid(8, 8), { side: 8, dims: 0 })
    assert.deepEqual(moshpitGrid(16, 4), { side: 4, dims: 2 })
    assert.deepEqual(moshpitGrid(17, 4), { side: 4, dims: 3 })
    assert.equal(moshpitGroupIndex(peers[0], 5, moshpitGrid(4, 8)), 0, 'a small stage is one group')
  })

  it('16 members in groups of ~4 converge to the global mean over repeated rounds', () => {
    const grid = moshpitGrid(16, 4)
    const rand = prng(7)
    const values = new Map(peers.map(p => [p, rand() * 100]))
    const start = spread(values)
    const sizes: number[] = []
    for (let round = 0; round < 12; round++) {
      const groups = moshpitGroups(peers, round, grid)
      assert.ok(groups.length >= 2, `round ${round} splits the stage (got ${groups.length} group)`)
      assert.equal(groups.flat().length, 16, 'every member is in exactly one group')
      sizes.push(...groups.map(g => g.length))
      averageIn(groups, values)
    }
    const end = spread(values)
    assert.ok(Math.abs(end.mean - start.mean) < 1e-9, 'the global mean is kept')
    assert.ok(end.maxDev < start.maxDev * 1e-4, `members converge: max deviation ${start.maxDev} -> ${end.maxDev}`)
    const meanSize = sizes.reduce((a, b) => a + b, 0) / sizes.length
    assert.ok(meanSize >= 2.5 && meanSize <= 8, `groups average ${meanSize} members`)
  })

  it('without mixing (the same groups every round) members do not converge', () => {
    const grid = moshpitGrid(16, 4)
    const rand = prng(7)
    const values = new Map(peers.map(p => [p, rand() * 100]))
    const start = spread(values)
    for (let round = 0; round < 12; round++) averageIn(moshpitGroups(peers, 0, grid), values)
    assert.ok(spread(values).maxDev > start.maxDev * 1e-2, 'fixed groups stay apart: the mixing is what converges')
  })

  it('caps a group deterministically, and cuts shards contiguously', () => {
    const capped = selectGroup(peers, 5, 3)
    assert.equal(capped.length, 5)
    assert.deepEqual(capped, [...capped].sort())
    assert.deepEqual(selectGroup([...peers].reverse(), 5, 3), capped, 'the same set gives the same subset in any order')
    assert.notEqual(groupDigest(capped), groupDigest(capped.slice(1)))
    assert.deepEqual(shardRanges(10, 4), [[0, 3], [3, 6], [6, 8], [8, 10]])
    assert.deepEqual(shardRanges(2, 3), [[0, 1], [1, 2], [2, 2]])
  })
})
