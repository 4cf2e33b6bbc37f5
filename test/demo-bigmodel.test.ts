// A model no node can hold, small enough for a test: `layerswarm demo --model llama-20m` in 4
// stages on gpt2 BPE shards, every node's --max-memory between its stage's estimate and the whole
// model's. Each node's estimate < budget < whole-model estimate, each node reports a measured peak
// RSS, and the run ends with a finite loss. The big llama-125m run is a documented command
// (docs/demo.md), not a test. Bad --max-memory / --tokenizer / --seq-len values exit 2.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { prepareDataset } from '../core/data/prepare.ts'
import { modelPreset } from '../core/model/config.ts'
import { estimateStageMemory, stageMemoryTotals } from '../core/model/memory-estimate.ts'
import { wholeModelLayout } from '../core/model/stage-split.ts'
import { runCli } from './cli-helpers.ts'
import { pidAlive } from './swarm-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'

const B = 2
const T = 32
const STAGES = 4

function text (): string {
  const words = ['the', 'swarm', 'trains', 'a', 'model', 'that', 'no', 'node', 'holds', 'alone']
  const docs: string[] = []
  for (let i = 0; i < 400; i++) docs.push(Array.from({ length: 40 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' ') + '.')
  return docs.join('\n\n') + '\n'
}

describe('demo: a model no node can hold (llama-20m in 4 stages under a memory budget)', function () {
  this.timeout(600_000)
  const dirs: string[] = []
  after(async () => { await removeDirs(dirs) })

  it('every stage fits the budget, the whole model does not, and the run ends with a finite loss', async () => {
    const d = await tempDir('lsw-demo-big-')
    dirs.push(d)
    await writeFile(join(d, 'text.txt'), text())
    const data = join(d, 'shards')
    await prepareDataset({ input: join(d, 'text.txt'), out: data, tokenizer: 'gpt2', valFraction: 0.1 })

    const config = modelPreset('llama-20m')
    const stages = stageMemoryTotals(config, STAGES, 0, { batch: B, seqLen: T })
    const whole = estimateStageMemory(config, wholeModelLayout(config), { batch: B, seqLen: T }).total
    const budget = Math.floor((Math.max(...stages) + whole) / 2)
    assert.ok(Math.max(...stages) < budget && budget < whole, `a budget between the largest stage (${Math.max(...stages)}) and the whole model (${whole})`)

    const reportFile = join(d, 'report.json')
    const r = await runCli(['demo', '--out', join(d, 'out'), '--report', reportFile, '--model', 'llama-20m', '--data', data,
      '--stages', String(STAGES), '--nodes', String(STAGES), '--steps', '3', '--batch', String(B), '--seq-len', String(T),
      '--max-memory', String(budget), '--eval-batches', '1', '--sample-tokens', '0', '--average-every', '0', '--max-inflight', '1', '--lr', '1e-3'],
    { timeoutMs: 540_000 })
    assert.equal(r.code, 0, `demo failed (${r.code}):\n${r.stderr.slice(-4000)}`)
    const report = JSON.parse(await readFile(reportFile, 'utf8'))

    assert.equal(report.params, 19_895_520)
    assert.equal(report.seq_len, T)
    assert.equal(report.steps_done, 3)
    assert.ok(Number.isFinite(report.loss_last), `last loss ${report.loss_last}`)
    assert.ok(Number.isFinite(report.eval_loss), `held-out loss ${report.eval_loss}`)
    const m = report.memory
    assert.equal(m.budget, budget)
    assert.equal(m.whole_model_estimate, whole)
    // the demo's boundaries carry its default bottleneck: its buffers are in the stages' estimates
    const run = stageMemoryTotals(config, STAGES, report.bottleneck ?? 0, { batch: B, seqLen: T })
    assert.deepEqual(m.stage_estimates, run)
    assert.equal(m.no_node_holds_the_model, true)
    assert.equal(report.per_node.length, STAGES)
    for (const n of report.per_node) {
      assert.equal(n.memory_budget, budget, `${n.name} ran with the budget`)
      assert.equal(n.memory_estimate, run[n.stage], `${n.name}'s estimate is its stage's`)
      assert.ok(n.memory_estimate < budget && budget < whole, `${n.name}: estimate ${n.memory_estimate} < budget ${budget} < whole ${whole}`)
      assert.ok(n.peak_rss > 0, `${n.name} reports a measured peak RSS`)
    }
    assert.match(r.stdout, /memory: budget .* per node, whole model/)
    for (const pid of [report.bootstrap.pid, ...report.per_node.map((n: any) => n.pid)]) assert.equal(pidAlive(pid), false, `pid ${pid} outlived the demo`)
  })

  it('refuses a budget below a stage, a bad size, an unknown tokenizer and a too long --seq-len (exit 2, nothing started)', async () => {
    const d = await tempDir('lsw-demo-big-bad-')
    dirs.push(d)
    const base = ['demo', '--out', join(d, 'out'), '--model', 'llama-20m', '--stages', '4', '--nodes', '4', '--steps', '2']
    const cases: Array<[string[], RegExp]> = [
      [['--max-memory', '64M', '--tokenizer', 'gpt2', '--seq-len', '32', '--batch', '2'], /--max-memory 64 MiB is below stage \d+'s estimate/],
      [['--max-memory', 'lots'], /--max-memory "lots"/],
      [['--tokenizer', 'sentencepiece'], /--tokenizer sentencepiece is not a tokenizer/],
      [['--tokenizer', 'gpt2', '--seq-len', '4096'], /--seq-len 4096 is longer than the model's context 1024/]
    ]
    for (const [args, msg] of cases) {
      const r = await runCli([...base, ...args], { timeoutMs: 120_000 })
      assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr.slice(-2000)}`)
      assert.match(r.stderr, msg)
    }
  })
})
