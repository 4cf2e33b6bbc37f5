// `layerswarm bench kernels`: one JSON object on stdout, a missing baseline reported as missing
// (never invented), ratios computed against the baseline, unknown suites rejected.
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { kernelsBench } from '../bench/kernels.ts'
import { round } from '../bench/report.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'
import { runCli } from './cli-helpers.ts'

const NAMES = [
  'matmul.fwd.1024x1024x1024', 'matmul.bwd.1024x1024x1024',
  'matmul.fwd.1024x128x384', 'matmul.bwd.1024x128x384', 'matmul.fwd.1024x128x128', 'matmul.bwd.1024x128x128',
  'matmul.fwd.1024x128x512', 'matmul.bwd.1024x128x512', 'matmul.fwd.1024x512x128', 'matmul.bwd.1024x512x128',
  'matmul.fwd.1024x128x256', 'matmul.bwd.1024x128x256',
  'attention.fwd', 'attention.fwd+bwd', 'rmsnorm.fwd+bwd', 'rope.fwd+bwd', 'swiglu.fwd+bwd',
  'flash.fwd.B4xT256', 'flash.fwd+bwd.B4xT256', 'flash.saved.B4xT256',
  'flash.fwd.B1xT1024', 'flash.fwd+bwd.B1xT1024', 'flash.saved.B1xT1024', 'train.step.tiny'
]

describe('layerswarm bench', function () {
  this.timeout(120000)

  it('bench kernels --json prints exactly one JSON object; an absent PyTorch is reported missing', async function () {
    const r = await runCli(['bench', 'kernels', '--backend', 'cpu', '--json', '--reps', '1', '--warmup', '0', '--rounds', '1', '--python', '/nonexistent/python3'], { timeoutMs: 110_000 })
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.trim().split('\n')
    assert.equal(lines.length, 1, `stdout must be one line: ${r.stdout}`)
    const report = JSON.parse(lines[0])
    assert.equal(report.suite, 'kernels')
    assert.equal(report.backend, 'cpu')
    for (const k of ['cpu', 'cores', 'node', 'os']) assert.ok(report.machine[k] != null, `machine.${k}`)
    assert.equal(report.baseline.name, 'pytorch')
    assert.match(report.baseline.missing, /cannot run \/nonexistent\/python3/)
    assert.deepEqual(report.results.map((x: { name: string }) => x.name), NAMES)
    for (const x of report.results) {
      assert.ok(Number.isFinite(x.value) && x.value > 0, `${x.name}: ${x.value}`)
      if (x.unit === 'bytes') continue // flash's saved state: compared with the T x T path, not PyTorch
      assert.equal(x.baseline, null)
      assert.equal(x.ratio, null)
    }
    // flash keeps lse [B,NH,T] for backward; the T x T path keeps preatt and att [B,NH,T,T]: 2T times more
    const saved = report.results.find((x: { name: string }) => x.name === 'flash.saved.B1xT1024')
    assert.deepEqual(saved.baseline, { name: 'T x T path', value: 2 * 1024 * saved.value })
    assert.equal(saved.ratio, round(1 / 2048, 6))
  })

  it('rejects an unknown suite with exit code 2, naming the known ones', async function () {
    // the CLI's start alone took 10 s on a 2-core machine at load 20: runCli's default 30 s kill was too close
    const r = await runCli(['bench', 'nosuch'], { timeoutMs: 110_000 })
    assert.equal(r.code, 2, `exit ${r.code} (signal ${r.signal}): ${r.stderr}`)
    assert.match(r.stderr, /unknown bench suite "nosuch" \(known: [^)]*\bkernels\b/)
  })

  it('computes ratios as value / baseline for every unit (rates and times alike)', async function () {
    const be = await createCpuBackend({ threads: 2 })
    try {
      const report = await kernelsBench(be, {
        reps: 1,
        warmup: 0,
        rounds: 2,
        python: process.execPath,
        baselineScript: fileURLToPath(new URL('./fixtures/bench-baseline-stub.mjs', import.meta.url))
      })
      assert.equal(report.baseline.torch, 'stub')
      assert.equal(report.baseline.threads, 2, 'the baseline runs with the backend\'s thread count')
      assert.equal(report.baseline.rounds, 2)
      const byName = new Map(report.results.map(x => [x.name, x]))
      const mm = byName.get('matmul.fwd.1024x1024x1024')
      assert.deepEqual(mm?.baseline, { name: 'pytorch', value: 10 })
      assert.ok(Math.abs((mm?.ratio as number) - (mm?.value as number) / 10) < 1e-3 * (mm?.ratio as number) + 1e-3)
      const att = byName.get('attention.fwd')
      assert.equal(att?.unit, 'ms')
      assert.ok(Math.abs((att?.ratio as number) - (att?.value as number) / 4) < 1e-3 * (att?.ratio as number) + 1e-3)
      const step = byName.get('train.step.tiny')
      assert.equal(step?.unit, 'tokens/s')
      assert.ok(Math.abs((step?.ratio as number) - (step?.value as number) / 1000) < 1e-3 * (step?.ratio as number) + 1e-3)
      assert.equal(byName.get('matmul.bwd.1024x1024x1024')?.baseline, null, 'a result the baseline lacks stays missing')
    } finally {
      await be.dispose()
    }
  })
})
