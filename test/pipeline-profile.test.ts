// The profile accumulator (core/pipeline/pipeline-profile.ts) with a fake clock, and the codecs it times.
import assert from 'node:assert/strict'
import { PipelineProfile, PROFILE_CATEGORIES, profiledCodecs } from '../core/pipeline/pipeline-profile.ts'
import { boundaryCodecs } from '../core/codecs/tensor-codecs.ts'
import { NonFiniteError } from '../core/errors.ts'

describe('pipeline profile', () => {
  it('sums phases per category, per completed microbatch, and the busy share', async () => {
    let now = 1000
    const p = new PipelineProfile(() => now)
    const t0 = p.start()
    now += 30
    assert.equal(p.end('compute', t0), 30)
    await p.time('replyWait', async () => { now += 50 })
    p.timeSync('encode', () => { now += 2 })
    p.busyFor(30)
    p.completed()
    p.completed()
    const s = p.snapshot()
    assert.equal(s.microbatches, 2)
    assert.equal(s.seconds.compute, 0.03)
    assert.equal(s.perMicrobatchMs.compute, 15)
    assert.equal(s.perMicrobatchMs.replyWait, 25)
    assert.equal(s.perMicrobatchMs.encode, 1)
    assert.equal(s.wallSeconds, 0.082)
    assert.equal(s.busySeconds, 0.03)
    assert.deepEqual(Object.keys(s.seconds), [...PROFILE_CATEGORIES])
  })

  it('ignores negative and non-finite amounts, and reports 0 per microbatch before the first', () => {
    const p = new PipelineProfile(() => 0)
    p.add('copy', -5)
    p.add('copy', Number.NaN)
    p.add('copy', Infinity)
    p.busyFor(-1)
    const s = p.snapshot()
    assert.equal(s.seconds.copy, 0)
    assert.equal(s.perMicrobatchMs.copy, 0)
    assert.equal(s.wallSeconds, 0)
    assert.equal(s.busySeconds, 0)
  })

  it('times a phase that throws, and rethrows', async () => {
    let now = 0
    const p = new PipelineProfile(() => now)
    await assert.rejects(p.time('open', async () => { now += 7; throw new Error('boom') }), /boom/)
    assert.equal(p.snapshot().seconds.open, 0.007)
  })

  it('profiled codecs encode and decode as the adapter does, scan apart, and still refuse NaN', () => {
    const p = new PipelineProfile()
    const codecs = profiledCodecs(boundaryCodecs({ activation: 'none', 'activation-grad': 'none' }), p)
    const x = Float32Array.from({ length: 24 }, (_, i) => i / 7)
    const enc = codecs.encode('activation', x, [2, 3, 4])
    const frame = { header: { dtype: 'f32', codecId: enc.codecId, shape: [2, 3, 4] }, payload: enc.bytes } as never
    assert.deepEqual(Array.from(codecs.decode('activation', frame)), Array.from(x))
    assert.equal(codecs.name('activation'), 'none')
    x[5] = Number.NaN
    assert.throws(() => codecs.encode('activation', x, [2, 3, 4]), (e: Error) => e instanceof NonFiniteError && /outbound activation/.test(e.message))
    const s = p.snapshot()
    for (const c of ['encode', 'decode', 'finiteScan'] as const) assert.ok(s.seconds[c] >= 0)
  })
})
