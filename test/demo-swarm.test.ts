// Multi-process swarms on loopback, every node a real `layerswarm start` process:
//  - `layerswarm demo` with 3 stages (4 training nodes) trains, the loss falls, and it leaves a
//    loadable model, a chart, a report and no process behind;
//  - a 2-stage swarm, one node per stage, synchronous, reproduces `train --local`'s losses;
//  - kill -9 of one of two stage-1 nodes mid-run: the run finishes, the loss keeps falling, and
//    the dropped microbatches are few and reported.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CodecSet } from '../core/codec-set.ts'
import { DEMO_DEFAULT_COMPRESSION } from '../core/demo/demo-compression.ts'
import { PluginHost } from '../core/node/plugin-host.ts'
import { CODEC_PLUGIN } from '../core/codecs/tensor-codecs.ts'
import { RAW_CODEC_NAMES } from '../core/codecs/raw.ts'
import { loadCheckpoint } from '../core/train/checkpoint.ts'
import { runCli } from './cli-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { pidAlive, startSwarm, waitForTraining, writeMicroModel, type TestSwarm } from './swarm-helpers.ts'

const LN_256 = Math.log(256)
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length

/** Runs `layerswarm demo ...` to its end; returns the process result and the parsed report. */
async function runDemoCli (dir: string, args: string[], timeoutMs: number): Promise<{ r: Awaited<ReturnType<typeof runCli>>, report: any }> {
  const reportFile = join(dir, 'report.json')
  const r = await runCli(['demo', '--out', join(dir, 'out'), '--report', reportFile, ...args], { timeoutMs })
  assert.equal(r.code, 0, `demo failed (${r.code}):\n${r.stderr.slice(-4000)}`)
  return { r, report: JSON.parse(await readFile(reportFile, 'utf8')) }
}

/** Encoded bytes of one [B,T,W] boundary tensor with the named codec (the built-in codecs' sizes do not depend on the values). */
async function encodedBytes (codec: string, shape: number[]): Promise<number> {
  const n = shape.reduce((a, b) => a * b, 1)
  if (RAW_CODEC_NAMES.has(codec)) return 4 * n
  const host = new PluginHost()
  try {
    await host.load([CODEC_PLUGIN])
    await host.start()
    return CodecSet.fromContainer(host.container).byName(codec).encode(Float32Array.from({ length: n }, (_, i) => Math.sin(i)), shape, 'activation').byteLength
  } finally {
    await host.stop()
  }
}

/** The report's boundary figures against the bytes the codecs produce for [B,T,W] tensors. */
async function assertBoundaryBytes (report: any, B: number, T: number, C: number): Promise<void> {
  const W = report.bottleneck ?? C
  const fwd = await encodedBytes(report.codecs.activation, [B, T, W]) / (B * T)
  const bwd = await encodedBytes(report.codecs['activation-grad'], [B, T, W]) / (B * T)
  const near = (got: number, want: number, what: string): void => { assert.ok(Math.abs(got - want) <= 1e-3 * Math.max(1, want), `${what}: report ${got}, expected ${want}`) }
  near(report.bytes_per_token_boundary.forward, fwd, 'forward bytes/token')
  near(report.bytes_per_token_boundary.backward, bwd, 'backward bytes/token')
  near(report.bytes_per_token_boundary.total, fwd + bwd, 'total bytes/token')
  near(report.compression_ratio.total, 8 * C / (fwd + bwd), 'compression ratio vs float32 [B,T,C]')
  for (const n of report.per_node) {
    assert.deepEqual(n.codecs, report.codecs, `${n.name} ran with the run's codecs`)
    assert.equal(n.bottleneck, report.bottleneck, `${n.name} ran with the run's bottleneck`)
  }
}

function assertNoSurvivors (report: any): void {
  const pids: number[] = [report.bootstrap.pid, ...report.per_node.map((n: any) => n.pid)]
  assert.equal(pids.length, report.nodes + 1)
  for (const pid of pids) assert.equal(pidAlive(pid), false, `pid ${pid} outlived the demo`)
}

describe('demo: swarms of processes', function () {
  this.timeout(400_000)
  const dirs: string[] = []
  const swarms: TestSwarm[] = []
  const dir = async (): Promise<string> => { const d = await tempDir('lsw-demo-swarm-'); dirs.push(d); return d }
  after(async () => {
    await Promise.all(swarms.map(async s => { await s.stop() }))
    await removeDirs(dirs)
  })

  it('a 3-stage swarm of 4 training nodes trains: the loss falls; model, chart and report are written; no process survives', async () => {
    const d = await dir()
    const model = await writeMicroModel(d)
    const { r, report } = await runDemoCli(d, ['--stages', '3', '--nodes', '4', '--steps', '40', '--model', model, '--batch', '4', '--lr', '1e-2',
      '--eval-batches', '4', '--sample-tokens', '40'], 360_000)

    assert.equal(report.stages, 3)
    assert.equal(report.nodes, 4)
    assert.deepEqual(report.per_node.map((n: any) => n.stage), [0, 1, 2, 1])
    assert.equal(report.steps_done, 40)
    assert.ok(report.loss_first > 4.5 && report.loss_first < 6, `first loss ${report.loss_first} near ln 256`)
    assert.ok(report.loss_last < report.loss_first - 1.0, `loss fell: ${report.loss_first} -> ${report.loss_last}`)
    assert.ok(Number.isFinite(report.eval_loss) && report.eval_loss < LN_256 - 1.0, `held-out loss of the assembled model ${report.eval_loss}`)
    assert.ok(report.unigram_eval_loss > 2.5 && report.unigram_eval_loss < 3.5)
    assert.ok(report.tokens >= 40 * 4 * 32, `tokens ${report.tokens}`)
    assert.ok(report.tokens_per_s > 0 && report.seconds > 0)
    assert.ok(report.bytes_forward > 0 && report.bytes_backward > 0)
    assert.equal(report.microbatches_dropped, 0, 'nothing dropped without faults')
    assert.equal(report.killed, null)
    assert.equal(report.loss_curve.length, 40)
    // the demo's default compression, on every node, and its bytes per token
    assert.deepEqual(report.codecs, { activation: DEMO_DEFAULT_COMPRESSION.codec, 'activation-grad': DEMO_DEFAULT_COMPRESSION.gradCodec })
    assert.equal(report.bottleneck, DEMO_DEFAULT_COMPRESSION.bottleneck)
    await assertBoundaryBytes(report, 4, 32, 32)
    // averaging is on by default (every 10 steps): the two stage-1 nodes averaged, and a round left them identical
    assert.equal(report.averaging.period, 10)
    const s1 = report.averaging.per_stage.find((p: any) => p.stage === 1)
    assert.equal(s1.nodes, 2)
    assert.ok(s1.rounds > 0 && report.averaging.rounds > 0, `averaging rounds: ${JSON.stringify(report.averaging)}`)
    assert.equal(s1.failed, 0)
    assert.ok(s1.divergence_before > 0 && s1.divergence_after < 1e-3 * s1.divergence_before, `divergence ${s1.divergence_before} -> ${s1.divergence_after}`)
    assert.equal(s1.identical_after, true, JSON.stringify(report.averaging))
    console.log(`      averaging: ${JSON.stringify(report.averaging.per_stage[1])}`)
    for (const p of report.averaging.per_stage.filter((p: any) => p.stage !== 1)) assert.equal(p.rounds, 0, 'single-node stages skip rounds')

    const ck = await loadCheckpoint(report.checkpoint, { optimizer: false })
    assert.deepEqual(ck.layout, { stages: 3, bottleneck: DEMO_DEFAULT_COMPRESSION.bottleneck ?? 0, stage: null })
    assert.equal(report.stage_checkpoints.length, 3)
    const svg = await readFile(report.loss_curve_svg, 'utf8')
    assert.match(svg, /^<svg [^>]*>[\s\S]*<polyline [^>]*points="[^"]+"[\s\S]*<\/svg>\n$/)
    assert.match(r.stdout, /--- sample ---\nAnd God said/)
    assert.match(r.stderr, /stage 2/)
    assertNoSurvivors(report)
  })

  it('--codec int8-block --grad-codec fp16 --bottleneck 16: [B,T,16] boundaries, bytes per token as the codecs\' sizes say, and it learns', async () => {
    const d = await dir()
    const model = await writeMicroModel(d)
    const { report } = await runDemoCli(d, ['--stages', '2', '--nodes', '2', '--steps', '12', '--model', model, '--batch', '4', '--lr', '1e-2',
      '--codec', 'int8-block', '--grad-codec', 'fp16', '--bottleneck', '16', '--eval-batches', '2', '--sample-tokens', '0'], 360_000)
    assert.deepEqual(report.codecs, { activation: 'int8-block', 'activation-grad': 'fp16' })
    assert.equal(report.bottleneck, 16)
    // by hand (docs/compression.md): header 8 + 4·3 dims + 4 params + 4 CRC = 28 bytes; int8-block adds
    // an f32 absmax per 64 values and 1 byte per value, fp16 2 bytes per value. n = B·T·k = 4·32·16
    const n = 4 * 32 * 16
    const fwd = (28 + 4 * Math.ceil(n / 64) + n) / (4 * 32)
    const bwd = (28 + 2 * n) / (4 * 32)
    assert.ok(Math.abs(report.bytes_per_token_boundary.forward - fwd) < 1e-3, `forward ${report.bytes_per_token_boundary.forward} vs ${fwd}`)
    assert.ok(Math.abs(report.bytes_per_token_boundary.backward - bwd) < 1e-3, `backward ${report.bytes_per_token_boundary.backward} vs ${bwd}`)
    // int8-block is ~3.7x smaller than float32 of the same [B,T,16]; with the bottleneck 16 of 32 channels, ~7.4x smaller than float32 [B,T,C]
    const int8VsF32 = 4 * 16 / report.bytes_per_token_boundary.forward
    assert.ok(int8VsF32 > 3.6 && int8VsF32 < 3.8, `int8-block vs f32 at the same shape: ${int8VsF32}`)
    assert.ok(Math.abs(report.compression_ratio.forward - 2 * int8VsF32) < 1e-2, `forward ratio ${report.compression_ratio.forward}`)
    await assertBoundaryBytes(report, 4, 32, 32)
    assert.equal(report.boundary_traffic.tokens_backward, 12 * 4 * 32, 'one gradient crossing per trained microbatch')
    assert.ok(report.loss_last < report.loss_first - 0.5, `loss fell: ${report.loss_first} -> ${report.loss_last}`)
    const ck = await loadCheckpoint(report.checkpoint, { optimizer: false })
    assert.deepEqual(ck.layout, { stages: 2, bottleneck: 16, stage: null })
    assert.ok(Number.isFinite(report.eval_loss), 'the assembled bottleneck model evaluates')
    assertNoSurvivors(report)
  })

  it('a 2-stage swarm, one node per stage, synchronous, reproduces train --local\'s losses', async () => {
    const d = await dir()
    const model = await writeMicroModel(d)
    const STEPS = 6
    const common = ['--model', model, '--steps', String(STEPS), '--seed', '3', '--batch', '4', '--lr', '1e-2', '--warmup', '2', '--grad-clip', '0']
    const local = await runCli(['train', '--local', ...common, '--micro', '1', '--eval-every', '0', '--eval-batches', '1', '--report', join(d, 'local.json'), '--log-level', 'warn'], { timeoutMs: 120_000 })
    assert.equal(local.code, 0, local.stderr)
    const ref = JSON.parse(await readFile(join(d, 'local.json'), 'utf8')).loss_curve as Array<[number, number]>
    assert.equal(ref.length, STEPS)

    const swarm = await startSwarm(d, [0, 1], ['--stages', '2', ...common, '--microbatches', '1', '--max-inflight', '1', '--sample-node-id', 'local', '--eval-batches', '0'])
    swarms.push(swarm)
    const [, last] = await waitForTraining(swarm.nodes, `${STEPS} steps`, ts => ts.every(t => t?.state === 'done'), 240_000) as any[]
    const got = last.loss as Array<[number, number]>
    assert.deepEqual(got.map(p => p[0]), ref.map(p => p[0]), 'one loss per step')
    for (let i = 0; i < STEPS; i++) {
      assert.ok(Math.abs(got[i][1] - ref[i][1]) < 2e-4, `step ${ref[i][0]}: swarm ${got[i][1]} vs local ${ref[i][1]}`)
    }
    assert.ok(ref[STEPS - 1][1] < ref[0][1], 'and the run learns')
    await swarm.stop()
  })

  it('kill -9 of one of two stage-1 nodes mid-run: the run finishes, the loss keeps falling, drops are bounded and reported', async () => {
    const d = await dir()
    const model = await writeMicroModel(d)
    const KILL_AT = 10
    const { r, report } = await runDemoCli(d, ['--stages', '2', '--nodes', '3', '--steps', '40', '--model', model, '--batch', '4', '--lr', '1e-2',
      '--kill-at-step', String(KILL_AT), '--microbatches', '4', '--eval-batches', '4', '--sample-tokens', '0'], 360_000)

    assert.equal(report.killed.stage, 1)
    assert.ok(report.killed.at_step >= KILL_AT && report.killed.at_step < 40, `killed at ${report.killed.at_step}`)
    const victim = report.per_node.find((n: any) => n.name === report.killed.name)
    assert.equal(victim.exit, 'signal SIGKILL')
    assert.equal(report.steps_done, 40, 'the run finished its steps on the surviving nodes')
    assert.match(r.stderr, /kill -9 s1[ab] \(stage 1/)

    // the loss keeps falling after the kill
    const curve = report.loss_curve as Array<[number, number]>
    const around = curve.filter(([s]) => Math.abs(s - report.killed.at_step) <= 2).map(p => p[1])
    const end = curve.slice(-5).map(p => p[1])
    assert.ok(mean(end) < mean(around) - 0.1, `loss after the kill: ${mean(around)} -> ${mean(end)}`)
    assert.ok(report.eval_loss < LN_256 - 1.0)

    // at most the microbatches the dead node held are lost (max-inflight per stage-0 node), and they are counted
    assert.equal(typeof report.microbatches_dropped, 'number')
    assert.ok(report.microbatches_dropped <= 2 * report.max_inflight, `dropped ${report.microbatches_dropped}`)
    assert.equal(typeof report.microbatches_retried, 'number')
    assertNoSurvivors(report)
  })
})
