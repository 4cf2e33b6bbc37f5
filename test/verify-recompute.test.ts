// The recompute check (core/verify/recompute.ts) on real hops of a tiny 3-stage model: honest hops
// pass when recomputed on CPU with 1 or 2 threads, on WebGPU (where an adapter exists) and through the
// fp16 and int8-block codecs; issue 13's attacks (random, x10, sign flip, lazy) fail conclusively for
// forward and backward hops; a reveal that does not match its commitment (params, inputs, output,
// another producer's signature) fails as a mismatch, never as evidence; malformed committed bytes convict.
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../core/contracts/index.ts'
import { verifyCommitment } from '../core/verify/commitment.ts'
import { hopInputHash } from '../core/verify/hop-records.ts'
import { recomputeHop, revealMismatch, type RecomputeResult } from '../core/verify/recompute.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'
import { cheat, producer, resign, runHops, verifyManifest, type Attack, type HopSet } from './verify-helpers.ts'
import { probeWebGpu } from './backend-webgpu-helpers.ts'

const HOPS = ['forward:0', 'forward:1', 'backward:1', 'backward:2'] as const

function passed (r: RecomputeResult, what: string): void {
  assert.ok(r.ok, `${what}: ${r.ok ? '' : `${r.reason} ${r.detail}`}`)
}

describe('verify: the recompute check', function () {
  this.timeout(120_000)
  let cpu1: ComputeBackend
  let cpu2: ComputeBackend
  let raw: HopSet
  let rawOther: HopSet

  before(async () => {
    cpu1 = await createCpuBackend({ threads: 1 })
    cpu2 = await createCpuBackend({ threads: 2 })
    const manifest = verifyManifest(3)
    raw = await runHops(manifest, cpu1)
    rawOther = await runHops(manifest, cpu1, { seed: 2, microbatchId: 2n, producers: raw.producers })
  })

  after(async () => {
    await cpu1?.dispose()
    await cpu2?.dispose()
  })

  it('passes every honest hop recomputed on CPU with 1 and 2 threads (bit-identical)', async () => {
    for (const be of [cpu1, cpu2]) {
      for (const k of HOPS) {
        const r = await recomputeHop(raw.hops.get(k)!, { manifest: raw.manifest, backend: be, codecs: raw.codecs })
        passed(r, k)
        assert.equal(r.ok && r.diff.relL2, 0, `${k}: CPU recomputation is bit-identical`)
      }
    }
  })

  for (const codec of ['fp16', 'int8-block']) {
    it(`passes honest hops sent through the ${codec} codec`, async () => {
      const set = await runHops(verifyManifest(3, codec), cpu1)
      for (const k of HOPS) passed(await recomputeHop(set.hops.get(k)!, { manifest: set.manifest, backend: cpu2, codecs: set.codecs }), `${codec} ${k}`)
    })
  }

  it('passes honest CPU hops recomputed on WebGPU (where an adapter exists)', async function () {
    const probe = await probeWebGpu()
    if (probe.missing != null) { console.log(`      (skipped: ${probe.missing})`); this.skip() }
    const { createWebGpuBackend } = await import('../plugins/backend-webgpu/index.ts')
    const gpu = await createWebGpuBackend({ allowSoftwareGpu: true })
    try {
      for (const k of HOPS) {
        const r = await recomputeHop(raw.hops.get(k)!, { manifest: raw.manifest, backend: gpu, codecs: raw.codecs })
        passed(r, `webgpu ${k}`)
      }
    } finally {
      await gpu.dispose()
    }
  })

  for (const attack of ['random', 'scaled', 'signflip', 'lazy'] as Attack[]) {
    it(`catches ${attack} outputs of forward and backward hops, conclusively`, async () => {
      for (const k of HOPS) {
        const stage = Number(k.split(':')[1])
        const bad = await cheat(raw, raw.hops.get(k)!, attack, raw.producers[stage], rawOther.hops.get(k))
        const r = await recomputeHop(bad, { manifest: raw.manifest, backend: cpu1, codecs: raw.codecs })
        assert.equal(r.ok, false, `${attack} ${k} passed`)
        if (r.ok) continue
        assert.equal(r.reason, 'output-mismatch', `${attack} ${k}: ${r.detail}`)
        assert.equal(r.conclusive, true)
        assert.ok(r.diff != null && r.diff.relL2 > 0.5, `${attack} ${k}: relL2 ${r.diff?.relL2}`)
      }
    })
  }

  it('catches attacks through the int8-block codec too', async () => {
    const set = await runHops(verifyManifest(3, 'int8-block'), cpu1)
    for (const attack of ['random', 'scaled', 'signflip'] as Attack[]) {
      const bad = await cheat(set, set.hops.get('backward:1')!, attack, set.producers[1])
      const r = await recomputeHop(bad, { manifest: set.manifest, backend: cpu1, codecs: set.codecs })
      assert.ok(!r.ok && r.reason === 'output-mismatch' && r.conclusive, `${attack}: ${JSON.stringify(r.ok ? r.diff : r.reason)}`)
    }
  })

  it('a reveal that does not match its commitment is a mismatch of the reveal, not evidence', async () => {
    const ctx = { manifest: raw.manifest, backend: cpu1, codecs: raw.codecs }
    const hop = raw.hops.get('forward:1')!
    const other = raw.hops.get('forward:0')!
    const params = new Map(hop.params)
    const [name, w] = [...params][0]
    params.set(name, w.map((v, i) => i === 0 ? v + 1e-3 : v))
    const cases: Array<[string, typeof hop, string]> = [
      ['params changed by one value', { ...hop, params }, 'params-hash'],
      ['params of another stage', { ...hop, params: other.params }, 'params-hash'],
      ['inputs of another hop', { ...hop, record: { ...hop.record, inputs: rawOther.hops.get('forward:1')!.record.inputs } }, 'input-hash'],
      ['output of another hop (unsigned)', { ...hop, record: { ...hop.record, output: rawOther.hops.get('forward:1')!.record.output } }, 'output-hash'],
      ['another hop\'s commitment', { ...hop, record: { ...hop.record, commitment: other.record.commitment } }, 'record'],
      ['a tampered signature', { ...hop, record: { ...hop.record, commitment: hop.record.commitment.map((b, i, a) => i === a.length - 1 ? b ^ 1 : b) } }, 'record']
    ]
    for (const [what, h, reason] of cases) {
      const r = await recomputeHop(h, ctx)
      assert.ok(!r.ok, what)
      if (r.ok) continue
      assert.equal(r.reason, reason, `${what}: ${r.detail}`)
      assert.ok(revealMismatch(r.reason) && !r.conclusive, what)
    }
    // the commitment the checker sampled must be the record's: another hop's, or the same hop
    // re-signed by another key (it verifies, but names another producer), is a mismatch
    const { commitment: sampled } = await verifyCommitment(hop.record.commitment)
    const { commitment: otherC } = await verifyCommitment(other.record.commitment)
    const r = await recomputeHop(hop, ctx, { expected: otherC })
    assert.ok(!r.ok && r.reason === 'record')
    const forged = await resign(hop.record, await producer())
    const r2 = await recomputeHop({ ...hop, record: forged }, ctx, { expected: sampled })
    assert.ok(!r2.ok && r2.reason === 'record')
    passed(await recomputeHop({ ...hop, record: forged }, ctx), 'a consistent re-signed record is its signer\'s claim')
  })

  it('committed bytes no honest peer sends convict: undecodable output, ids out of range', async () => {
    const ctx = { manifest: raw.manifest, backend: cpu1, codecs: raw.codecs }
    const hop = raw.hops.get('forward:1')!
    const short = { ...hop.record, output: { ...hop.record.output, bytes: hop.record.output.bytes.slice(0, 100) } }
    const r = await recomputeHop({ ...hop, record: await resign(short, raw.producers[1]) }, ctx)
    assert.ok(!r.ok && r.reason === 'malformed' && r.conclusive, r.ok ? '' : r.detail)
    const h0 = raw.hops.get('forward:0')!
    const tokens = h0.record.inputs[0].bytes.slice()
    new DataView(tokens.buffer).setInt32(0, 10_000, true)
    const rec = await resign({ ...h0.record, inputs: [{ ...h0.record.inputs[0], bytes: tokens }] }, raw.producers[0], { inputHash: hopInputHash([tokens]) })
    const r0 = await recomputeHop({ ...h0, record: rec }, ctx)
    assert.ok(!r0.ok && r0.reason === 'malformed' && r0.conclusive, r0.ok ? '' : r0.detail)
  })
})
