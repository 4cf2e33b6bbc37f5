// Codec benchmark: for every built-in codec, on activation-like float32 data (default 16M floats,
// N(0,1) with outlier channels), the compression ratio, encode and decode throughput (GB/s of
// float32, median of several runs, against a memcpy of the same bytes), and the round-trip error
// (max error relative to the block or tensor absmax, against the declared bound; relative RMSE).
// Not a test: figures vary ~2x with machine load, so compare ratios measured in one run.
// `fresh_output_GBps` is writing a newly allocated Float32Array of the same size: decode must return
// a fresh tensor, so its first touch of every page (page faults) bounds decode throughput.
// `--path js` measures the JS path (the fallback where WebAssembly SIMD is missing; same bytes).
//
//   npx tsx bench/codecs.ts [--elements 16777216] [--reps 5] [--warmup 1] [--codecs fp16,int8-block] [--path auto|js]
import { parseArgs } from 'node:util'
import os from 'node:os'
import { pathToFileURL } from 'node:url'
import type { Codec } from '../core/contracts/codec.ts'
import { activationLike } from '../core/testing/codec-data.ts'
import { builtinCodecs } from '../plugins/compression/index.ts'
import { codecKernels } from '../plugins/compression/kernels.ts'
import type { CodecPath } from '../plugins/compression/kernels.ts'
import { machineInfo, medianMs, round } from './report.ts'
import type { BenchReport, BenchResult } from './report.ts'

export interface CodecBenchOptions {
  /** Floats per tensor (default 2^24 = 16M). */
  readonly elements?: number
  /** Timed repetitions per measurement; the median is reported (default 5). */
  readonly reps?: number
  /** Untimed runs before each measurement (default 1). */
  readonly warmup?: number
  /** Codec names to run (default: every built-in). */
  readonly codecs?: readonly string[]
  /** Codecs to measure instead of the built-ins (e.g. a plugin's). */
  readonly codecList?: readonly Codec[]
  readonly seed?: number
  /** 'auto' (default): the built-ins' WASM SIMD path where present; 'js': their JS path. */
  readonly path?: CodecPath
}

/** Max over blocks (or the tensor) of max|x - y| / absmax, and sqrt(sum (x-y)^2 / sum x^2). */
function errors (x: Float32Array, y: Float32Array, blockSize: number): { relMax: number, relRmse: number } {
  const B = blockSize > 0 ? blockSize : x.length
  let relMax = 0
  let se = 0
  let sx = 0
  for (let from = 0; from < x.length; from += B) {
    const to = Math.min(x.length, from + B)
    let m = 0
    let e = 0
    for (let i = from; i < to; i++) {
      const d = Math.abs(x[i] - y[i])
      m = Math.max(m, Math.abs(x[i]))
      e = Math.max(e, d)
      se += d * d
      sx += x[i] * x[i]
    }
    if (m > 0) relMax = Math.max(relMax, e / m)
  }
  return { relMax, relRmse: sx > 0 ? Math.sqrt(se / sx) : 0 }
}

export async function benchCodecs (opts: CodecBenchOptions = {}): Promise<BenchReport> {
  const n = opts.elements ?? 2 ** 24
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`elements must be a positive integer, got ${n}`)
  const reps = opts.reps ?? 5
  const warmup = opts.warmup ?? 1
  const machine = machineInfo()
  const time = async (fn: () => unknown): Promise<number> => await medianMs(async () => fn(), warmup, reps)
  const path = opts.path ?? 'auto'
  if (path !== 'auto' && path !== 'js') throw new RangeError(`path must be auto or js, got ${String(path)}`)
  const all = opts.codecList ?? builtinCodecs({ path })
  const codecs = opts.codecs == null ? all : opts.codecs.map(name => {
    const c = all.find(x => x.name === name)
    if (c == null) throw new RangeError(`unknown codec "${name}" (known: ${all.map(x => x.name).join(', ')})`)
    return c
  })
  const x = activationLike(n, opts.seed ?? 1, 1024)
  const shape = n % 1024 === 0 ? [n / 1024, 1024] : [n]
  const gb = x.byteLength / 1e9
  const results: BenchResult[] = []

  const copy = new Float32Array(n)
  const memcpy = { name: 'memcpy_GBps', value: round(gb / (await time(() => { copy.set(x) }) / 1000), 3) }
  results.push({ name: memcpy.name, value: memcpy.value, unit: 'GB/s', baseline: null, ratio: null })
  const fresh = gb / (await time(() => new Float32Array(n).fill(1)) / 1000)
  results.push({ name: 'fresh_output_GBps', value: round(fresh, 3), unit: 'GB/s', baseline: memcpy, ratio: round(fresh / memcpy.value, 4) })

  for (const c of codecs) {
    let bytes = c.encode(x, shape, 'activation')
    const encMs = await time(() => { bytes = c.encode(x, shape, 'activation') })
    let y = c.decode(bytes).data
    const decMs = await time(() => { y = c.decode(bytes).data })
    const own = (c as { blockSize?: unknown }).blockSize
    const err = errors(x, y, typeof own === 'number' ? own : 0)
    const bound = c.errorBound.relMaxAbs
    const ratio = x.byteLength / bytes.length
    const enc = gb / (encMs / 1000)
    const dec = gb / (decMs / 1000)
    // ratio = value / baseline: the nominal ratio and memcpy (> 1 better), the declared error bound (< 1: within it).
    results.push(
      { name: `${c.name}.ratio`, value: round(ratio, 4), unit: 'x', baseline: { name: `${c.name}.nominal_ratio`, value: round(c.nominalRatio, 4) }, ratio: round(ratio / c.nominalRatio, 4) },
      { name: `${c.name}.encode_GBps`, value: round(enc, 3), unit: 'GB/s', baseline: memcpy, ratio: round(enc / memcpy.value, 4) },
      { name: `${c.name}.decode_GBps`, value: round(dec, 3), unit: 'GB/s', baseline: memcpy, ratio: round(dec / memcpy.value, 4) },
      { name: `${c.name}.rel_max_err`, value: round(err.relMax * 1e6, 1), unit: 'ppm of absmax', baseline: { name: `${c.name}.declared_bound`, value: round(bound * 1e6, 1) }, ratio: bound > 0 ? round(err.relMax / bound, 4) : null },
      { name: `${c.name}.rel_rmse`, value: round(err.relRmse * 1e6, 1), unit: 'ppm of rms', baseline: null, ratio: null }
    )
  }
  machine.loadAvgEnd = round(os.loadavg()[0], 2)
  return {
    suite: 'codecs',
    backend: opts.codecList != null ? 'codecs given' : path === 'js' || codecKernels() == null ? 'compression (JS)' : 'compression (WASM SIMD; fp32, int4-block: JS)',
    device: 'cpu',
    machine,
    baseline: {
      name: 'memcpy',
      what: 'Float32Array.set of the same bytes (throughput); nominal ratio and declared error bound (ratio, error)',
      data: `activation-like float32: ${n} elements, rows of 1024, N(0,1) with ~0.5% outlier channels x20-60`,
      reps,
      warmup
    },
    results
  }
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: { elements: { type: 'string' }, reps: { type: 'string' }, warmup: { type: 'string' }, codecs: { type: 'string' }, path: { type: 'string' } }
  })
  const report = await benchCodecs({
    elements: values.elements != null ? Number(values.elements) : undefined,
    reps: values.reps != null ? Number(values.reps) : undefined,
    warmup: values.warmup != null ? Number(values.warmup) : undefined,
    codecs: values.codecs?.split(',').map(s => s.trim()).filter(Boolean),
    path: values.path as CodecPath | undefined
  })
  process.stdout.write(JSON.stringify(report, null, 2) + '\n')
}
