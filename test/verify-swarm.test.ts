// Byzantine peers caught in a real swarm (issue 13, tests (a)-(g)): for each attack, one in-process
// swarm of real nodes on loopback (core/testing/byzantine-swarm.ts: 3 stages, stage 1 served by two
// honest nodes and the cheater, a validator node checking at a raised rate), a few dozen steps of the
// tiny model. Each cheater is caught by every honest node and excluded (convicted and out of the
// membership view; the poisoner left out of averaging and banned; the false accuser penalised), and
// no honest peer is ever convicted nor falsely accused.
import assert from 'node:assert/strict'
import { runByzantineSwarm, type ByzantineSwarmResult, type SwarmAttack } from '../core/testing/byzantine-swarm.ts'
import { parseTrainingOptions } from '../core/runtime/training-runtime.ts'

/** A raised check rate, so detection takes seconds (the bench measures the default rate). */
const SWARM = { steps: 40, checkInterval: 250, checksPerInterval: 2, detectTimeoutMs: 120_000, timeoutMs: 280_000 }

function show (r: ByzantineSwarmResult): string {
  return JSON.stringify({ ...r, validator: { ...r.validator, peers: undefined } })
}

function assertNoHonestHarmed (r: ByzantineSwarmResult): void {
  assert.equal(r.falseConvictions, 0, `no honest peer convicted: ${show(r)}`)
  assert.equal(r.falseAccusations, 0, `no accusation found false, besides the liar's: ${show(r)}`)
  const honest = new Set(r.honest)
  for (const [node, p] of Object.entries(r.penalties)) {
    if (node === 's1x' || node === 'liar') continue
    for (const peer of Object.keys(p.byPeer)) assert.ok(!honest.has(peer), `${node} penalised an honest peer: ${show(r)}`)
  }
  assert.ok(r.evalLoss != null && Number.isFinite(r.evalLoss), 'the run ended with a held-out loss')
}

describe('verify: byzantine peers in a real swarm (attacks a-g)', function () {
  this.timeout(300_000)

  it('start --check-interval / --checks-per-interval reach the options', () => {
    const o = parseTrainingOptions({ role: 'validator', checkInterval: '500', checksPerInterval: '3' })
    assert.equal(o.checkInterval, 500)
    assert.equal(o.checksPerInterval, 3)
    assert.throws(() => parseTrainingOptions({ checkInterval: '0' }), /--check-interval must be an integer >= 1/)
  })

  const adversaries: Array<[string, SwarmAttack]> = [
    ['(a) random activations', 'random'],
    ['(b) gradients scaled by 10', 'scaled'],
    ['(c) sign-flipped gradients', 'signflip'],
    ['(d) a lazy peer returning a cached output', 'lazy'],
    ['(f) a peer refusing to reveal', 'withhold']
  ]
  for (const [what, attack] of adversaries) {
    it(`${what}: convicted by every honest node and excluded`, async () => {
      const r = await runByzantineSwarm({ attack, ...SWARM })
      assert.ok(r.detected, `every honest node convicted the cheater: ${show(r)}`)
      assert.equal(r.caughtBy, r.honest.length)
      assert.ok(r.checks != null && r.checks >= 1)
      assert.equal(r.excludedBy, r.honest.length, `the cheater left every honest node's membership view: ${show(r)}`)
      for (const [node, p] of Object.entries(r.penalties)) if (node !== 's1x') assert.ok((p.byPeer[r.cheater as string] ?? 0) >= 1, `${node} penalised the cheater`)
      assertNoHonestHarmed(r)
    })
  }

  it('(e) a poisoned averaging contribution: left out of every round and banned', async () => {
    const r = await runByzantineSwarm({ attack: 'poison', ...SWARM, averagingPeriod: 5 })
    assert.ok(r.detected, `both honest stage-1 nodes excluded and penalised the poisoner: ${show(r)}`)
    for (const [i, avg] of r.averaging.entries()) {
      assert.ok(avg != null && Number(avg.rounds) >= 1 && Number(avg.excluded) >= 1, `honest stage-1 node ${i} averaged and excluded: ${show(r)}`)
      assert.ok((r.penalties[i === 0 ? 's1a' : 's1b'].byPeer[r.cheater as string] ?? 0) >= 1)
    }
    assertNoHonestHarmed(r)
  })

  it('(g) a false accuser: every node verifies the accusation, penalises the accuser, convicts nobody', async () => {
    const r = await runByzantineSwarm({ attack: 'false-accuser', ...SWARM })
    assert.ok(r.detected, `every honest node found the accusation false: ${show(r)}`)
    for (const [node, p] of Object.entries(r.penalties)) if (node !== 'liar') assert.ok((p.byPeer[r.cheater as string] ?? 0) >= 1, `${node} penalised the liar`)
    assertNoHonestHarmed(r)
  })
})
