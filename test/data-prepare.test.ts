// Prepared token shards: prepare -> manifest -> lazy read back equals the tokenizer's stream,
// hashes checked, sampling as TokenShard's, the run-manifest pin, and every bad input.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { gzipSync } from 'node:zlib'
import {
  ByteTokenizer, checkTokenWidth, DataIdMismatchError, DatasetNotFoundError, decodeShardHeader, InvalidUtf8Error, loadCorpus,
  loadTrainData, MalformedRecordError, NoDocumentsError, OutputNotEmptyError, prepareDataset, PreparedDataError, SHARD_HEADER_BYTES,
  ShardHashMismatchError, ShardSet, TokenShard, TokenWidthError, Utf8Validator, type BatchKey, type Tokenizer
} from '../core/data/index.ts'
import { defaultManifest, ManifestValidationError, runId } from '../core/run/manifest.ts'

let root: string
let input: string
const key: BatchKey = { seed: 7, nodeId: 'n1', step: 2, micro: 0 }

/** A few hundred documents of varied text over a nested folder: text, gzipped text, JSON lines. */
async function makeCorpus (dir: string): Promise<void> {
  await mkdir(path.join(dir, 'sub'), { recursive: true })
  const para = (i: number): string => `Paragraph ${i}: the quick brown fox ${'jumps '.repeat(i % 7)}over the lazy dog — ünïcødé ${i * 31}.`
  await writeFile(path.join(dir, 'a.txt'), Array.from({ length: 120 }, (_, i) => para(i)).join('\n\n'))
  await writeFile(path.join(dir, 'sub', 'b.txt.gz'), gzipSync(Array.from({ length: 80 }, (_, i) => para(i + 500)).join('\r\n\r\n')))
  await writeFile(path.join(dir, 'sub', 'c.jsonl'), Array.from({ length: 100 }, (_, i) => JSON.stringify({ text: para(i + 900), id: i })).join('\n') + '\n')
}

/** Every token of a split, read back from its shard files through their headers. */
async function splitTokens (dir: string, files: readonly string[]): Promise<number[]> {
  const out: number[] = []
  for (const f of files) {
    const bytes = await readFile(path.join(dir, f))
    const h = decodeShardHeader(bytes, f)
    const view = new DataView(bytes.buffer, bytes.byteOffset + SHARD_HEADER_BYTES)
    for (let i = 0; i < h.count; i++) out.push(h.width === 2 ? view.getUint16(2 * i, true) : view.getUint32(4 * i, true))
  }
  return out
}

describe('data: prepare and read token shards', function () {
  this.timeout(30_000)
  let n = 0
  const fresh = (): string => path.join(root, `out-${n++}`)

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'ls-prepare-'))
    input = path.join(root, 'corpus')
    await makeCorpus(input)
  })
  after(async () => { await rm(root, { recursive: true, force: true }) })

  it('writes shards whose tokens, split and hashes equal loadCorpus and the manifest (byte)', async () => {
    const out = fresh()
    const { manifest } = await prepareDataset({ input, out, tokenizer: 'byte', shardTokens: 1000, valFraction: 0.1 })
    const c = manifest.content
    assert.equal(c.tokenWidth, 2)
    assert.equal(c.eot, 0)
    assert.ok(c.splits.train.shards.length > 3, 'several train shards')
    assert.ok(c.splits.val.tokens > 0)
    const corpus = await loadCorpus({ path: input, tokenizer: 'byte', heldOutFraction: 0.1 })
    assert.deepEqual(await splitTokens(out, c.splits.train.shards.map(s => s.file)), Array.from(corpus.train.tokens))
    assert.deepEqual(await splitTokens(out, c.splits.val.shards.map(s => s.file)), Array.from(corpus.heldOut.tokens))
    for (const s of [...c.splits.train.shards, ...c.splits.val.shards]) {
      const bytes = await readFile(path.join(out, s.file))
      assert.equal(bytes.length, s.bytes)
      assert.equal(createHash('sha256').update(bytes).digest('hex'), s.sha256)
      assert.ok(s.tokens <= 1000)
    }
    assert.ok(Math.abs((manifest.info.unigramEvalLoss ?? NaN) - corpus.unigramBaseline()) < 1e-9)
    assert.equal(manifest.info.files, 3)
    // the same input gives the same data id
    const again = await prepareDataset({ input, out: fresh(), tokenizer: 'byte', shardTokens: 1000, valFraction: 0.1 })
    assert.equal(again.manifest.dataId, manifest.dataId)
    assert.match(manifest.dataId, /^[0-9a-f]{64}$/)
  })

  it('writes GPT-2 BPE tokens as uint16 with eot 50256 between documents', async () => {
    const file = path.join(input, 'sub', 'c.jsonl')
    const out = fresh()
    const { manifest } = await prepareDataset({ input: file, out, tokenizer: 'gpt2', valFraction: 0 })
    assert.equal(manifest.content.vocabSize, 50257)
    assert.equal(manifest.content.tokenWidth, 2)
    const corpus = await loadCorpus({ path: file, tokenizer: 'gpt2', heldOutFraction: 0 })
    const tokens = await splitTokens(out, manifest.content.splits.train.shards.map(s => s.file))
    assert.deepEqual(tokens, Array.from(corpus.train.tokens))
    assert.equal(tokens.filter(t => t === 50256).length, 100, 'one eot per record')
    assert.equal(manifest.info.unigramEvalLoss, null)
  })

  it('samples as TokenShard does over one shard, and never across shards', async () => {
    const one = fresh()
    await prepareDataset({ input, out: one, shardTokens: 1 << 20, valFraction: 0.1 })
    const set = await ShardSet.open(one)
    const corpus = await loadCorpus({ path: input, heldOutFraction: 0.1 })
    const ref = new TokenShard('train', corpus.train.tokens, 256)
    assert.deepEqual(await set.train.sampleBatch(key, 4, 32), ref.sampleBatch(key, 4, 32))
    const refVal = new TokenShard('val', corpus.heldOut.tokens, 256)
    assert.equal(set.val.evalBatchCount(2, 16), refVal.evalBatchCount(2, 16))
    assert.deepEqual(await set.val.evalBatch(1, 2, 16), refVal.evalBatch(1, 2, 16))
    set.close()

    const many = fresh()
    const { manifest } = await prepareDataset({ input, out: many, shardTokens: 300, valFraction: 0.1 })
    const multi = await ShardSet.open(many, { maxOpenShards: 2 })
    const shards = await Promise.all(manifest.content.splits.train.shards.map(async s => await splitTokens(many, [s.file])))
    const T = 40
    const b = await multi.train.sampleBatch(key, 16, T)
    assert.deepEqual(await multi.train.sampleBatch({ ...key }, 16, T), b, 'same key, same batch')
    for (let r = 0; r < 16; r++) {
      const row = [...b.inputs.subarray(r * T, r * T + T), b.targets[r * T + T - 1]]
      const found = shards.some(s => { for (let i = 0; i + T < s.length; i++) if (row.every((t, j) => s[i + j] === t)) return true; return false })
      assert.ok(found, `row ${r} lies inside one shard`)
    }
    assert.equal(multi.train.windowCount(T), shards.reduce((a, s) => a + Math.max(0, s.length - T), 0))
    multi.close()
  })

  it('checks shard hashes at first use, the manifest against its data id, and the pinned id', async () => {
    const out = fresh()
    const { manifest } = await prepareDataset({ input, out, shardTokens: 2000, valFraction: 0.1 })
    const shard = path.join(out, manifest.content.splits.train.shards[0].file)
    const bytes = await readFile(shard)
    bytes[SHARD_HEADER_BYTES + 5] ^= 1
    await writeFile(shard, bytes)
    const set = await ShardSet.open(out)
    await assert.rejects(set.verifyAll(), ShardHashMismatchError)
    set.close()
    await assert.rejects(ShardSet.open(out, { expectDataId: 'f'.repeat(64) }), DataIdMismatchError)
    await assert.rejects(loadTrainData({ path: input, seed: 0, dataId: manifest.dataId }), DataIdMismatchError, 'text files are not the pinned data')
    const loaded = await loadTrainData({ path: out, seed: 0, dataId: manifest.dataId })
    assert.equal(loaded.dataId, manifest.dataId)
    assert.equal(loaded.tokenizer.name, 'byte')
    loaded.close()
    await assert.rejects(loadTrainData({ path: out, seed: 0, tokenizer: 'gpt2' }), /prepared with the byte tokenizer/)
    const file = path.join(out, 'manifest.json')
    const m = JSON.parse(await readFile(file, 'utf8'))
    m.content.splits.train.tokens += 0 // unchanged: still valid
    m.content.eot = 1
    await writeFile(file, JSON.stringify(m))
    await assert.rejects(ShardSet.open(out), PreparedDataError)
  })

  it('lets the run manifest pin the data id', () => {
    const id = 'a'.repeat(64)
    const m = defaultManifest({ data: { dataId: id } })
    assert.equal(m.data.dataId, id)
    assert.notEqual(runId(m), runId(defaultManifest()))
    assert.equal(defaultManifest().data.dataId, undefined, 'unpinned manifests keep their shape (and run id)')
    assert.throws(() => defaultManifest({ data: { dataId: 'xyz' } }), ManifestValidationError)
  })

  it('start --data on a prepared folder pins its data id and takes its tokenizer in the run manifest', async () => {
    const { buildManifest, parseTrainingOptions } = await import('../core/runtime/training-runtime.ts')
    const out = fresh()
    const { manifest } = await prepareDataset({ input: path.join(input, 'a.txt'), out, tokenizer: 'gpt2', valFraction: 0.1 })
    const m = await buildManifest(parseTrainingOptions({ data: out }))
    assert.equal(m.data.dataId, manifest.dataId)
    assert.equal(m.data.tokenizer, 'gpt2')
    assert.equal(m.model.vocabSize, 50257)
    assert.equal((await buildManifest(parseTrainingOptions({}))).data.dataId, undefined)
  })

  describe('bad input', () => {
    it('a missing file', async () => {
      await assert.rejects(prepareDataset({ input: path.join(root, 'nope.txt'), out: fresh() }), DatasetNotFoundError)
    })

    it('invalid UTF-8, naming the file and byte offset (also inside .gz)', async () => {
      const dir = path.join(root, 'bad-utf8')
      await mkdir(dir)
      await writeFile(path.join(dir, 'a.txt'), 'fine text\n')
      await writeFile(path.join(dir, 'b.txt'), Buffer.concat([Buffer.from('héllo '), Buffer.from([0xC3, 0x28]), Buffer.from(' end')]))
      const out = fresh()
      const err = await prepareDataset({ input: dir, out }).catch(e => e)
      assert.ok(err instanceof InvalidUtf8Error)
      assert.equal(err.offset, 7)
      assert.match(err.message, /b\.txt is not valid UTF-8: bad byte sequence at byte offset 7/)
      assert.deepEqual(await readdir(root).then(l => l.includes(path.basename(out))), false, 'the output folder is removed again')
      const gz = path.join(root, 'bad.txt.gz')
      await writeFile(gz, gzipSync(Buffer.from([0x61, 0x62, 0xFF])))
      await assert.rejects(prepareDataset({ input: gz, out: fresh() }), (e: InvalidUtf8Error) => e instanceof InvalidUtf8Error && e.offset === 2)
    })

    it('strict UTF-8: overlongs, surrogates, out-of-range, truncation; sequences split across chunks pass', () => {
      const check = (...chunks: number[][]): number => {
        const v = new Utf8Validator()
        for (const c of chunks) { const r = v.push(Uint8Array.from(c)); if (r >= 0) return r }
        return v.end()
      }
      assert.equal(check([0x41, 0xC0, 0x80]), 1)
      assert.equal(check([0xED, 0xA0, 0x80]), 0)
      assert.equal(check([0xF4, 0x90, 0x80, 0x80]), 0)
      assert.equal(check([0x41, 0x42, 0xE2, 0x82]), 2)
      assert.equal(check([0x41, 0xE2], [0x82, 0xAC, 0xF0, 0x9F], [0x98, 0x80]), -1)
      assert.equal(check([...Buffer.from('€😀ü')]), -1)
    })

    it('an empty corpus', async () => {
      const file = path.join(root, 'empty.txt')
      await writeFile(file, '\n\n  \n')
      await assert.rejects(prepareDataset({ input: file, out: fresh() }), NoDocumentsError)
    })

    it('a JSON line without "text", naming file and line', async () => {
      const file = path.join(root, 'bad.jsonl')
      await writeFile(file, '{"text":"ok"}\n{"body":"no text"}\n{"text":"more"}\n')
      await assert.rejects(prepareDataset({ input: file, out: fresh() }), (e: Error) => e instanceof MalformedRecordError && /bad\.jsonl:2: not a JSON object with a string "text" field/.test(e.message))
      const only = path.join(root, 'only-bad.jsonl')
      await writeFile(only, '[1, 2]\n')
      await assert.rejects(prepareDataset({ input: only, out: fresh() }), MalformedRecordError)
    })

    it('a vocabulary that does not fit the token width', async () => {
      const big: Tokenizer = { ...new ByteTokenizer(), name: 'big', vocabSize: 70_000, eot: 69_999, encode: (s: string) => new ByteTokenizer().encode(s), decode: () => '' }
      await assert.rejects(prepareDataset({ input, out: fresh(), tokenizer: big, tokenWidth: 2 }), (e: Error) => e instanceof TokenWidthError && /70000 tokens does not fit 2-byte tokens/.test(e.message))
      assert.throws(() => checkTokenWidth(256, 3), TokenWidthError)
      const { manifest } = await prepareDataset({ input: path.join(input, 'a.txt'), out: fresh(), tokenizer: big, valFraction: 0 })
      assert.equal(manifest.content.tokenWidth, 4, 'the default width fits the vocabulary')
    })

    it('an existing non-empty --out (or a file)', async () => {
      const out = fresh()
      await mkdir(out)
      await writeFile(path.join(out, 'keep.txt'), 'x')
      await assert.rejects(prepareDataset({ input, out }), OutputNotEmptyError)
      assert.deepEqual(await readdir(out), ['keep.txt'])
      await assert.rejects(prepareDataset({ input, out: path.join(out, 'keep.txt') }), OutputNotEmptyError)
      const empty = fresh()
      await mkdir(empty)
      await prepareDataset({ input, out: empty, valFraction: 0 })
    })
  })
})
