// The codecs' WASM SIMD path (plugins/compression/kernels.ts, wasm/codecs.wat) must write the same
// bytes as the JS path and decode to the same floats, on every compliance data case and at lengths
// that exercise the vector tails and chunk edges; corrupted and non-finite input must raise the same
// errors. The embedded module must be the assembly of the .wat.
import assert from 'node:assert/strict'
import { CODEC_DATA_CASES, activationLike } from '../core/testing/codec-data.ts'
import { rng } from '../core/testing/gradcheck.ts'
import type { Codec } from '../core/contracts/codec.ts'
import { bf16Codec, fp16Codec, int8BlockCodec, topkCodec } from '../plugins/compression/index.ts'
import { assembleCodecsWat, codecKernels, kernelsFor, loadKernels } from '../plugins/compression/kernels.ts'
import { CODECS_WASM_BASE64 } from '../plugins/compression/codecs-wasm-bin.ts'

type Opts = { path?: 'auto' | 'js' }
const PAIRS: Array<[string, (o: Opts) => Codec]> = [
  ['int8-block', o => int8BlockCodec(o)],
  ['int8-block (block 7)', o => int8BlockCodec({ blockSize: 7, ...o })],
  ['int8-block (block 1)', o => int8BlockCodec({ blockSize: 1, ...o })],
  ['int8-block (block 20000, over a chunk)', o => int8BlockCodec({ blockSize: 20000, ...o })],
  ['fp16', o => fp16Codec(o)],
  ['bf16', o => bf16Codec(o)],
  ['topk', o => topkCodec(o)],
  ['topk (fraction 0.1)', o => topkCodec({ fraction: 0.1, ...o })],
  ['topk.int8-block', o => topkCodec({ ...o, values: int8BlockCodec(o) })]
]
// Vector tails (mod 8 and 16), block edges, the 16384-element chunk edge (more chunks and 4-byte
// top-k indices: the large tensor below).
const LENGTHS = [1, 2, 7, 8, 15, 17, 63, 65, 1001, 16385]

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
const floatBytes = (x: Float32Array): Uint8Array => new Uint8Array(x.buffer, x.byteOffset, x.byteLength)
const errorOf = (f: () => unknown): string => {
  try { f() } catch (err) { return `${(err as Error).constructor.name}: ${(err as Error).message}` }
  return 'no error'
}

describe('codecs: the WASM SIMD path', function () {
  this.timeout(60000)

  it('is available here (Node 20 has WebAssembly SIMD), and the embedded module is the assembly of codecs.wat', async function () {
    assert.notEqual(codecKernels(), null)
    const bytes = Buffer.from(await assembleCodecsWat())
    assert.ok(bytes.equals(Buffer.from(CODECS_WASM_BASE64, 'base64')),
      'codecs-wasm-bin.ts is stale: run `node --import tsx plugins/compression/kernels.ts --emit`')
    assert.equal(kernelsFor('js'), null)
    assert.throws(() => kernelsFor('gpu' as 'js'), RangeError)
  })

  it('is null where WebAssembly is missing or its SIMD does not compile (the codecs then run the JS path)', function () {
    assert.equal(loadKernels(null), null)
    const noSimd = { Module: class { constructor () { throw new Error('CompileError: invalid opcode 0xfd') } }, Instance: class {} }
    assert.equal(loadKernels(noSimd as never), null)
  })

  for (const [name, make] of PAIRS) {
    it(`${name}: same bytes and same decoded floats as the JS path on every data case and length`, function () {
      const simd = make({})
      const js = make({ path: 'js' })
      for (const n of LENGTHS) {
        for (const c of CODEC_DATA_CASES) {
          const x = c.make(n, rng(n * 31 + 7))
          const shape = n % 7 === 0 ? [7, n / 7] : [n]
          const a = simd.encode(x, shape, 'activation')
          const b = js.encode(x, shape, 'activation')
          assert.ok(same(a, b), `${name}, ${c.name}, n = ${n}: encoded bytes differ`)
          assert.ok(same(floatBytes(simd.decode(a).data), floatBytes(js.decode(b).data)), `${name}, ${c.name}, n = ${n}: decoded floats differ`)
        }
      }
    })
  }

  it('same bytes on a large activation-like tensor (many chunks) and on ties in rounding', function () {
    const big = activationLike(4 * 16384 + 123, 9, 1024)
    // Ties: x * 127 / absmax lands on k + 0.5 exactly (half-up in int8); x on fp16/bf16 midpoints.
    const ties = new Float32Array(4096)
    for (let i = 0; i < ties.length; i++) ties[i] = i % 64 === 0 ? 127 : ((i % 255) - 127) + 0.5 * (i % 2 === 0 ? 1 : -1)
    const mids = new Float32Array(4096)
    for (let i = 0; i < mids.length; i++) mids[i] = (1 + (2 * (i % 1024) + 1) * 2 ** -11) * (i % 3 === 0 ? -1 : 1) * 2 ** (i % 20 - 10)
    for (const [name, make] of PAIRS) {
      for (const x of [big, ties, mids]) {
        const a = make({}).encode(x, [x.length], 'activation')
        assert.ok(same(a, make({ path: 'js' }).encode(x, [x.length], 'activation')), `${name}: bytes differ (n = ${x.length})`)
      }
    }
  })

  it('NaN/Inf in the input: the same NonFiniteError as the JS path, at any position', function () {
    for (const [name, make] of PAIRS) {
      for (const at of [0, 5, 16383, 16384, 30000]) {
        for (const v of [NaN, Infinity, -Infinity]) {
          const x = activationLike(40000, at + 1, 1000)
          x[at] = v
          x[at + 7000] = NaN // a later one must not be the one reported
          const e = errorOf(() => make({}).encode(x, [x.length], 'activation'))
          assert.match(e, /^NonFiniteError/, `${name}: ${e}`)
          assert.equal(e, errorOf(() => make({ path: 'js' }).encode(x, [x.length], 'activation')), name)
        }
      }
    }
  })

  it('corrupted payloads: the same CodecError as the JS path', function () {
    const x = activationLike(40000, 3, 1000)
    for (const [name, make] of PAIRS) {
      const good = make({ path: 'js' }).encode(x, [x.length], 'activation')
      const h = good.length - (name.startsWith('int8') ? 40000 : name === 'fp16' || name === 'bf16' ? 80000 : 0)
      if (h === good.length) continue // top-k's corruption cases are in codec-topk.test.ts
      for (const flip of [[h + 20000, 0x80], [h + 39999, 0x80], [h + 1, 0x7f], [h + 2 * 39999 + 1, 0x7f], [h + 3, 0xff]]) {
        const bad = good.slice()
        bad[flip[0]] = flip[1]
        assert.equal(errorOf(() => make({}).decode(bad)), errorOf(() => make({ path: 'js' }).decode(bad)), `${name}: byte ${flip[0]} = ${flip[1]}`)
      }
    }
    // int8: a NaN and a negative block scale
    const c = int8BlockCodec()
    const enc = c.encode(x, [x.length], 'activation')
    for (const s of [NaN, -1, Infinity]) {
      const bad = enc.slice()
      new DataView(bad.buffer).setFloat32(enc.length - 40000 - 4 * 10, s, true)
      const e = errorOf(() => c.decode(bad))
      assert.match(e, /^CodecError: int8-block: block 615 has absmax/)
      assert.equal(e, errorOf(() => int8BlockCodec({ path: 'js' }).decode(bad)))
    }
  })
})
