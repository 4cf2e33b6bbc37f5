// Parameter digests (core/verify/params-digest.ts): the documented byte stream (checked against
// Node's own SHA-256), the same digest from a Map, a flat vector in layout order and a live Stage,
// independent of listing order, and different for any changed bit, shape, name or split.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { modelPreset } from '../core/model/config.ts'
import { initialValues, stageParamSpecs } from '../core/model/params.ts'
import { Stage } from '../core/model/stage.ts'
import { stageLayouts } from '../core/model/stage-split.ts'
import { ParamsLayoutError, flatParamsDigest, paramsDigest, paramsDigestAsync, stageParamsDigest } from '../core/verify/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'

const layout = stageLayouts(modelPreset('tiny'), 4)[1]
const specs = stageParamSpecs(layout)
const values = (): Map<string, Float32Array> => new Map(specs.map(s => [s.name, initialValues(s, 3)]))
const flat = (m: ReadonlyMap<string, Float32Array>): Float32Array => {
  const out = new Float32Array(specs.reduce((a, s) => a + (m.get(s.name) as Float32Array).length, 0))
  let o = 0
  for (const s of specs) { out.set(m.get(s.name) as Float32Array, o); o += (m.get(s.name) as Float32Array).length }
  return out
}

describe('verify: parameter digests', () => {
  it('hashes the documented stream: domain, count, then per tensor in name order name, shape and little-endian bits', () => {
    const a = Float32Array.of(1, -0)
    const b = Float32Array.of(0.5)
    const u32 = (n: number): Buffer => { const x = Buffer.alloc(4); x.writeUInt32LE(n); return x }
    const expected = createHash('sha256')
      .update('layerswarm/params/v1\0').update(u32(2))
      .update(u32(1)).update('a').update(u32(2)).update(u32(1)).update(u32(2)).update(Buffer.from(a.buffer))
      .update(u32(1)).update('b').update(u32(1)).update(u32(1)).update(Buffer.from(b.buffer))
      .digest('hex')
    // listed b first: the digest sorts by name
    assert.equal(paramsDigest(new Map([['b', b], ['a', a]]), [{ name: 'b', shape: [1] }, { name: 'a', shape: [1, 2] }]), expected)
  })

  it('a Map, the flat vector in layout order and a live Stage give one digest; listing order does not matter', async () => {
    const m = values()
    const d = paramsDigest(m, specs)
    assert.match(d, /^[0-9a-f]{64}$/)
    assert.equal(flatParamsDigest(flat(m), specs), d)
    assert.equal(await paramsDigestAsync(m, specs), d, 'the WebCrypto path gives the same digest')
    assert.equal(paramsDigest(new Map([...m].reverse()), [...specs].reverse()), d)
    const be = await createCpuBackend({ threads: 0 })
    const stage = new Stage(be, layout, { seed: 3 })
    try {
      assert.equal(await stageParamsDigest(stage.params), d)
    } finally {
      stage.dispose()
      await be.dispose()
    }
  })

  it('changes with one bit of one value, the sign of a zero, a shape, a name, or where one tensor ends', () => {
    const base = paramsDigest(values(), specs)
    const seen = new Set([base])
    const variant = (what: string, d: string): void => { assert.ok(!seen.has(d), `${what}: digest unchanged`); seen.add(d) }

    const m1 = values()
    const w = m1.get(specs[2].name) as Float32Array
    new Uint32Array(w.buffer, w.byteOffset, 1)[0] ^= 1 // lowest mantissa bit of one element
    variant('one bit', paramsDigest(m1, specs))

    const m2 = values()
    const zeros = specs.find(s => s.init.kind === 'zeros') as typeof specs[number]
    ;(m2.get(zeros.name) as Float32Array)[0] = -0
    variant('-0 for +0', paramsDigest(m2, specs))

    const [r, c] = specs[2].shape
    variant('transposed shape', paramsDigest(values(), specs.map((s, i) => i === 2 ? { ...s, shape: [c, r] } : s)))

    const renamed = specs.map((s, i) => i === 0 ? { ...s, name: s.name + 'x' } : s)
    const m3 = new Map([...values()].map(([n, v]) => [n === specs[0].name ? n + 'x' : n, v]))
    variant('renamed', paramsDigest(m3, renamed))

    // the same flat bytes cut at another boundary between two neighbouring tensors of one size each
    const two = [{ name: 'a', shape: [2] }, { name: 'b', shape: [2] }]
    const cut = [{ name: 'a', shape: [1] }, { name: 'b', shape: [3] }]
    const bytes = Float32Array.of(1, 2, 3, 4)
    assert.notEqual(flatParamsDigest(bytes, two), flatParamsDigest(bytes, cut))
  })

  it('a layout mismatch is a ParamsLayoutError: missing, extra, wrong size, duplicate name, flat length', () => {
    const m = values()
    const missing = new Map(m); missing.delete(specs[3].name)
    const extra = new Map(m); extra.set('h.9.attn.c_attn.weight', new Float32Array(1))
    const short = new Map(m); short.set(specs[0].name, new Float32Array(1))
    const cases: Array<[string, () => unknown]> = [
      ['missing', () => paramsDigest(missing, specs)],
      ['extra', () => paramsDigest(extra, specs)],
      ['wrong size', () => paramsDigest(short, specs)],
      ['duplicate', () => paramsDigest(m, [...specs, specs[0]])],
      ['flat too long', () => flatParamsDigest(new Float32Array(flat(m).length + 1), specs)],
      ['not a Float32Array', () => paramsDigest(new Map([['a', [1] as unknown as Float32Array]]), [{ name: 'a', shape: [1] }])]
    ]
    for (const [what, f] of cases) assert.throws(f, ParamsLayoutError, what)
  })

  it('the async form refuses the same layout mismatches', async () => {
    const extra = values(); extra.set('nope', new Float32Array(1))
    const missing = values(); missing.delete(specs[0].name)
    await assert.rejects(paramsDigestAsync(extra, specs), ParamsLayoutError)
    await assert.rejects(paramsDigestAsync(missing, specs), ParamsLayoutError)
  })
})
