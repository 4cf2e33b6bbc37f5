// `layerswarm bench <suite>`: performance suites, each measured against a baseline in the same run.
// Suites: `kernels` (a backend's matmul, attention and training step vs PyTorch), `codecs`
// (bench/codecs.ts), `verify` (bench/verify.ts: byzantine peers in a real swarm). With --json,
// stdout carries exactly one JSON object (the report); progress goes to stderr.
import type { Command } from 'commander'
import { ConfigError } from '../../core/errors.ts'
import { kernelsBench } from '../../bench/kernels.ts'
import { webgpuKernelsBench } from '../../bench/kernels-webgpu.ts'
import { benchCodecs } from '../../bench/codecs.ts'
import { benchAllreduce } from '../../bench/allreduce.ts'
import { benchCompressionQuality } from '../../bench/compression-quality.ts'
import { benchVerify } from '../../bench/verify.ts'
import { benchTransport } from '../../bench/transport.ts'
import { benchSwarm } from '../../bench/swarm.ts'
import { formatTable } from '../../bench/report.ts'
import type { BenchReport } from '../../bench/report.ts'
import { resolveBackend } from '../../core/node/backend-choice.ts'
import { intFlag, makeLogger, numFlag, withBackend } from '../flags.ts'

interface BenchFlags {
  backend: string
  threads?: string
  json?: boolean
  reps: string
  warmup: string
  rounds: string
  python: string
  baseline: boolean
  logLevel?: string
  steps?: string
  model?: string
  stages?: string
  seed?: string
  allowSoftwareGpu?: boolean
  f16: boolean
  peers?: string
  mb?: string
  codec?: string
  bottleneck?: string
  quick?: boolean
  data?: string
  seqLen?: string
  lr?: string
  gradClip?: string
  batch?: string
  evalBatches?: string
  configs?: string
  microbatches?: string
  pin: boolean
}

type Suite = (flags: BenchFlags) => Promise<BenchReport>

const SUITES: Record<string, Suite> = {
  kernels: async flags => {
    const logger = makeLogger(flags.logLevel ?? (flags.json === true ? 'warn' : 'info'))
    const threads = flags.threads != null ? intFlag('--threads', flags.threads, 0) : undefined
    const reps = intFlag('--reps', flags.reps, 1)
    const warmup = intFlag('--warmup', flags.warmup, 0)
    const rounds = intFlag('--rounds', flags.rounds, 1)
    const choice = await resolveBackend(flags.backend)
    // The built-in WebGPU backend is compared against the CPU backend measured in the same run (PyTorch has no WebGPU).
    if (choice.spec === 'backend-webgpu') {
      return await webgpuKernelsBench({ reps, warmup, threads, allowSoftwareGpu: flags.allowSoftwareGpu === true, f16: flags.f16, logger })
    }
    return await withBackend(choice, threads, logger, async backend =>
      await kernelsBench(backend, { reps, warmup, rounds, python: flags.baseline ? flags.python : null, logger }))
  },
  // Built-in codecs on 16M activation-like floats: ratio, encode/decode GB/s vs memcpy, error vs declared bound.
  codecs: async flags => await benchCodecs({ reps: intFlag('--reps', flags.reps, 1), warmup: intFlag('--warmup', flags.warmup, 0) }),
  // Butterfly all-reduce between peer processes on loopback vs the bandwidth-optimal bound of the same link.
  allreduce: async flags => {
    const peers = intFlag('--peers', flags.peers ?? '4', 2)
    if (peers > 16) throw new ConfigError(`--peers ${peers}: at most 16 peer processes`)
    const mb = Number(flags.mb ?? '64')
    if (!(Number.isFinite(mb) && mb > 0 && mb <= 1024)) throw new ConfigError(`--mb ${flags.mb}: give a size in MiB in (0, 1024]`)
    return await benchAllreduce({
      peers,
      mb,
      codec: flags.codec,
      rounds: intFlag('--rounds', flags.rounds, 1),
      log: line => { if (flags.logLevel !== 'silent') process.stderr.write(line + '\n') }
    })
  },
  // Held-out loss with compressed stage boundaries (none, fp16, int8, bottleneck + int8 at 32/64/128x) vs uncompressed.
  'compression-quality': async flags => await benchCompressionQuality({
    steps: flags.steps != null ? intFlag('--steps', flags.steps, 1) : undefined,
    model: flags.model,
    stages: flags.stages != null ? intFlag('--stages', flags.stages, 2) : undefined,
    seed: flags.seed != null ? intFlag('--seed', flags.seed, 0) : undefined,
    dataPath: flags.data,
    seqLen: flags.seqLen != null ? intFlag('--seq-len', flags.seqLen, 1) : undefined,
    batchSize: flags.batch != null ? intFlag('--batch', flags.batch, 1) : undefined,
    evalBatches: flags.evalBatches != null ? intFlag('--eval-batches', flags.evalBatches, 1) : undefined,
    settings: flags.configs?.split(',').map(x => x.trim()).filter(Boolean),
    backendPlugin: flags.backend,
    threads: flags.threads != null ? intFlag('--threads', flags.threads, 0) : undefined,
    progress: line => { if (flags.logLevel !== 'silent') process.stderr.write(line + '\n') }
  }),
  // A 64 MiB activation to a receiver process: the framed protocol over libp2p (noise, TLS, plaintext) and bare streams vs raw TCP.
  transport: async flags => {
    const mb = Number(flags.mb ?? '64')
    if (flags.mb != null && (flags.mb.trim() === '' || !(Number.isFinite(mb) && mb > 0 && mb <= 1024))) throw new ConfigError(`--mb ${flags.mb}: give the activation's size in MiB in (0, 1024]`)
    return await benchTransport({
      mb,
      reps: intFlag('--reps', flags.reps, 1),
      log: line => { if (flags.logLevel !== 'silent' && flags.json !== true) process.stderr.write(line + '\n') }
    })
  },
  // The same model and tokens trained by `train --local` on every core and by a swarm of one process per stage: tokens/s, held-out loss, per-stage profile.
  swarm: async flags => await benchSwarm({
    stages: flags.stages != null ? intFlag('--stages', flags.stages, 2) : undefined,
    steps: flags.steps != null ? intFlag('--steps', flags.steps, 1) : undefined,
    model: flags.model,
    seed: flags.seed != null ? intFlag('--seed', flags.seed, 0) : undefined,
    batch: flags.batch != null ? intFlag('--batch', flags.batch, 1) : undefined,
    microbatches: flags.microbatches != null ? intFlag('--microbatches', flags.microbatches, 1) : undefined,
    evalBatches: flags.evalBatches != null ? intFlag('--eval-batches', flags.evalBatches, 1) : undefined,
    codec: flags.codec,
    bottleneck: flags.bottleneck != null ? intFlag('--bottleneck', flags.bottleneck, 0) : undefined,
    pin: flags.pin,
    data: flags.data,
    seqLen: flags.seqLen != null ? intFlag('--seq-len', flags.seqLen, 1) : undefined,
    lr: flags.lr != null ? numFlag('--lr', flags.lr, 0) : undefined,
    gradClip: flags.gradClip != null ? numFlag('--grad-clip', flags.gradClip, 0) : undefined,
    progress: line => { if (flags.logLevel !== 'silent') process.stderr.write(line + '\n') }
  }),
  // Byzantine peers in a real swarm: checks until each attack is caught, false convictions, verification's overhead, held-out loss attacked with and without it.
  verify: async flags => await benchVerify({
    quick: flags.quick === true,
    steps: flags.steps != null ? intFlag('--steps', flags.steps, 1) : undefined,
    progress: line => { if (flags.logLevel !== 'silent') process.stderr.write(line + '\n') }
  })
}

export function register (program: Command): void {
  program.command('bench')
    .description(`run a benchmark suite against its baseline (suites: ${Object.keys(SUITES).join(', ')})`)
    .argument('<suite>', `which suite: ${Object.keys(SUITES).join(', ')}`)
    .option('--backend <name>', 'kernels, compression-quality: compute backend: cpu, webgpu, a built-in plugin name, or the ./path or package of a backend plugin', 'cpu')
    .option('--threads <n>', 'backend threads (CPU backend; the baseline uses as many)')
    .option('--reps <n>', 'timed repetitions per measurement (the median is reported)', '7')
    .option('--warmup <n>', 'untimed runs before each measurement', '2')
    .option('--rounds <n>', 'kernels: alternate baseline and ours n times, keeping each side\'s best median', '2')
    .option('--python <path>', 'python with torch for the baseline', '/usr/bin/python3')
    .option('--no-baseline', 'skip the PyTorch baseline (reported as missing)')
    .option('--steps <n>', 'compression-quality: optimizer steps per setting (default 200); verify: per run (default 60, --quick 30)')
    .option('--model <preset|file>', 'compression-quality: model preset or JSON config (default tiny)')
    .option('--stages <n>', 'compression-quality: pipeline stages (default 3)')
    .option('--seed <n>', 'compression-quality: init and data seed (default 0)')
    .option('--data <dir>', 'compression-quality, swarm: prepared token shards (layerswarm data prepare); default: the shipped corpus (compression-quality: prepared with gpt2 for a BPE model)')
    .option('--seq-len <n>', 'compression-quality, swarm: T, tokens per sequence (default: the model context)')
    .option('--lr <x>', 'swarm: peak learning rate of both runs (default 3e-3)')
    .option('--grad-clip <x>', 'swarm: gradient clipping norm of both runs (default 1; 0: off, the same computation in both, as a stage clips by its own norm)')
    .option('--batch <n>', 'compression-quality: B, sequences per step (default 8)')
    .option('--eval-batches <n>', 'compression-quality: held-out batches of the final eval (default 64)')
    .option('--configs <list>', 'compression-quality: settings to run besides none, e.g. bn128-int8,sub128-int4 (default all)')
    .option('--allow-software-gpu', 'webgpu: accept a software adapter (llvmpipe); correctness only, not speed')
    .option('--no-f16', 'webgpu: skip the f16-matmul run (made where the adapter has shader-f16)')
    .option('--peers <n>', 'allreduce: peer processes (default 4)')
    .option('--mb <n>', 'allreduce: MiB of float32 parameters per peer; transport: MiB per activation (default 64)')
    .option('--codec <name>', 'allreduce: codec of the compressed rounds (default int8-block); swarm: none turns off the default boundary compression')
    .option('--bottleneck <k>', 'swarm: learned bottleneck width at the boundaries of both runs (0: none; default the demo\'s, none with --codec none)')
    .option('--microbatches <m>', 'swarm: microbatches per optimizer step, all in flight in the swarm (default 8)')
    .option('--no-pin', 'swarm: do not pin each stage process to its own core')
    .option('--quick', 'verify: fewer steps and one overhead pair (about half the time)')
    .option('--json', 'print one JSON object')
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent (default: info; warn with --json)')
    .action(async (suite: string, flags: BenchFlags) => {
      const run = Object.hasOwn(SUITES, suite) ? SUITES[suite] : undefined
      if (run === undefined) throw new ConfigError(`unknown bench suite "${suite}" (known: ${Object.keys(SUITES).join(', ')})`)
      const report = await run(flags)
      process.stdout.write(flags.json === true ? JSON.stringify(report) + '\n' : formatTable(report) + '\n')
    })
}
