// `layerswarm data prepare` as a child process, and `train --local` on the folder it writes.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCli } from './cli-helpers.ts'

describe('cli: data prepare', function () {
  this.timeout(120_000)
  let root: string
  let corpus: string

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'ls-cli-data-'))
    corpus = path.join(root, 'stories.jsonl')
    const line = (i: number): string => JSON.stringify({ text: `Once upon a time there was a little robot number ${i}. It liked to count the stars, and every night it found ${i % 13} new ones.` })
    await writeFile(corpus, Array.from({ length: 400 }, (_, i) => line(i)).join('\n') + '\n')
  })
  after(async () => { await rm(root, { recursive: true, force: true }) })

  it('prepares shards (--json), and train --local --data DIR --steps 5 trains on them', async () => {
    const out = path.join(root, 'prepared')
    const r = await runCli(['data', 'prepare', '--input', corpus, '--tokenizer', 'byte', '--out', out, '--shard-tokens', '8000', '--val-fraction', '0.1', '--json'])
    assert.equal(r.code, 0, r.stderr)
    const m = JSON.parse(r.stdout)
    assert.match(m.dataId, /^[0-9a-f]{64}$/)
    assert.equal(m.content.tokenizer, 'byte')
    assert.ok(m.content.splits.train.shards.length >= 3)
    assert.deepEqual(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')).dataId, m.dataId)

    const report = path.join(root, 'report.json')
    const t = await runCli(['train', '--local', '--data', out, '--steps', '5', '--batch', '4', '--seq-len', '32', '--eval-every', '0', '--eval-batches', '1', '--report', report, '--log-level', 'warn'])
    assert.equal(t.code, 0, t.stderr)
    const rep = JSON.parse(await readFile(report, 'utf8'))
    assert.equal(rep.steps, 5)
    assert.equal(rep.data.data_id, m.dataId)
    assert.ok(Number.isFinite(rep.eval_loss), 'the held-out eval read the val shards')
    assert.ok(Math.abs(rep.unigram_eval_loss - m.info.unigramEvalLoss) < 1e-12)

    const wrong = await runCli(['train', '--local', '--data', out, '--tokenizer', 'gpt2', '--steps', '1'])
    assert.equal(wrong.code, 2)
    assert.match(wrong.stderr, /prepared with the byte tokenizer, not gpt2/)
  })

  it('bad input exits 2 with a clear message', async () => {
    const missing = await runCli(['data', 'prepare', '--input', path.join(root, 'nope.txt'), '--out', path.join(root, 'o1')])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /nope\.txt does not exist/)
    const bad = path.join(root, 'bad.txt')
    await writeFile(bad, Buffer.from([0x61, 0x0A, 0xFF, 0x62]))
    const utf = await runCli(['data', 'prepare', '--input', bad, '--out', path.join(root, 'o2')])
    assert.equal(utf.code, 2)
    assert.match(utf.stderr, /bad\.txt is not valid UTF-8: bad byte sequence at byte offset 2/)
    const notEmpty = await runCli(['data', 'prepare', '--input', corpus, '--out', root])
    assert.equal(notEmpty.code, 2)
    assert.match(notEmpty.stderr, /exists and is not an empty folder/)
  })
})
