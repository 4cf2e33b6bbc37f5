// The single-process trainer on the real data pipeline: loss goes down on a repetitive corpus,
// a resumed run repeats the uninterrupted run's losses exactly, and the CLI runs end to end.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { loadCorpus, type Corpus } from '../core/data/index.ts'
import { countParameters, validateModelConfig } from '../core/model/config.ts'
import { CheckpointMismatchError, loadCheckpoint } from '../core/train/checkpoint.ts'
import { trainLocal, type TrainerOptions } from '../core/train/trainer.ts'
import { corpusData } from '../core/data/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'

const run = promisify(execFile)
const CFG = validateModelConfig({ vocabSize: 256, blockSize: 16, nLayer: 2, nHead: 2, dModel: 32 })

/** 1500 short numbered paragraphs from a small repeating vocabulary: easy to learn; the numbers make them distinct, for the held-out split by content hash. */
function repetitiveText (): string {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'omega']
  const paras: string[] = []
  for (let i = 0; i < 1500; i++) {
    paras.push(`${i}: ${words[i % 5]} ${words[(i + 1) % 5]} ${words[(i + 2) % 5]}. ${words[i % 5]} ${words[(i + 1) % 5]}.`)
  }
  return paras.join('\n\n') + '\n'
}

describe('train: local trainer', function () {
  let dir: string
  let corpusPath: string
  let corpus: Corpus
  let be: ComputeBackend
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'layerswarm-train-'))
    corpusPath = join(dir, 'corpus.txt')
    await writeFile(corpusPath, repetitiveText())
    corpus = await loadCorpus({ path: corpusPath, heldOutFraction: 0.05 })
    be = await createCpuBackend({ threads: 1 })
  })
  after(async () => {
    await be?.dispose()
    await rm(dir, { recursive: true, force: true })
  })

  const base = (): TrainerOptions => ({
    backend: be,
    config: CFG,
    data: corpusData(corpus, 1),
    steps: 6,
    batchSize: 4,
    schedule: { maxLr: 3e-3, minLr: 3e-4, warmupSteps: 2, totalSteps: 6 },
    seed: 1,
    evalBatches: 2
  })

  it('brings the loss well down on a repetitive corpus', async () => {
    const r = await trainLocal({ ...base(), steps: 40, batchSize: 8, microbatches: 2, schedule: { maxLr: 1e-2, minLr: 1e-3, warmupSteps: 4, totalSteps: 40 }, evalEvery: 20 })
    assert.equal(r.losses.length, 40)
    assert.ok(Math.abs(r.losses[0] - Math.log(256)) < 0.2, `first loss ${r.losses[0]}`)
    const last = r.losses.slice(-5).reduce((a, b) => a + b, 0) / 5
    assert.ok(last < 2.0, `mean of the last 5 losses ${last}`)
    assert.deepEqual(r.evals.map(e => e.step), [20, 40])
    assert.ok(r.evals[1].loss < 2.2, `final eval ${r.evals[1].loss}`)
    assert.ok(r.evals[1].loss < corpus.unigramBaseline(), `eval ${r.evals[1].loss} vs unigram ${corpus.unigramBaseline()}`)
    assert.equal(r.tokens, 40 * 2 * 8 * 16)
    assert.equal(r.skippedSteps, 0)
  })

  it('resumes exactly: the resumed run repeats the uninterrupted losses bit for bit', async () => {
    const full = await trainLocal(base())
    const ckDir = join(dir, 'ck')
    const abort = new AbortController()
    const first = await trainLocal({
      ...base(),
      checkpointDir: ckDir,
      signal: abort.signal,
      onStep: r => { if (r.step === 3) abort.abort() }
    })
    assert.equal(first.interrupted, true)
    assert.equal(first.endStep, 3)
    assert.deepEqual(first.losses, full.losses.slice(0, 3))
    assert.deepEqual(await readdir(ckDir), ['step-000003.optim.safetensors', 'step-000003.safetensors'])
    const ck = await loadCheckpoint(join(ckDir, 'step-000003.safetensors'))
    assert.equal(ck.optimizer?.step, 3)
    const resumed = await trainLocal({ ...base(), resume: ck })
    assert.equal(resumed.startStep, 3)
    assert.deepEqual(resumed.losses, full.losses.slice(3))
    assert.deepEqual(resumed.evals, full.evals)
    await assert.rejects(trainLocal({ ...base(), config: { ...CFG, nLayer: 3 }, resume: ck }), CheckpointMismatchError)
    await assert.rejects(trainLocal({ ...base(), bottleneck: 8, stages: 2, resume: ck }), CheckpointMismatchError)
  })

  it('CLI: train --local writes the report and checkpoint; sample reads it; bad input exits 2 or 1', async function () {
    this.timeout(120_000)
    const cfgPath = join(dir, 'model.json')
    await writeFile(cfgPath, JSON.stringify(CFG))
    const report = join(dir, 'report.json')
    const ck = join(dir, 'cli-ck')
    const cli = async (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> => {
      try {
        const { stdout, stderr } = await run(process.execPath, ['bin/layerswarm.js', ...args], { cwd: process.cwd() })
        return { code: 0, stdout, stderr }
      } catch (err) {
        const e = err as { code: number, stdout: string, stderr: string }
        return { code: e.code, stdout: e.stdout, stderr: e.stderr }
      }
    }
    const r = await cli('train', '--local', '--model', cfgPath, '--steps', '4', '--batch', '2', '--data', corpusPath,
      '--report', report, '--checkpoint-dir', ck, '--threads', '1', '--eval-batches', '2', '--log-level', 'warn')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /step 4\/4 \| loss/)
    const rep = JSON.parse(await readFile(report, 'utf8'))
    for (const key of ['tokens', 'steps', 'seconds', 'tokens_per_s', 'loss_first', 'loss_last', 'eval_loss', 'unigram_eval_loss', 'params']) {
      assert.equal(typeof rep[key], 'number', key)
    }
    assert.equal(rep.steps, 4)
    assert.equal(rep.tokens, 4 * 2 * 16)
    assert.equal(rep.params, countParameters(CFG))
    assert.ok(rep.tokens_per_s > 0 && rep.eval_loss > 0 && rep.unigram_eval_loss > 0)
    assert.equal(rep.checkpoint, join(ck, 'step-000004.safetensors'))

    const s = await cli('sample', '--checkpoint', ck, '--prompt', 'alpha', '--tokens', '8', '--threads', '1')
    assert.equal(s.code, 0, s.stderr)
    assert.ok(s.stdout.startsWith('alpha'))

    const noLocal = await cli('train', '--steps', '1')
    assert.equal(noLocal.code, 2)
    assert.match(noLocal.stderr, /--local/)
    const badModel = await cli('train', '--local', '--model', 'huge', '--data', corpusPath)
    assert.equal(badModel.code, 2)
    assert.match(badModel.stderr, /unknown model preset "huge"/)
    await writeFile(join(dir, 'bad.safetensors'), 'not a checkpoint')
    const badCk = await cli('sample', '--checkpoint', join(dir, 'bad.safetensors'))
    assert.equal(badCk.code, 1)
    assert.match(badCk.stderr, /ERR_CHECKPOINT_CORRUPT/)
  })
})
