// `bench kernels` for the WebGPU backend, with the CPU backend as the baseline in the same run:
// the kernels suite (bench/kernels.ts: matmul GFLOP/s at 1024^3 and the tiny model's shapes, forward
// and backward; attention; the Llama kernels; flash attention at llama-20m's widths, T = 256 and 1024;
// the tiny preset's training step in tokens/s) on webgpu, then on cpu, and
// one report whose baseline is the CPU figure of each result, plus the adapter's description. Where
// the adapter has shader-f16, the suite runs again with f16 matmuls (the plugin's f16 option): those
// results are named '<name> [f16]' and their baseline is the same result in f32 on the same GPU.
// Both backends are loaded by name through the plugin host, like every other command.
//
//   node --import tsx bench/kernels-webgpu.ts [--allow-software-gpu] [--no-f16] [--json] [--reps n] [--warmup n] [--threads n]
import { pathToFileURL } from 'node:url'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import type { Logger } from '../core/contracts/logger.ts'
import { Tokens } from '../core/contracts/tokens.ts'
import { createLogger, silentLogger } from '../core/logger.ts'
import { PluginHost } from '../core/node/plugin-host.ts'
import { kernelsBench } from './kernels.ts'
import { formatTable, round } from './report.ts'
import type { BenchReport, BenchResult } from './report.ts'

export interface WebGpuKernelsBenchOptions {
  allowSoftwareGpu?: boolean
  /** CPU backend threads (default: its own default, all cores). */
  threads?: number
  reps?: number
  warmup?: number
  /** Also run with f16 matmuls where the adapter has shader-f16 (default true). */
  f16?: boolean
  logger?: Logger
}

export type WebGpuKernelsReport = BenchReport & { adapter: unknown, cpu: { device: string, threads: unknown }, f16: string }

async function withPlugin<R> (name: string, options: Record<string, unknown>, logger: Logger, fn: (be: ComputeBackend) => Promise<R>): Promise<R> {
  const host = new PluginHost({ logger, choices: { [Tokens.ComputeBackend]: name }, pluginOptions: { [name]: options } })
  try {
    await host.load([name])
    await host.start()
    return await fn(host.container.resolve<ComputeBackend>(Tokens.ComputeBackend))
  } finally {
    await host.stop()
  }
}

export async function webgpuKernelsBench (opts: WebGpuKernelsBenchOptions = {}): Promise<WebGpuKernelsReport> {
  const logger = opts.logger ?? silentLogger
  const common = { reps: opts.reps ?? 7, warmup: opts.warmup ?? 2, rounds: 1, python: null, logger }
  let adapter: unknown
  const gpu = await withPlugin('backend-webgpu', { allowSoftwareGpu: opts.allowSoftwareGpu === true }, logger, async be => {
    adapter = be.info.adapter
    return await kernelsBench(be, common)
  })
  const hasF16 = ((adapter as { features?: string[] } | undefined)?.features ?? []).includes('shader-f16')
  const half = opts.f16 !== false && hasF16
    ? await withPlugin('backend-webgpu', { allowSoftwareGpu: opts.allowSoftwareGpu === true, f16: true }, logger, async be => await kernelsBench(be, common))
    : null
  const cpu = await withPlugin('backend-cpu', opts.threads !== undefined ? { threads: opts.threads } : {}, logger, async be =>
    ({ report: await kernelsBench(be, common), threads: be.info.threads }))
  const byName = new Map(cpu.report.results.map(r => [r.name, r.value]))
  const against = (r: BenchResult, base: string, b: number | undefined, name = r.name): BenchResult => {
    // flash's saved bytes are the same on both backends: they keep their own baseline (the T x T path's)
    if (r.unit === 'bytes') return { ...r, name }
    const has = typeof b === 'number' && Number.isFinite(b) && b > 0 && r.value > 0
    // value / baseline for every unit: below 1 is better for ms rows, above 1 for rates
    return { name, value: r.value, unit: r.unit, baseline: has ? { name: base, value: b } : null, ratio: has ? round(r.value / b, 6) : null }
  }
  const f32 = new Map(gpu.results.map(r => [r.name, r.value]))
  const results: BenchResult[] = [
    ...gpu.results.map(r => against(r, 'cpu', byName.get(r.name))),
    ...(half?.results ?? []).map(r => against(r, 'webgpu f32', f32.get(r.name), `${r.name} [f16]`))
  ]
  return {
    suite: 'kernels',
    backend: 'webgpu',
    device: gpu.device,
    machine: gpu.machine,
    baseline: { name: 'cpu', device: cpu.report.device },
    results,
    adapter,
    cpu: { device: cpu.report.device, threads: cpu.threads },
    f16: half !== null ? 'run' : hasF16 ? 'not asked' : 'the adapter lacks shader-f16'
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2)
  const num = (flag: string): number | undefined => { const i = args.indexOf(flag); return i >= 0 ? Number(args[i + 1]) : undefined }
  const json = args.includes('--json')
  const report = await webgpuKernelsBench({
    allowSoftwareGpu: args.includes('--allow-software-gpu'),
    f16: !args.includes('--no-f16'),
    threads: num('--threads'),
    reps: num('--reps'),
    warmup: num('--warmup'),
    logger: createLogger({ level: json ? 'warn' : 'info' })
  })
  process.stdout.write(json ? JSON.stringify(report) + '\n' : formatTable(report) + '\n')
}
