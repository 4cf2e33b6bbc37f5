// Tokenized corpus: train / held-out token arrays built by streaming, the shipped default corpus,
// and the unigram baseline.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {
  ByteTokenizer, DataArgumentError, DatasetNotFoundError, defaultCorpusPath, loadCorpus, readDocuments, unigramCrossEntropy
} from '../core/data/index.ts'

describe('data: corpus', () => {
  let dir: string
  let jsonl: string
  const records = Array.from({ length: 400 }, (_, i) => `record ${i} says ${'abcdefghij'.slice(0, 1 + (i % 10))}`)
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'layerswarm-corpus-'))
    jsonl = path.join(dir, 'records.jsonl')
    await writeFile(jsonl, records.map(text => JSON.stringify({ text })).join('\n') + '\n')
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('tokenizes every document into exactly one split, each record followed by eot', async () => {
    const corpus = await loadCorpus({ path: jsonl, heldOutFraction: 0.3 })
    const tok = corpus.tokenizer
    assert.equal(corpus.train.tokens.constructor, Uint8Array, 'byte tokens are stored one byte each')
    const split = (tokens: ArrayLike<number>): string[] => tok.decode(tokens).split('\0').filter(s => s !== '')
    const train = split(corpus.train.tokens)
    const heldOut = split(corpus.heldOut.tokens)
    assert.equal(train.length + heldOut.length, records.length)
    assert.deepEqual([...train, ...heldOut].sort(), [...records].sort())
    const trainSet = new Set(train)
    assert.ok(heldOut.every(r => !trainSet.has(r)), 'held-out and train are disjoint')
    assert.ok(heldOut.length > 80 && heldOut.length < 160, `about 30% held out, got ${heldOut.length}`)
    assert.equal(corpus.stats.heldOutDocuments, heldOut.length)
    assert.equal(corpus.stats.trainTokens + corpus.stats.heldOutTokens,
      records.reduce((n, r) => n + Buffer.byteLength(r) + 1, 0))
    // The same split as the reader assigns, document by document.
    const held: string[] = []
    for await (const d of readDocuments(jsonl, { heldOutFraction: 0.3 })) if (d.heldOut) held.push(d.text)
    assert.deepEqual(held, heldOut)
  })

  it('stores GPT-2 tokens in a Uint16Array and places eot 50256 between records', async () => {
    const corpus = await loadCorpus({ path: jsonl, heldOutFraction: 0, tokenizer: 'gpt2' })
    assert.equal(corpus.train.tokens.constructor, Uint16Array)
    assert.equal(corpus.heldOut.length, 0)
    const eots = Array.from(corpus.train.tokens).filter(id => id === 50256).length
    assert.equal(eots, records.length)
    assert.equal(corpus.tokenizer.decode(corpus.train.tokens.subarray(0, 8)).split('<|endoftext|>')[0], records[0])
  })

  it('stops reading at maxTokens and says so', async () => {
    const corpus = await loadCorpus({ path: jsonl, heldOutFraction: 0, maxTokens: 1000 })
    assert.equal(corpus.train.length, 1000)
    assert.equal(corpus.stats.truncated, true)
    await assert.rejects(loadCorpus({ path: jsonl, maxTokens: 0 }), DataArgumentError)
  })

  it('rejects a missing path', async () => {
    await assert.rejects(loadCorpus({ path: path.join(dir, 'missing') }), DatasetNotFoundError)
  })

  it('ships a default corpus: ~4 MB of English, 1189 chapters, a few % held out', async () => {
    assert.ok(existsSync(defaultCorpusPath()), defaultCorpusPath())
    const corpus = await loadCorpus({ tokenizer: new ByteTokenizer() })
    assert.equal(corpus.stats.documents, 1189)
    assert.ok(corpus.train.length > 3_900_000 && corpus.train.length < 4_300_000, `train tokens ${corpus.train.length}`)
    assert.ok(corpus.heldOut.length > 10_000, `held-out tokens ${corpus.heldOut.length}`)
    assert.match(corpus.tokenizer.decode(corpus.train.tokens.subarray(0, 64)), /^Genesis 1\nIn the beginning God created the heaven and the earth\./)
    const baseline = corpus.unigramBaseline()
    assert.ok(Number.isFinite(baseline) && baseline > 2 && baseline < Math.log(256), `unigram baseline ${baseline}`)
  })

  describe('unigram baseline', () => {
    it('matches a hand computation with add-one smoothing', () => {
      // counts 0:2, 1:1, N=3, V=2 -> p0 = 3/5, p1 = 2/5
      const expected = -(Math.log(3 / 5) + Math.log(2 / 5)) / 2
      assert.ok(Math.abs(unigramCrossEntropy([0, 0, 1], [0, 1], 2) - expected) < 1e-12)
    })

    it('is ln(V) for a token never seen in an empty training set, and lower for a skewed corpus', () => {
      assert.ok(Math.abs(unigramCrossEntropy([], [3, 4], 8) - Math.log(8)) < 1e-12)
      const skewed = Uint8Array.from({ length: 10000 }, (_, i) => (i % 10 === 0 ? 1 : 0))
      const ce = unigramCrossEntropy(skewed, skewed.subarray(0, 1000), 256)
      assert.ok(ce > 0 && ce < 0.5, `skewed CE ${ce}`)
    })

    it('rejects an empty held-out split and ids outside the vocab', () => {
      assert.throws(() => unigramCrossEntropy([1, 2], [], 4), /held-out split is empty/)
      assert.throws(() => unigramCrossEntropy([1, 9], [1], 4), DataArgumentError)
    })
  })
})
