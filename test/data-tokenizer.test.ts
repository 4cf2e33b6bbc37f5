// Tokenizers: byte-level (UTF-8 bytes, eot = NUL) and GPT-2 BPE (r50k, from gpt-tokenizer).
import assert from 'node:assert/strict'
import { ByteTokenizer, createTokenizer, DataArgumentError, UnknownTokenizerError } from '../core/data/index.ts'

describe('data: tokenizers', () => {
  describe('byte', () => {
    const tok = new ByteTokenizer()

    it('has vocab 256 and eot 0', () => {
      assert.equal(tok.name, 'byte')
      assert.equal(tok.vocabSize, 256)
      assert.equal(tok.eot, 0)
    })

    it('round-trips ASCII and UTF-8 multibyte text, one token per byte', () => {
      for (const text of ['Hello, world!\n', 'héllo — naïve café', '世界', 'emoji 🌍🚀 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '']) {
        const ids = tok.encode(text)
        assert.ok(ids instanceof Int32Array)
        assert.equal(ids.length, Buffer.byteLength(text, 'utf8'))
        assert.ok(ids.every(id => id >= 0 && id < 256))
        assert.equal(tok.decode(ids), text)
      }
      assert.deepEqual([...tok.encode('é')], [0xc3, 0xa9])
      assert.deepEqual([...tok.encode('🌍')], [0xf0, 0x9f, 0x8c, 0x8d])
    })

    it('decodes invalid UTF-8 (as a model may emit) to U+FFFD and rejects ids outside the vocab', () => {
      assert.equal(tok.decode([0x61, 0xc3]), 'a\ufffd')
      assert.equal(tok.decode([0xff, 0x62]), '\ufffdb')
      assert.throws(() => tok.decode([65, 256]), DataArgumentError)
      assert.throws(() => tok.decode([-1]), DataArgumentError)
    })
  })

  describe('gpt2', () => {
    it('encodes known text to GPT-2 ids and round-trips', async () => {
      const tok = await createTokenizer('gpt2')
      assert.equal(tok.vocabSize, 50257)
      assert.equal(tok.eot, 50256)
      assert.deepEqual([...tok.encode('Hello world')], [15496, 995])
      const text = 'In the beginning God created the heaven and the earth.\n  Ünïcödé, 世界 and tabs\tok.'
      const ids = tok.encode(text)
      assert.ok(ids.length < Buffer.byteLength(text), 'BPE merges bytes')
      assert.equal(tok.decode(ids), text)
    })

    it('encodes the text "<|endoftext|>" as ordinary text; only eot decodes to it', async () => {
      const tok = await createTokenizer('gpt2')
      const ids = tok.encode('a <|endoftext|> b')
      assert.ok(!ids.includes(tok.eot))
      assert.equal(tok.decode(ids), 'a <|endoftext|> b')
      assert.equal(tok.decode([tok.eot]), '<|endoftext|>')
      assert.throws(() => tok.decode([50257]), DataArgumentError)
    })
  })

  it('creates by name, byte by default, and rejects unknown names', async () => {
    assert.equal((await createTokenizer()).name, 'byte')
    await assert.rejects(createTokenizer('sentencepiece'), (err: unknown) =>
      err instanceof UnknownTokenizerError && /known: byte, gpt2/.test(err.message))
  })
})
