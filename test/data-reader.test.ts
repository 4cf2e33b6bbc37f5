// Dataset reader: text and JSONL files and folders, streamed in chunks, real files in a temp dir.
import assert from 'node:assert/strict'
import { mkdtemp, mkdir, rm, stat, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { gzipSync } from 'node:zlib'
import { AbortError, ConfigError } from '../core/errors.ts'
import {
  DataArgumentError, DatasetNotFoundError, DatasetReadError, listDataFiles, newReadStats, NoDataFilesError, NoDocumentsError,
  readDocuments, type Document, type ReadOptions, type ReadStats
} from '../core/data/index.ts'

async function collect (p: string, opts: ReadOptions = {}, stats: ReadStats = newReadStats()): Promise<Document[]> {
  const docs: Document[] = []
  for await (const d of readDocuments(p, opts, stats)) docs.push(d)
  return docs
}

describe('data: dataset reader', () => {
  let dir: string
  const file = (...parts: string[]): string => path.join(dir, ...parts)
  before(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'layerswarm-data-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  describe('plain text', () => {
    it('splits a file into paragraphs at blank lines, joins them with one blank line, and ends the file with eot', async () => {
      await writeFile(file('para.txt'), 'First line\r\nstill first\r\n\r\n\n  \nSecond\x00 one\n\nThird, no final newline')
      const docs = await collect(file('para.txt'))
      assert.deepEqual(docs.map(d => d.text), ['First line\nstill first\n\n', 'Second one\n\n', 'Third, no final newline\n'])
      assert.deepEqual(docs.map(d => d.eot), [false, false, true])
      assert.deepEqual(docs.map(d => d.line), [1, 6, 8])
      assert.ok(docs.every(d => d.source === file('para.txt') && !d.heldOut), 'heldOutFraction 0.01: 3 short docs stay in train here')
    })

    it('streams a file much larger than the chunk size, with multibyte characters across chunk edges', async () => {
      const paragraphs = Array.from({ length: 200 }, (_, i) => `Paragraph ${i}: naïve café ☕ 世界 🌍\nsecond line ${i}`)
      const text = paragraphs.join('\n\n') + '\n'
      await writeFile(file('big.txt'), text)
      const stats = newReadStats()
      const small = await collect(file('big.txt'), { chunkSize: 7 }, stats)
      assert.equal(small.map(d => d.text).join(''), text)
      assert.equal(small.length, 200)
      assert.equal(stats.bytes, (await stat(file('big.txt'))).size)
      const whole = await collect(file('big.txt'), { chunkSize: 1 << 20 })
      assert.deepEqual(small, whole)
    })

    it('cuts an over-long paragraph or line into pieces that concatenate back', async () => {
      const longLine = 'x'.repeat(250)
      const text = `short\n\n${longLine}\nand more\nlines here\n\nend\n`
      await writeFile(file('long.txt'), text)
      const docs = await collect(file('long.txt'), { maxDocumentChars: 100, chunkSize: 16 })
      assert.equal(docs.map(d => d.text).join(''), text)
      assert.ok(docs.every(d => d.text.length <= 102), 'pieces are bounded')
      assert.ok(docs.length >= 5)
    })
  })

  describe('JSONL', () => {
    it('reads one document per record, each followed by eot, from a chosen field', async () => {
      await writeFile(file('r.jsonl'), ['{"body":"alpha"}', '', '{"body":"beta\\ngamma","id":2}', '{"body":"δ"}'].join('\n'))
      const docs = await collect(file('r.jsonl'), { textField: 'body' })
      assert.deepEqual(docs.map(d => [d.text, d.eot, d.line]), [['alpha', true, 1], ['beta\ngamma', true, 3], ['δ', true, 4]])
    })

    it('skips and counts malformed lines, naming the first', async () => {
      await writeFile(file('mixed.jsonl'), [
        '{"text":"good one"}',
        '{"text": broken',
        '["text", "an array"]',
        '{"title":"no text field"}',
        '{"text":42}',
        '   ',
        '{"text":""}',
        '{"text":"good two"}'
      ].join('\n') + '\n')
      const stats = newReadStats()
      const docs = await collect(file('mixed.jsonl'), {}, stats)
      assert.deepEqual(docs.map(d => d.text), ['good one', 'good two'])
      assert.equal(stats.malformedLines, 4)
      assert.equal(stats.firstMalformed, `${file('mixed.jsonl')}:2`)
    })

    it('skips a line longer than maxLineChars as malformed without holding it', async () => {
      await writeFile(file('huge.jsonl'), `{"text":"a"}\n{"text":"${'z'.repeat(5000)}"}\n{"text":"b"}\n`)
      const stats = newReadStats()
      const docs = await collect(file('huge.jsonl'), { maxLineChars: 1000, chunkSize: 64 }, stats)
      assert.deepEqual(docs.map(d => d.text), ['a', 'b'])
      assert.equal(stats.malformedLines, 1)
    })

    it('fails with a typed error when nothing valid is left, counting what was skipped', async () => {
      await writeFile(file('allbad.jsonl'), 'nope\n{"txt":"x"}\n')
      await assert.rejects(collect(file('allbad.jsonl')), (err: unknown) =>
        err instanceof NoDocumentsError && err.malformedLines === 2 && /2 malformed JSONL lines skipped, first at .*allbad\.jsonl:1/.test(err.message))
    })
  })

  describe('folders and paths', () => {
    before(async () => {
      await mkdir(file('tree', 'b', 'deep'), { recursive: true })
      await mkdir(file('tree', 'a'), { recursive: true })
      await mkdir(file('tree', '.hidden'), { recursive: true })
      await writeFile(file('tree', 'b', 'deep', 'z.txt'), 'from z\n')
      await writeFile(file('tree', 'a', 'y.jsonl'), '{"text":"from y"}\n')
      await writeFile(file('tree', 'a-first.txt'), 'from a-first\n')
      await writeFile(file('tree', 'c.txt.gz'), gzipSync('from c, gzipped\n\nsecond paragraph of c\n'))
      await writeFile(file('tree', 'notes.md'), 'markdown is skipped in folders\n')
      await writeFile(file('tree', '.hidden', 'h.txt'), 'hidden\n')
      await writeFile(file('tree', '.dot.txt'), 'hidden file\n')
    })

    it('walks folders recursively in sorted path order, reading .gz, skipping hidden files and other extensions', async () => {
      const files = await listDataFiles(file('tree'))
      assert.deepEqual(files.map(f => path.relative(file('tree'), f.path).split(path.sep).join('/')), ['a-first.txt', 'a/y.jsonl', 'b/deep/z.txt', 'c.txt.gz'])
      assert.deepEqual(files.map(f => [f.format, f.gzip]), [['text', false], ['jsonl', false], ['text', false], ['text', true]])
      const docs = await collect(file('tree'))
      assert.deepEqual(docs.map(d => d.text), ['from a-first\n', 'from y', 'from z\n', 'from c, gzipped\n\n', 'second paragraph of c\n'])
    })

    it('reads an explicitly named file of any extension as text', async () => {
      assert.deepEqual((await collect(file('tree', 'notes.md'))).map(d => d.text), ['markdown is skipped in folders\n'])
    })

    it('rejects a missing path and a folder without data files with typed errors', async () => {
      await assert.rejects(collect(file('no-such-dir')), (err: unknown) =>
        err instanceof DatasetNotFoundError && err instanceof ConfigError && err.message.includes('no-such-dir'))
      await mkdir(file('empty'), { recursive: true })
      await writeFile(file('empty', 'readme.md'), 'x')
      await assert.rejects(collect(file('empty')), NoDataFilesError)
    })

    it('reports a corrupt .gz as a read error', async () => {
      await writeFile(file('bad.txt.gz'), Buffer.from('this is not gzip data at all'))
      await assert.rejects(collect(file('bad.txt.gz')), DatasetReadError)
    })
  })

  describe('held-out split', () => {
    it('assigns documents by a hash of their content: deterministic, position-independent, and near the fraction', async () => {
      const lines = Array.from({ length: 2000 }, (_, i) => JSON.stringify({ text: `document number ${i}` }))
      await writeFile(file('split.jsonl'), lines.join('\n'))
      await writeFile(file('split-reversed.jsonl'), [...lines].reverse().join('\n'))
      const a = await collect(file('split.jsonl'), { heldOutFraction: 0.1 })
      const b = await collect(file('split-reversed.jsonl'), { heldOutFraction: 0.1 })
      const held = (docs: Document[]): string[] => docs.filter(d => d.heldOut).map(d => d.text).sort()
      assert.deepEqual(held(a), held(b))
      assert.ok(held(a).length > 140 && held(a).length < 260, `about 10% held out, got ${held(a).length}`)
      const reseeded = await collect(file('split.jsonl'), { heldOutFraction: 0.1, splitSeed: 7 })
      assert.notDeepEqual(held(reseeded), held(a), 'the split seed changes the split')
      assert.equal((await collect(file('split.jsonl'), { heldOutFraction: 0 })).filter(d => d.heldOut).length, 0)
    })

    it('rejects a fraction outside [0, 1) and bad chunk sizes', async () => {
      await assert.rejects(collect(file('split.jsonl'), { heldOutFraction: 1 }), DataArgumentError)
      await assert.rejects(collect(file('split.jsonl'), { chunkSize: 0 }), DataArgumentError)
    })

    it('stops with AbortError when the signal aborts', async () => {
      const controller = new AbortController()
      const docs: Document[] = []
      await assert.rejects((async () => {
        for await (const d of readDocuments(file('split.jsonl'), { signal: controller.signal, chunkSize: 256 })) {
          docs.push(d)
          controller.abort()
        }
      })(), AbortError)
      assert.ok(docs.length < 2000)
    })
  })
})
