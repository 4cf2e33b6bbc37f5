// The ledger-to-weights mapping (core/chain/weights.ts), the ledger's copied-work rule and the
// commit-reveal hash: pure, no chain. Includes the field's pitfalls: a sign error that raised a
// cheater's weight (a property over random ledgers), one peer copying another's work, a convicted
// peer with the most tokens, a peer with no binding, u16 rounding to 0.
import assert from 'node:assert/strict'
import { rng } from '../core/testing/gradcheck.ts'
import { compactToU8a, u8aConcat } from '@polkadot/util'
import { blake2AsU8a, decodeAddress } from '@polkadot/util-crypto'
import { WeightsInvariantError } from '../core/chain/errors.ts'
import type { Metagraph, Neuron } from '../core/chain/types.ts'
import { commitHash, randomSalt } from '../core/chain/weights-commit.ts'
import { U16_MAX, layerStageCost, ledgerToWeights, toU16, uniformStageCost, type WeightsInput } from '../core/chain/weights.ts'
import type { HopCommitment } from '../core/verify/commitment.ts'
import { WorkLedger, type LedgerStatus, type PeerLedger } from '../core/verify/work-ledger.ts'

interface PeerSpec { tokens?: Record<number, { forward?: number, backward?: number }>, passed?: number, failed?: number, withheld?: number, copies?: number, convicted?: boolean }

function peerLedger (s: PeerSpec): PeerLedger {
  const work: PeerLedger['work'] = {}
  for (const [stage, t] of Object.entries(s.tokens ?? {})) {
    work[stage] = {}
    if (t.forward != null) work[stage].forward = { microbatches: 1, tokens: t.forward }
    if (t.backward != null) work[stage].backward = { microbatches: 1, tokens: t.backward }
  }
  const o = (passed = 0, failed = 0, withheld = 0): { passed: number, failed: number, withheld: number } => ({ passed, failed, withheld })
  return { work, checks: { own: o(s.passed, s.failed, s.withheld), accusation: o() }, accusations: { upheld: 0, false: 0 }, copies: s.copies ?? 0, convicted: s.convicted ?? false, last: 0 }
}

function ledger (peers: Record<string, PeerSpec>): LedgerStatus {
  const out: Record<string, PeerLedger> = {}
  for (const [id, s] of Object.entries(peers)) out[id] = peerLedger(s)
  return { peers: out, totals: { microbatches: 0, tokens: 0, checks: { passed: 0, failed: 0, withheld: 0 }, copies: 0, convicted: 0 } }
}

function neuron (uid: number, hotkey: string): Neuron {
  return { uid, hotkey, coldkey: 'c', stake: 0n, trust: 0, incentive: 0, dividends: 0, emission: 0n, validatorPermit: false, lastUpdate: 0, axon: null }
}

/** Peer `pN` bound to hotkey `hN` at uid N (N = 0..count-1); `val` is the validator at uid `count`. */
function world (count: number): { metagraph: Metagraph, hotkeyOf: (p: string) => string | undefined } {
  const neurons = Array.from({ length: count }, (_, i) => neuron(i, `h${i}`)).concat([neuron(count, 'val')])
  return { metagraph: { netuid: 1, block: 100, neurons }, hotkeyOf: p => /^p\d+$/.test(p) ? `h${p.slice(1)}` : undefined }
}

function weigh (peers: Record<string, PeerSpec>, extra: Partial<WeightsInput> = {}): ReturnType<typeof ledgerToWeights> {
  const w = world(8)
  return ledgerToWeights({ ledger: ledger(peers), hotkeyOf: w.hotkeyOf, metagraph: w.metagraph, stageCost: uniformStageCost, selfHotkey: 'val', ...extra })
}

function weightOf (r: ReturnType<typeof ledgerToWeights>, uid: number): number {
  const i = r.uids.indexOf(uid)
  return i < 0 ? 0 : r.weights[i]
}

function shareOf (r: ReturnType<typeof ledgerToWeights>, uid: number): number {
  const sum = r.weights.reduce((a, b) => a + b, 0)
  return sum === 0 ? 0 : weightOf(r, uid) / sum
}

describe('chain weights: the ledger-to-weights mapping', () => {
  it('the honest fast miner ranks above the honest slow miner; uids ascending, the largest weight 65535', () => {
    const r = weigh({ p3: { tokens: { 0: { forward: 1000, backward: 1000 } }, passed: 3 }, p1: { tokens: { 0: { forward: 2000, backward: 2000 } }, passed: 3 } })
    assert.deepEqual(r.uids, [1, 3])
    assert.equal(weightOf(r, 1), U16_MAX)
    assert.ok(weightOf(r, 3) < weightOf(r, 1) && weightOf(r, 3) > 0)
    assert.equal(weightOf(r, 3), Math.round(U16_MAX / 2))
    assert.match(r.byHotkey.find(h => h.uid === 1)?.explain ?? '', /weight 65535/)
  })

  it('a convicted peer with the most tokens gets 0 (and so does every peer bound to its hotkey)', () => {
    const w = world(8)
    const r = ledgerToWeights({
      ledger: ledger({ p0: { tokens: { 0: { forward: 1e9 } }, passed: 50, convicted: true }, p0b: { tokens: { 0: { forward: 10 } } }, p1: { tokens: { 0: { forward: 100 } } } }),
      hotkeyOf: p => p === 'p0b' ? 'h0' : w.hotkeyOf(p), metagraph: w.metagraph, stageCost: uniformStageCost
    })
    assert.deepEqual(r.uids, [1])
    const h0 = r.byHotkey.find(h => h.hotkey === 'h0')
    assert.equal(h0?.zeroed, 'convicted')
    assert.equal(h0?.weight, 0)
    assert.match(h0?.explain ?? '', /convicted/)
  })

  it('more failed, withheld or copied hops never raise a peer\'s weight or share (property over random ledgers)', () => {
    const next = rng(14)
    const int = (n: number): number => Math.floor(next() * n)
    for (let trial = 0; trial < 300; trial++) {
      const peers: Record<string, PeerSpec> = {}
      const n = 1 + int(6)
      for (let i = 0; i < n; i++) {
        peers[`p${i}`] = {
          tokens: { [int(3)]: { forward: int(5000), backward: next() < 0.5 ? int(5000) : undefined } },
          passed: int(6), failed: int(3), withheld: int(2), copies: int(2), convicted: next() < 0.1
        }
      }
      const limit = next() < 0.3 ? 20000 + int(40000) : undefined
      const before = weigh(peers, { maxWeightLimit: limit })
      const target = `p${int(n)}`
      const field = (['failed', 'withheld', 'copies'] as const)[int(3)]
      const worse = structuredClone(peers)
      worse[target][field] = (worse[target][field] ?? 0) + 1 + int(5)
      const after = weigh(worse, { maxWeightLimit: limit })
      const uid = Number(target.slice(1))
      assert.ok(weightOf(after, uid) <= weightOf(before, uid), `trial ${trial}: ${field} raised ${target}'s weight ${weightOf(before, uid)} -> ${weightOf(after, uid)}`)
      assert.ok(shareOf(after, uid) <= shareOf(before, uid) + 1e-12, `trial ${trial}: ${field} raised ${target}'s share`)
      // and a conviction always takes it to 0
      worse[target].convicted = true
      assert.equal(weightOf(weigh(worse, { maxWeightLimit: limit }), uid), 0)
    }
  })

  it('one peer copying another\'s work: the ledger gives the copy no work, counts it, and the weights pay the copier less', async () => {
    const l = new WorkLedger()
    const c = (producer: string, microbatchId: bigint, outputHash: string): HopCommitment => ({
      runId: '0'.repeat(32), stage: 1, microbatchId, kind: 'forward', step: 0, inputHash: 'a'.repeat(64), outputHash, paramsDigest: 'b'.repeat(64), codecId: 0, producer, time: 0
    })
    assert.equal(l.receipt(c('p1', 1n, 'c'.repeat(64)), 64), true)
    assert.equal(l.receipt(c('p2', 1n, 'c'.repeat(64)), 64), false, 'the same output signed by another producer earns nothing')
    assert.equal(l.receipt(c('p2', 1n, 'c'.repeat(64)), 64), false, 'and counts once')
    assert.equal(l.receipt(c('p2', 2n, 'd'.repeat(64)), 64), true, 'its own work still counts')
    assert.equal(l.receipt(c('p1', 3n, 'c'.repeat(64)), 64), true, 'the first producer repeating its own output is not a copy')
    const s = l.status()
    assert.equal(s.peers.p2.copies, 1)
    assert.equal(s.peers.p1.copies, 0)
    assert.equal(s.peers.p2.work[1].forward?.tokens, 64)
    assert.equal(s.peers.p1.work[1].forward?.tokens, 128)
    assert.equal(s.totals.copies, 1)
    const w = world(4)
    const r = ledgerToWeights({ ledger: s, hotkeyOf: w.hotkeyOf, metagraph: w.metagraph, stageCost: uniformStageCost })
    const p1 = r.byHotkey.find(h => h.uid === 1)?.peers[0]
    const p2 = r.byHotkey.find(h => h.uid === 2)?.peers[0]
    assert.ok(p2 != null && p1 != null && p2.reliability < p1.reliability, 'a copy lowers reliability')
    // a pure copier (no work of its own) gets nothing
    const only = weigh({ p1: { tokens: { 1: { forward: 64 } } }, p2: { copies: 5 } })
    assert.deepEqual(only.uids, [1])
  })

  it('empty ledger: no weights', () => {
    const r = weigh({})
    assert.deepEqual([r.uids, r.weights, r.byHotkey, r.unmapped], [[], [], [], []])
    assert.deepEqual(weigh({ p1: {}, p2: { passed: 4 } }).uids, [], 'peers with no verified work earn nothing')
  })

  it('a peer without a verified binding, or bound to an unregistered hotkey, gets nothing; self is never weighted', () => {
    const w = world(3)
    const r = ledgerToWeights({
      ledger: ledger({ p1: { tokens: { 0: { forward: 100 } } }, liar: { tokens: { 0: { forward: 1e6 } } }, ghost: { tokens: { 0: { forward: 1e6 } } }, me: { tokens: { 0: { forward: 1e6 } } } }),
      hotkeyOf: p => p === 'ghost' ? 'hNotOnChain' : p === 'me' ? 'val' : w.hotkeyOf(p),
      metagraph: w.metagraph, stageCost: uniformStageCost, selfHotkey: 'val'
    })
    assert.deepEqual(r.uids, [1])
    assert.deepEqual(r.unmapped, ['liar'])
    assert.equal(r.byHotkey.find(h => h.hotkey === 'hNotOnChain')?.zeroed, 'not-registered')
    assert.equal(r.byHotkey.find(h => h.hotkey === 'val')?.zeroed, 'self')
  })

  it('peers sharing one hotkey are summed', () => {
    const w = world(3)
    const r = ledgerToWeights({
      ledger: ledger({ a: { tokens: { 0: { forward: 100 } } }, b: { tokens: { 1: { forward: 100 } } }, p2: { tokens: { 0: { forward: 100 } } } }),
      hotkeyOf: p => p === 'a' || p === 'b' ? 'h1' : w.hotkeyOf(p), metagraph: w.metagraph, stageCost: uniformStageCost
    })
    assert.deepEqual(r.uids, [1, 2])
    assert.deepEqual(r.weights, [U16_MAX, Math.round(U16_MAX / 2)])
    assert.equal(r.byHotkey[0].peers.length, 2)
  })

  it('u16 rounding never gives a positive score weight 0', () => {
    const r = weigh({ p1: { tokens: { 0: { forward: 1e12 } } }, p2: { tokens: { 0: { forward: 1 } } } })
    assert.deepEqual(r.weights, [U16_MAX, 1])
  })

  it('stage cost: backward twice forward, layers per stage; unchecked work earns the prior', () => {
    const r = weigh({ p1: { tokens: { 0: { forward: 100 } } }, p2: { tokens: { 0: { backward: 100 } } } })
    assert.deepEqual(r.weights, [Math.round(U16_MAX / 2), U16_MAX])
    assert.equal(r.byHotkey[0].peers[0].reliability, 0.5)
    const cost = layerStageCost([1, 3])
    assert.deepEqual([cost(0, 'forward'), cost(1, 'forward'), cost(1, 'backward'), cost(7, 'forward')], [1, 3, 6, 0])
    const byLayers = weigh({ p1: { tokens: { 0: { forward: 100 } } }, p2: { tokens: { 1: { forward: 100 } } } }, { stageCost: cost })
    assert.deepEqual(byLayers.weights, [Math.round(U16_MAX / 3), U16_MAX])
  })

  it('maxWeightLimit: no share above limit/65535 of the sum where that is possible; flagged where not', () => {
    const limit = 26214 // 40%
    const r = weigh({ p1: { tokens: { 0: { forward: 1000 } } }, p2: { tokens: { 0: { forward: 10 } } }, p3: { tokens: { 0: { forward: 10 } } }, p4: { tokens: { 0: { forward: 5 } } } }, { maxWeightLimit: limit })
    const sum = r.weights.reduce((a, b) => a + b, 0)
    assert.ok(Math.max(...r.weights) * U16_MAX <= limit * sum, `max share ${Math.max(...r.weights) / sum}`)
    assert.equal(r.maxWeightLimitMet, true)
    assert.ok(weightOf(r, 2) > weightOf(r, 4), 'the order below the cap is kept')
    const two = weigh({ p1: { tokens: { 0: { forward: 1000 } } }, p2: { tokens: { 0: { forward: 10 } } } }, { maxWeightLimit: limit })
    assert.equal(two.maxWeightLimitMet, false, 'two uids cannot stay under 40% each')
    for (let n = 1; n < 60; n++) {
      const { values, met } = toU16(Array.from({ length: n }, (_, i) => 1 + i * i), 5000)
      const s = values.reduce((a, b) => a + b, 0)
      assert.equal(met, n * 5000 >= U16_MAX, `n ${n}`)
      if (met) assert.ok(Math.max(...values) * U16_MAX <= 5000 * s, `n ${n}`)
    }
  })

  it('a NaN or negative intermediate throws WeightsInvariantError (a bug, never a weight)', () => {
    assert.throws(() => weigh({ p1: { tokens: { 0: { forward: 10 } } } }, { stageCost: () => NaN }), WeightsInvariantError)
    assert.throws(() => weigh({ p1: { tokens: { 0: { forward: 10 } } } }, { stageCost: () => -1 }), WeightsInvariantError)
    assert.throws(() => weigh({ p1: { tokens: { 0: { forward: -10 } } } }), WeightsInvariantError)
    assert.throws(() => weigh({ p1: { tokens: { 0: { forward: 10 } }, failed: -3 } }), WeightsInvariantError)
    assert.throws(() => layerStageCost([1, Infinity]), WeightsInvariantError)
  })
})

describe('chain weights: the commit-reveal hash', () => {
  const base = { hotkey: '5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY', netuid: 1, uids: [0, 2], weights: [65535, 100], salt: [1, 2, 3], versionKey: 7n }

  it('is BlakeTwo256 of the SCALE tuple (who, netuid, uids, values, salt, version_key)', () => {
    const u16 = (x: number): Uint8Array => new Uint8Array([x & 0xff, x >> 8])
    const vec = (xs: number[]): Uint8Array => u8aConcat(compactToU8a(xs.length), ...xs.map(u16))
    const u64 = new Uint8Array(8)
    new DataView(u64.buffer).setBigUint64(0, base.versionKey, true)
    const manual = u8aConcat(decodeAddress(base.hotkey), u16(base.netuid), vec(base.uids), vec(base.weights), vec(base.salt), u64)
    assert.deepEqual(commitHash(base), blake2AsU8a(manual, 256))
    assert.equal(commitHash(base).length, 32)
  })

  it('changes with every field', () => {
    const h = Buffer.from(commitHash(base)).toString('hex')
    const variants = [
      { hotkey: '5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty' }, { netuid: 2 }, { uids: [0, 3] }, { weights: [65535, 101] },
      { salt: [1, 2, 4] }, { versionKey: 8n }
    ]
    const seen = new Set([h])
    for (const v of variants) seen.add(Buffer.from(commitHash({ ...base, ...v })).toString('hex'))
    assert.equal(seen.size, variants.length + 1)
    assert.throws(() => commitHash({ ...base, weights: [70000, 1] }), RangeError)
    assert.throws(() => commitHash({ ...base, weights: [1] }), RangeError)
  })

  it('randomSalt: u16s of the asked length, not all alike', () => {
    const s = randomSalt()
    assert.equal(s.length, 8)
    assert.ok(s.every(x => Number.isInteger(x) && x >= 0 && x <= 0xffff))
    assert.notDeepEqual(randomSalt(16), randomSalt(16))
    assert.throws(() => randomSalt(0), RangeError)
  })
})
