// `train --local` on a small llama JSON config (CPU backend, byte tokens): the loss falls over a
// few dozen steps, the report counts the llama parameters, and `sample` reads the checkpoint back.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { countParameters, validateModelConfig } from '../core/model/config.ts'
import { loadCheckpoint } from '../core/train/checkpoint.ts'

const run = promisify(execFile)
const LLAMA = { arch: 'llama', vocabSize: 256, blockSize: 32, nLayer: 2, nHead: 2, dModel: 32 }

describe('train: llama --local', function () {
  this.timeout(120_000)
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'layerswarm-llama-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('trains a llama config from a JSON file: the loss falls; the checkpoint keeps the arch; sample reads it', async () => {
    const corpus = join(dir, 'corpus.txt')
    const words = ['alpha', 'beta', 'gamma', 'delta', 'omega']
    await writeFile(corpus, Array.from({ length: 800 }, (_, i) => `${i}: ${words[i % 5]} ${words[(i + 1) % 5]} ${words[(i + 2) % 5]}.`).join('\n\n') + '\n')
    const cfgPath = join(dir, 'llama-tiny.json')
    await writeFile(cfgPath, JSON.stringify(LLAMA))
    const report = join(dir, 'report.json')
    const ck = join(dir, 'ck')
    const cli = async (...args: string[]): Promise<{ code: number, stderr: string }> => {
      try {
        const { stderr } = await run(process.execPath, ['bin/layerswarm.js', ...args], { cwd: process.cwd() })
        return { code: 0, stderr }
      } catch (err) {
        const e = err as { code: number, stderr: string }
        return { code: e.code, stderr: e.stderr }
      }
    }
    const r = await cli('train', '--local', '--model', cfgPath, '--steps', '30', '--batch', '4', '--lr', '1e-2', '--warmup', '3',
      '--data', corpus, '--report', report, '--checkpoint-dir', ck, '--threads', '1', '--eval-batches', '2', '--log-level', 'warn')
    assert.equal(r.code, 0, r.stderr)
    const rep = JSON.parse(await readFile(report, 'utf8'))
    assert.equal(rep.steps, 30)
    assert.equal(rep.params, countParameters(validateModelConfig(LLAMA)))
    assert.ok(Math.abs(rep.loss_first - Math.log(256)) < 0.3, `first loss ${rep.loss_first} (uniform: ${Math.log(256)})`)
    assert.ok(rep.loss_last10_mean < rep.loss_first - 1.5, `loss ${rep.loss_first} -> last 10 mean ${rep.loss_last10_mean}`)
    assert.ok(rep.eval_loss < rep.unigram_eval_loss, `eval ${rep.eval_loss} vs unigram ${rep.unigram_eval_loss}`)
    console.log(`      llama (2 x 32, ${rep.params} params), 30 steps: loss ${rep.loss_first.toFixed(3)} -> last 10 mean ${rep.loss_last10_mean.toFixed(3)}; eval ${rep.eval_loss.toFixed(3)} vs unigram ${rep.unigram_eval_loss.toFixed(3)}`)
    const saved = await loadCheckpoint(rep.checkpoint)
    assert.equal(saved.config.arch, 'llama')
    assert.ok(saved.params.has('layers.1.mlp.gate_up_proj.weight') && !saved.params.has('wpe.weight'))
    const s = await cli('sample', '--checkpoint', ck, '--prompt', 'alpha', '--tokens', '8', '--threads', '1')
    assert.equal(s.code, 0, s.stderr)
  })
})
