// The honest-only swarm under checks (issue 13): no cheater; stage 1 served by a CPU node and a
// WebGPU node (Mesa lavapipe here), stage 2 on WebGPU, stage 0 and the validator on CPU, so WebGPU
// hops are recomputed on the CPU backend (core/testing/byzantine-swarm.ts). The validator checks at a
// raised rate through the run and a while after it: checks pass, nobody is convicted, no accusation
// is made, no peer penalised.
import assert from 'node:assert/strict'
import { runByzantineSwarm } from '../core/testing/byzantine-swarm.ts'
import { probeWebGpu, skipOrFail } from './backend-webgpu-helpers.ts'

describe('verify: an honest swarm of CPU and WebGPU nodes under checks', function () {
  this.timeout(300_000)

  it('the validator checks for a while: zero convictions, zero accusations', async function () {
    const probe = await probeWebGpu()
    if (probe.missing != null) { skipOrFail(this, probe.missing); return }
    const r = await runByzantineSwarm({
      attack: 'none', steps: 40, checkInterval: 250, checksPerInterval: 2, checkAfterMs: 5000, timeoutMs: 280_000,
      backends: { s1b: 'webgpu', s2: 'webgpu' }
    })
    const v = r.validator as { checks: number, passed: number, failed: number, withheld: number, accusations: number }
    const show = JSON.stringify({ ...r, validator: { ...v, peers: undefined } })
    assert.ok(v.checks >= 5, `the validator checked a while: ${show}`)
    assert.ok(v.passed >= 5, `checks passed: ${show}`)
    assert.equal(v.failed + v.withheld, 0, `no check failed: ${show}`)
    assert.equal(v.accusations, 0, show)
    assert.equal(r.falseConvictions, 0, show)
    assert.equal(r.falseAccusations, 0, show)
    for (const [node, p] of Object.entries(r.penalties)) assert.equal(p.total, 0, `${node} penalised nobody: ${show}`)
    assert.equal(r.steps, 40)
    assert.ok(r.evalLoss != null && Number.isFinite(r.evalLoss))
  })
})
