// CodecSet: building it from the compression plugin through the plugin host and a run manifest's
// per-role choice, and rejecting unknown or unchosen codecs with typed errors.
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import type { Codec } from '../core/contracts/index.ts'
import { CodecError, ConfigError, verdictOf } from '../core/errors.ts'
import { PluginHost } from '../core/node/plugin-host.ts'
import { PluginStartError } from '../core/node/plugin-errors.ts'
import { defaultManifest } from '../core/run/manifest.ts'
import { CodecConfigError, CodecNotAllowedError, CodecSet, UnknownCodecError } from '../core/codec-set.ts'
import compression, { builtinCodecs, CodecIds, fp16Codec, int8BlockCodec } from '../plugins/compression/index.ts'

describe('codec set', function () {
  let host: PluginHost | undefined
  afterEach(async function () { await host?.stop(); host = undefined })

  it('collects the plugin codecs from the container and applies the manifest choice', async function () {
    host = new PluginHost({ pluginOptions: { compression: { int8BlockSize: 128 } } })
    await host.load([compression])
    await host.start()
    const set = CodecSet.fromContainer(host.container, defaultManifest().codecs)
    assert.deepEqual(set.codecs.map(c => c.name), Object.keys(CodecIds))
    assert.equal(set.forRole('activation').name, 'fp16')
    assert.equal(set.forRole('parameter').name, 'fp32')
    assert.equal((set.byName('int8-block') as Codec & { blockSize: number }).blockSize, 128)
    const x = Float32Array.of(1, -2, 3.5)
    const { codecId, bytes } = set.encode('activation', x, [3])
    assert.equal(codecId, CodecIds.fp16)
    assert.deepEqual(set.decode('activation', codecId, bytes).data, x)
  })

  it('an empty container gives an empty set; a choice then fails as configuration', function () {
    host = new PluginHost()
    assert.equal(CodecSet.fromContainer(host.container).codecs.length, 0)
    assert.throws(() => CodecSet.fromContainer(host!.container, { activation: 'fp16' }), (e: unknown) => e instanceof CodecConfigError && e instanceof ConfigError)
  })

  it('rejects bad plugin options at start', async function () {
    host = new PluginHost({ pluginOptions: { compression: { int4BlockSize: 3 } } })
    await host.load([compression])
    await assert.rejects(host.start(), (e: unknown) => e instanceof PluginStartError && (e.cause as Error) instanceof ConfigError)
    const h2 = new PluginHost({ pluginOptions: { compression: { blocksize: 3 } } })
    await h2.load([compression])
    await assert.rejects(h2.start(), (e: unknown) => e instanceof PluginStartError && /unknown option "blocksize"/.test((e.cause as Error).message))
  })

  describe('inbound checks', function () {
    const set = new CodecSet(builtinCodecs(), { activation: 'int8-block', 'activation-grad': 'fp16', 'parameter-grad': 'topk.int8-block' })
    const x = new Float32Array(300).map((_, i) => Math.cos(i))

    it('an unknown codec id is an UnknownCodecError, rejected by the wire penalty table', function () {
      assert.throws(() => set.decode('activation', 999, new Uint8Array(10)), (e: unknown) => {
        assert.ok(e instanceof UnknownCodecError && e instanceof CodecError)
        assert.equal(e.codecId, 999)
        assert.equal(verdictOf(e), 'reject')
        return true
      })
      assert.throws(() => set.byName('zstd'), UnknownCodecError)
    })

    it('a registered codec the run did not choose for the role is a CodecNotAllowedError, before decoding', function () {
      const fp16Bytes = set.byName('fp16').encode(x, [300], 'activation')
      assert.throws(() => set.decode('activation', CodecIds.fp16, fp16Bytes), (e: unknown) => {
        assert.ok(e instanceof CodecNotAllowedError)
        assert.equal(e.role, 'activation')
        assert.equal(e.expectedId, CodecIds['int8-block'])
        assert.equal(verdictOf(e), 'reject')
        return true
      })
      // Garbage under a not-allowed id fails on the choice, not in a decoder.
      assert.throws(() => set.decode('activation-grad', CodecIds['int8-block'], new Uint8Array(3)), CodecNotAllowedError)
      // A role the run chose nothing for accepts nothing.
      assert.throws(() => set.accept('parameter', CodecIds.fp32), (e: unknown) => e instanceof CodecError && !(e instanceof CodecNotAllowedError))
      assert.throws(() => set.forRole('parameter'), CodecConfigError)
    })

    it('the frame id and the bytes must agree: bytes of another codec under the chosen id fail to decode', function () {
      const fp16Bytes = set.byName('fp16').encode(x, [300], 'activation')
      assert.throws(() => set.decode('activation', CodecIds['int8-block'], fp16Bytes), (e: unknown) => (e as CodecError).code === 'ERR_CODEC')
      const ok = set.encode('parameter-grad', x, [300])
      assert.equal(set.decode('parameter-grad', ok.codecId, ok.bytes).shape[0], 300)
    })
  })

  it('refuses two codecs with one id or one name, and choices of unregistered codecs or unknown roles', function () {
    const a = fp16Codec()
    assert.equal(new CodecSet([a, a]).codecs.length, 1, 'the same object twice counts once')
    assert.throws(() => new CodecSet([a, fp16Codec({ name: 'half' })]), /share wire id 2/)
    assert.throws(() => new CodecSet([a, fp16Codec({ id: 1200 })]), /named "fp16"/)
    assert.throws(() => new CodecSet([a], { parameter: 'int8-block' }), CodecConfigError)
    assert.throws(() => new CodecSet([a, int8BlockCodec()], { weights: 'fp16' } as never), /unknown tensor role/)
  })
})
