// What keeping one activation set per microbatch in flight saves a stage, measured in one process
// (so both variants share the machine's load, unlike two bench swarm runs minutes apart): the tiny
// model's stage 0 of 2 with the demo's bottleneck (k = 7), M microbatches of B x T forwarded, then
// their backwards (the order a stage-0 node sees with M in flight), then zeroGrad; keep = M against
// keep = 1 (every backward re-runs its forward: the old Stage), alternating, median per microbatch.
//
//   npx tsx bench/swarm-stage.ts [--reps 5] [--microbatches 8] [--threads 1] [--json]
import '../core/polyfills.ts'
import os from 'node:os'
import { parseArgs } from 'node:util'
import { modelPreset } from '../core/model/config.ts'
import { Prng } from '../core/model/prng.ts'
import { Stage } from '../core/model/stage.ts'
import { stageLayouts } from '../core/model/stage-split.ts'
import { StageWorker } from '../core/pipeline/stage-worker.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { formatTable, machineInfo, round, type BenchReport } from './report.ts'

const { values } = parseArgs({ options: { reps: { type: 'string', default: '5' }, microbatches: { type: 'string', default: '8' }, threads: { type: 'string', default: '1' }, json: { type: 'boolean', default: false } } })
const reps = Number(values.reps)
const M = Number(values.microbatches)
const B = 8
const T = 64
const machine = machineInfo()
const be = await createCpuBackend({ threads: Number(values.threads) })
const config = { ...modelPreset('tiny'), vocabSize: 256 }
const layout = stageLayouts(config, 2, 7)[0]
const rng = new Prng(1)
const mbs = Array.from({ length: M }, () => ({
  tokens: new Int32Array(B * T).map(() => rng.nextU32() % 256),
  dout: new Float32Array(B * T * 7).map(() => (rng.nextU32() / 2 ** 32 - 0.5) * 1e-3)
}))

/** ms per microbatch of one step with `keep` sets, and the forwards it ran per microbatch. */
async function step (worker: StageWorker, stage: Stage): Promise<{ ms: number, forwards: number }> {
  const f0 = stage.forwards
  const t0 = performance.now()
  for (let i = 0; i < M; i++) await worker.forward(`o:${i}`, { B, T, tokens: mbs[i].tokens })
  for (let i = 0; i < M; i++) await worker.backward(`o:${i}`, { B, T, tokens: mbs[i].tokens }, mbs[i].dout, { origin: 'o', step: 0, micros: M })
  await stage.zeroGrad()
  return { ms: (performance.now() - t0) / M, forwards: (stage.forwards - f0) / M }
}

const schedule = { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 0, totalSteps: 10 }
const variants = [1, M].map(keep => {
  const stage = new Stage(be, layout, { seed: 0, keep })
  return { keep, stage, worker: new StageWorker(stage, { schedule, auto: false }), ms: [] as number[], forwards: 0 }
})
for (const v of variants) await step(v.worker, v.stage) // warm-up: allocations, kernels
for (let r = 0; r < reps; r++) {
  for (const v of variants) {
    const s = await step(v.worker, v.stage)
    v.ms.push(s.ms)
    v.forwards = s.forwards
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const [one, kept] = variants
const report: BenchReport = {
  suite: 'swarm-stage',
  backend: `cpu, ${values.threads} thread(s)`,
  device: `cpu, ${os.availableParallelism()} cores`,
  machine: { ...machine, loadAvgEnd: round(os.loadavg()[0], 2) },
  baseline: { name: 'keep 1', note: `the old Stage: one activation set, every backward of ${M} in flight re-runs its forward` },
  results: [
    { name: `stage 0 of 2 (tiny, k 7), ${M} in flight, keep ${M}: ms per microbatch`, value: round(median(kept.ms), 2), unit: 'ms', baseline: { name: 'keep 1', value: round(median(one.ms), 2) }, ratio: round(median(kept.ms) / median(one.ms), 3) },
    { name: `forwards per microbatch, keep ${M}`, value: kept.forwards, unit: 'forwards', baseline: { name: 'keep 1', value: one.forwards }, ratio: round(kept.forwards / one.forwards, 3) }
  ]
}
for (const v of variants) v.stage.dispose()
await be.dispose()
console.log(values.json === true ? JSON.stringify(report, null, 2) : formatTable(report))
