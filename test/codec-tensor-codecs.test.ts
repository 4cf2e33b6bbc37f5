// The raw codec (core/codecs/raw.ts: wire id 0, `none` / `raw`, known to every CodecSet without a
// plugin) and the one tensor codecs adapter (core/codecs/tensor-codecs.ts) for boundary and
// averaging roles alike: the finite check on the way out and on the way in, the codec id per role,
// the dims and element count against the frame header.
import assert from 'node:assert/strict'
import type { Codec, TensorRole } from '../core/contracts/codec.ts'
import { CodecError, NonFiniteError, ShapeError } from '../core/errors.ts'
import { CodecConfigError, CodecNotAllowedError, CodecSet, UnknownCodecError } from '../core/codec-set.ts'
import { RAW_CODEC_NAMES, rawCodec } from '../core/codecs/raw.ts'
import { boundaryCodecs, shardCodecs, tensorCodecs } from '../core/codecs/tensor-codecs.ts'
import { encodeHeader, FrameDecoder, RAW_CODEC_ID, type Frame, type FrameKind, type WireDType } from '../core/wire/index.ts'
import { builtinCodecs, CodecIds, fp16Codec, int8BlockCodec } from '../plugins/compression/index.ts'

const sine = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 3)

/** A frame as a peer receives it (header + payload through the wire decoder). */
function frameOf (kind: FrameKind, codecId: number, shape: number[], payload: Uint8Array, dtype: WireDType = 'f32'): Frame {
  const header = encodeHeader({ kind, runId: '0'.repeat(32), microbatchId: 1n, stage: 1, codecId, dtype, shape }, payload)
  const bytes = new Uint8Array(header.byteLength + payload.byteLength)
  bytes.set(header)
  bytes.set(payload, header.byteLength)
  return new FrameDecoder().push(bytes)[0]
}

describe('codecs: the raw codec', function () {
  it('is wire id 0, named none (alias raw), lossless and shapeless', function () {
    assert.equal(rawCodec.id, RAW_CODEC_ID)
    assert.equal(rawCodec.name, 'none')
    assert.deepEqual([...RAW_CODEC_NAMES], ['none', 'raw'])
    assert.equal(rawCodec.errorBound.relMaxAbs, 0)
    assert.equal(rawCodec.shapeless, true)
    const x = sine(1001)
    const bytes = rawCodec.encode(x, [7, 143], 'activation')
    assert.equal(bytes.byteLength, 4 * x.length)
    const back = rawCodec.decode(bytes)
    assert.deepEqual(back.data, x)
    assert.deepEqual(back.shape, [1001], 'the frame header carries the dims')
  })

  it('encodes a copy, checks the shape, and refuses a payload that is not whole f32 elements', function () {
    const x = sine(16)
    const bytes = rawCodec.encode(x, [16], 'parameter')
    x[0] = 42
    assert.notEqual(rawCodec.decode(bytes).data[0], 42, 'later writes to the input do not reach the bytes')
    assert.throws(() => rawCodec.encode(x, [4, 5], 'activation'), ShapeError)
    assert.throws(() => rawCodec.decode(new Uint8Array(10)), (e: unknown) => e instanceof CodecError && e.code === 'ERR_CODEC')
    assert.equal(rawCodec.decode(new Uint8Array(0)).data.length, 0)
  })

  it('every CodecSet knows it, by id and by both names, without any plugin', function () {
    const empty = new CodecSet([], { activation: 'none', 'parameter-grad': 'raw' })
    assert.equal(empty.codecs.length, 0, 'codecs lists the registered ones')
    assert.equal(empty.byId(0), rawCodec)
    assert.equal(empty.byName('none'), rawCodec)
    assert.equal(empty.byName('raw'), rawCodec)
    assert.equal(empty.forRole('parameter-grad'), rawCodec)
    const set = new CodecSet(builtinCodecs(), { activation: 'raw' })
    assert.deepEqual(set.nameList(), ['none', 'raw', ...Object.keys(CodecIds)])
    // the raw codec listed again (a set built from another set's codecs) counts once
    assert.doesNotThrow(() => new CodecSet([rawCodec, ...set.codecs]))
    assert.throws(() => set.byId(999), (e: unknown) => e instanceof UnknownCodecError && /known: none#0, fp32#1/.test(e.message))
  })

  it('a plugin codec cannot take its id or its names', function () {
    assert.throws(() => new CodecSet([{ ...fp16Codec(), id: 0, name: 'half' }]), CodecConfigError)
    assert.throws(() => new CodecSet([fp16Codec({ name: 'none' })]), CodecConfigError)
    assert.throws(() => new CodecSet([fp16Codec({ name: 'raw' })]), CodecConfigError)
  })
})

describe('codecs: one adapter for every role', function () {
  const plugin: Codec[] = builtinCodecs()
  const shape = [2, 4, 8]
  const n = 64

  const cases: Array<[string, Partial<Record<TensorRole, string>>]> = [
    ['raw boundaries', { activation: 'none', 'activation-grad': 'raw' }],
    ['int8-block averaging', { parameter: 'int8-block', 'parameter-grad': 'int8-block' }]
  ]
  for (const [what, choices] of cases) {
    describe(what, function () {
      const tc = tensorCodecs(choices as Readonly<Record<TensorRole, string>>, plugin)
      const roles = Object.keys(choices) as TensorRole[]
      const chosen = (role: TensorRole): string => choices[role] as string
      const kindOf = (role: TensorRole): FrameKind => role === 'parameter' ? 'parameter-shard' : role === 'parameter-grad' ? 'parameter-grad-shard' : role

      it('round-trips every role through a wire frame within the codec\'s bound', function () {
        for (const role of roles) {
          const x = sine(n)
          const enc = tc.encode(role, x, shape)
          assert.equal(enc.codecId, new CodecSet(plugin).byName(chosen(role)).id)
          const back = tc.decode(role, frameOf(kindOf(role), enc.codecId, shape, enc.bytes))
          const bound = tc.relError(role) * 3 + 1e-7
          for (let i = 0; i < n; i++) assert.ok(Math.abs(back[i] - x[i]) <= bound, `${role} element ${i}`)
          assert.deepEqual(tc.decodeBytes(role, enc.codecId, enc.bytes), back)
          assert.equal(tc.name(role), chosen(role))
        }
      })

      it('refuses NaN/Inf on the way out (encode) and on the way in (decode)', function () {
        const role = roles[0]
        const x = sine(n)
        x[5] = NaN
        assert.throws(() => tc.encode(role, x, shape), (e: unknown) => e instanceof NonFiniteError && /outbound .* element 5 of 64/.test(e.message))
        if (chosen(role) !== 'none') return // a plugin codec refuses NaN itself, even unchecked
        // a broken peer that skipped the check: the receiver refuses its tensor
        const bad = tc.encodeUnchecked(role, x, shape)
        assert.throws(() => tc.decode(role, frameOf(kindOf(role), bad.codecId, shape, bad.bytes)), (e: unknown) => e instanceof NonFiniteError && e.code === 'ERR_NON_FINITE')
      })

      it('decodes only the run\'s codec for the role, as f32 frames of the header\'s element count', function () {
        const role = roles[1]
        const x = sine(n)
        const enc = tc.encode(role, x, shape)
        const other = enc.codecId === 0 ? CodecIds.fp16 : 0
        const otherBytes = other === 0 ? rawCodec.encode(x, shape, role) : fp16Codec().encode(x, shape, role)
        assert.throws(() => tc.decode(role, frameOf(kindOf(role), other, shape, otherBytes)), CodecNotAllowedError)
        assert.throws(() => tc.decode(role, frameOf(kindOf(role), 999, shape, enc.bytes)), UnknownCodecError)
        if (enc.codecId === 0) {
          // raw stores no dims: the header's are the tensor's (the wire layer checks raw payload lengths)
          assert.deepEqual(tc.decode(role, frameOf(kindOf(role), 0, [8, 8], enc.bytes)), x)
          const half = rawCodec.encode(sine(n / 2), [n / 2], role)
          assert.throws(() => tc.decode(role, frameOf(kindOf(role), 0, [n], half, 'f16')), (e: unknown) => e instanceof CodecError && /dtype f16/.test(e.message))
        } else {
          const otherDims = int8BlockCodec().encode(x, [n], role)
          assert.throws(() => tc.decode(role, frameOf(kindOf(role), enc.codecId, shape, otherDims)), /has shape \[64\], the frame header says \[2,4,8\]/)
          assert.throws(() => tc.decode(role, frameOf(kindOf(role), enc.codecId, shape, enc.bytes, 'i32')), CodecError)
        }
      })
    })
  }

  it('boundaryCodecs and shardCodecs take their roles from a whole manifest record, and raw needs no plugin', function () {
    const manifestCodecs = { activation: 'none', 'activation-grad': 'none', parameter: 'raw', 'parameter-grad': 'fp32' }
    const b = boundaryCodecs(manifestCodecs)
    assert.equal(b.encode('activation', sine(4), [4]).codecId, 0)
    assert.throws(() => shardCodecs(manifestCodecs), CodecConfigError, 'fp32 is a plugin codec')
    const s = shardCodecs(manifestCodecs, plugin)
    assert.equal(s.encode('parameter', sine(4)).codecId, 0)
    assert.equal(s.encode('parameter-grad', sine(4)).codecId, CodecIds.fp32)
    assert.equal(s.relError('parameter'), 0)
  })
})
