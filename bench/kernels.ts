// `layerswarm bench kernels`: a backend's matmul (at 1024^3 and at the tiny model's shapes, forward
// and backward), attention, the Llama kernels (RMSNorm, rotary embeddings, SwiGLU at llama-20m's
// widths, forward + backward), flash attention (at llama-20m's widths, T = 256 and T = 1024, forward and
// forward + backward, and the bytes it keeps for backward against the T x T path's) and full training
// step, against PyTorch on the same machine in the same
// run (bench/torch_baseline.py, float32, the same thread count). Where PyTorch is absent the
// baseline is null and the reason is reported; it is never invented.
// On a machine shared with other work, load comes and goes: the baseline and ours alternate for
// `rounds` rounds, and each side's result is its best median over the rounds.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import type { Logger } from '../core/contracts/logger.ts'
import { silentLogger } from '../core/logger.ts'
import { GptModel } from '../core/model/gpt.ts'
import { ffnHiddenOf, modelPreset } from '../core/model/config.ts'
import { machineInfo, medianMs, round } from './report.ts'
import type { BenchReport, BenchResult } from './report.ts'
import os from 'node:os'

export interface KernelsBenchOptions {
  /** Timed repetitions per measurement (median reported). Default 7. */
  reps?: number
  /** Untimed runs first. Default 2. */
  warmup?: number
  /** Alternating rounds of baseline then ours; each side keeps its best median. Default 2. */
  rounds?: number
  /** Python with torch for the baseline (default /usr/bin/python3); null: no baseline. */
  python?: string | null
  /** The baseline script run by `python` (default bench/torch_baseline.py; tests substitute a stub). */
  baselineScript?: string
  /** Threads for the baseline (default: the backend's info.threads, else available parallelism). */
  baselineThreads?: number
  logger?: Logger
}

// The tiny preset's step: 4 layers, d=128, 4 heads, T=64, byte vocab 256, batch 16.
const TINY = { B: 16, T: 64 }
const N_TINY = TINY.B * TINY.T
const MATMULS: Array<[number, number, number, string]> = [
  [1024, 1024, 1024, '1024^3'],
  [N_TINY, 128, 384, 'tiny qkv'],
  [N_TINY, 128, 128, 'tiny attproj'],
  [N_TINY, 128, 512, 'tiny fc'],
  [N_TINY, 512, 128, 'tiny fcproj'],
  [N_TINY, 128, 256, 'tiny lm head']
]

/** A measure compared with something other than PyTorch (e.g. flash's memory against the T x T path's). */
interface Measure { name: string, value: number, unit: string, higherIsBetter: boolean, against?: { name: string, value: number } }

export async function kernelsBench (backend: ComputeBackend, opts: KernelsBenchOptions = {}): Promise<BenchReport> {
  const log = (opts.logger ?? silentLogger).forComponent('layerswarm:bench')
  const reps = opts.reps ?? 7
  const warmup = opts.warmup ?? 2
  const machine = machineInfo()
  const threads = opts.baselineThreads ?? (typeof backend.info.threads === 'number' && backend.info.threads > 0 ? backend.info.threads : os.availableParallelism())
  const tiny = modelPreset('tiny')

  const rounds = opts.rounds ?? 2
  const python = opts.python === undefined ? '/usr/bin/python3' : opts.python
  const spec = {
    threads,
    warmup,
    reps,
    matmul: MATMULS.map(([N, C, OC]) => [N, C, OC]),
    attention: [TINY.B, TINY.T, tiny.dModel, tiny.nHead],
    llama: llamaShape(),
    flash: flashShapes(),
    step: { vocab: tiny.vocabSize, block: tiny.blockSize, layers: tiny.nLayer, heads: tiny.nHead, d: tiny.dModel, B: TINY.B, T: TINY.T }
  }
  let baseline: Record<string, unknown> = { name: 'pytorch', missing: 'disabled (--no-baseline)' }
  const base: Record<string, number> = {}
  let measures: Measure[] = []
  const better = (m: Measure, a: number, b: number): number => m.higherIsBetter ? Math.max(a, b) : Math.min(a, b)
  for (let pass = 0; pass < rounds; pass++) {
    if (python !== null && !('missing' in baseline && pass > 0)) {
      log.info('PyTorch baseline', { python, threads, round: pass })
      const r = await runTorchBaseline(python, opts.baselineScript ?? fileURLToPath(new URL('./torch_baseline.py', import.meta.url)), spec, threads)
      if ('missing' in r) {
        baseline = { name: 'pytorch', missing: r.missing }
        log.warn('PyTorch baseline missing', { reason: r.missing })
      } else {
        baseline = { name: 'pytorch', torch: r.torch, blas: r.blas, threads: r.threads, rounds, ...(r.flash !== undefined ? { flash: r.flash } : {}) }
        for (const [k, v] of Object.entries(r.results)) {
          const unit = /^(attention|flash|rmsnorm|rope|swiglu)\./.test(k) ? 'ms' : ''
          base[k] = k in base ? (unit === 'ms' ? Math.min(base[k], v) : Math.max(base[k], v)) : v
        }
      }
    }
    const ours = await measureOurs(backend, warmup, reps, pass, log)
    measures = measures.length === 0 ? ours : ours.map((m, i) => ({ ...m, value: better(m, m.value, measures[i].value) }))
  }

  const results: BenchResult[] = measures.map(m => {
    const b = m.against !== undefined ? m.against.value : base[m.name]
    const has = typeof b === 'number' && Number.isFinite(b)
    return {
      name: m.name,
      value: round(m.value),
      unit: m.unit,
      baseline: has ? { name: m.against?.name ?? 'pytorch', value: round(b) } : null,
      // value / baseline for every unit (the project's rule): > 1 is better for rates, < 1 for times and bytes
      ratio: has ? round(m.value / b, 6) : null
    }
  })
  machine.loadAvgEnd = round(os.loadavg()[0], 2)
  return { suite: 'kernels', backend: backend.info.name, device: backend.info.device, machine, baseline, results }
}

async function measureOurs (backend: ComputeBackend, warmup: number, reps: number, pass: number, log: Logger): Promise<Measure[]> {
  const tiny = modelPreset('tiny')
  const measures: Measure[] = []
  for (const [N, C, OC, label] of MATMULS) {
    log.info('matmul', { shape: label, N, C, OC, round: pass })
    const { fwdMs, bwdMs } = await timeMatmul(backend, N, C, OC, warmup, reps)
    measures.push({ name: `matmul.fwd.${N}x${C}x${OC}`, value: 2 * N * C * OC / fwdMs / 1e6, unit: 'GFLOP/s', higherIsBetter: true })
    measures.push({ name: `matmul.bwd.${N}x${C}x${OC}`, value: 4 * N * C * OC / bwdMs / 1e6, unit: 'GFLOP/s', higherIsBetter: true })
  }
  log.info('attention', { B: TINY.B, T: TINY.T, C: tiny.dModel, NH: tiny.nHead, round: pass })
  const att = await timeAttention(backend, TINY.B, TINY.T, tiny.dModel, tiny.nHead, warmup, reps)
  measures.push({ name: 'attention.fwd', value: att.fwdMs, unit: 'ms', higherIsBetter: false })
  measures.push({ name: 'attention.fwd+bwd', value: att.fwdBwdMs, unit: 'ms', higherIsBetter: false })
  const [B, T, C, NH, H] = llamaShape()
  log.info('llama kernels', { B, T, C, NH, H, round: pass })
  for (const [name, ms] of await timeLlama(backend, B, T, C, NH, H, warmup, reps)) measures.push({ name, value: ms, unit: 'ms', higherIsBetter: false })
  for (const [fb, ft, fc, fnh] of flashShapes()) {
    log.info('flash attention', { B: fb, T: ft, C: fc, NH: fnh, round: pass })
    const fl = await timeFlash(backend, fb, ft, fc, fnh, warmup, reps)
    const tag = flashTag(fb, ft)
    measures.push({ name: `flash.fwd.${tag}`, value: fl.fwdMs, unit: 'ms', higherIsBetter: false })
    measures.push({ name: `flash.fwd+bwd.${tag}`, value: fl.fwdBwdMs, unit: 'ms', higherIsBetter: false })
    // what forward keeps for backward beside out: lse [B,NH,T], against preatt + att [B,NH,T,T]
    measures.push({ name: `flash.saved.${tag}`, value: fb * fnh * ft * 4, unit: 'bytes', higherIsBetter: false, against: { name: 'T x T path', value: 2 * fb * fnh * ft * ft * 4 } })
  }
  log.info('training step', { preset: 'tiny', ...TINY, round: pass })
  const stepMs = await timeTrainStep(backend, warmup, reps)
  measures.push({ name: 'train.step.tiny', value: N_TINY / stepMs * 1e3, unit: 'tokens/s', higherIsBetter: true })
  return measures
}

function random (n: number, seed: number): Float32Array {
  let s = seed >>> 0
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = s / 2 ** 31 - 1 }
  return a
}

async function timeMatmul (be: ComputeBackend, N: number, C: number, OC: number, warmup: number, reps: number): Promise<{ fwdMs: number, bwdMs: number }> {
  const x = be.upload(random(N * C, 1), [N, C])
  const w = be.upload(random(OC * C, 2), [OC, C])
  const b = be.upload(random(OC, 3), [OC])
  const out = be.alloc([N, OC])
  const dout = be.upload(random(N * OC, 4), [N, OC])
  const dx = be.alloc([N, C]); const dw = be.alloc([OC, C]); const db = be.alloc([OC])
  try {
    const fwdMs = await medianMs(async () => { await be.matmulForward(out, x, w, b) }, warmup, reps)
    const bwdMs = await medianMs(async () => { await be.matmulBackward(dx, dw, db, dout, x, w) }, warmup, reps)
    return { fwdMs, bwdMs }
  } finally {
    for (const t of [x, w, b, out, dout, dx, dw, db]) be.free(t)
  }
}

async function timeAttention (be: ComputeBackend, B: number, T: number, C: number, NH: number, warmup: number, reps: number): Promise<{ fwdMs: number, fwdBwdMs: number }> {
  const qkv = be.upload(random(B * T * 3 * C, 5), [B, T, 3 * C])
  const out = be.alloc([B, T, C])
  const preatt = be.alloc([B, NH, T, T]); const att = be.alloc([B, NH, T, T])
  const dout = be.upload(random(B * T * C, 6), [B, T, C])
  const dqkv = be.alloc([B, T, 3 * C])
  const dpreatt = be.alloc([B, NH, T, T]); const datt = be.alloc([B, NH, T, T])
  try {
    const fwdMs = await medianMs(async () => { await be.attentionForward(out, preatt, att, qkv, NH) }, warmup, reps)
    const fwdBwdMs = await medianMs(async () => {
      await be.attentionForward(out, preatt, att, qkv, NH)
      await be.attentionBackward(dqkv, dpreatt, datt, dout, qkv, att, NH)
    }, warmup, reps)
    return { fwdMs, fwdBwdMs }
  } finally {
    for (const t of [qkv, out, preatt, att, dout, dqkv, dpreatt, datt]) be.free(t)
  }
}

/** llama-20m's widths at batch 4 x 256 tokens: [B, T, C, NH, ffnHidden]. */
function llamaShape (): [number, number, number, number, number] {
  const c = modelPreset('llama-20m')
  return [4, 256, c.dModel, c.nHead, ffnHiddenOf(c)]
}

/** Flash attention's shapes [B, T, C, NH]: llama-20m's widths at llamaShape's B x T, and one 1024-token context. */
function flashShapes (): Array<[number, number, number, number]> {
  const [B, T, C, NH] = llamaShape()
  return [[B, T, C, NH], [1, 1024, C, NH]]
}

const flashTag = (B: number, T: number): string => `B${B}xT${T}`

/** attentionFlashForward, and forward + backward (ms): no [B,NH,T,T] tensor is allocated. */
async function timeFlash (be: ComputeBackend, B: number, T: number, C: number, NH: number, warmup: number, reps: number): Promise<{ fwdMs: number, fwdBwdMs: number }> {
  const qkv = be.upload(random(B * T * 3 * C, 15), [B, T, 3 * C])
  const out = be.alloc([B, T, C]); const lse = be.alloc([B, NH, T])
  const dout = be.upload(random(B * T * C, 16), [B, T, C]); const dqkv = be.alloc([B, T, 3 * C])
  try {
    const fwdMs = await medianMs(async () => { await be.attentionFlashForward(out, lse, qkv, NH) }, warmup, reps)
    const fwdBwdMs = await medianMs(async () => {
      await be.attentionFlashForward(out, lse, qkv, NH)
      await be.attentionFlashBackward(dqkv, dout, out, qkv, lse, NH)
    }, warmup, reps)
    return { fwdMs, fwdBwdMs }
  } finally {
    for (const t of [qkv, out, lse, dout, dqkv]) be.free(t)
  }
}

/** RMSNorm, rotary embeddings and SwiGLU, each forward + backward (ms). */
async function timeLlama (be: ComputeBackend, B: number, T: number, C: number, NH: number, H: number, warmup: number, reps: number): Promise<Array<[string, number]>> {
  const N = B * T
  const x = be.upload(random(N * C, 8), [N, C]); const w = be.upload(random(C, 9), [C]); const rstd = be.alloc([N])
  const y = be.alloc([N, C]); const dy = be.upload(random(N * C, 10), [N, C]); const dx = be.alloc([N, C]); const dw = be.alloc([C])
  const qkv = be.upload(random(N * 3 * C, 11), [B, T, 3 * C]); const qr = be.alloc([B, T, 3 * C])
  const dqr = be.upload(random(N * 3 * C, 12), [B, T, 3 * C]); const dqkv = be.alloc([B, T, 3 * C])
  const gu = be.upload(random(N * 2 * H, 13), [N, 2 * H]); const h = be.alloc([N, H]); const dh = be.upload(random(N * H, 14), [N, H]); const dgu = be.alloc([N, 2 * H])
  try {
    return [
      ['rmsnorm.fwd+bwd', await medianMs(async () => { await be.rmsnormForward(y, rstd, x, w, 1e-5); await be.rmsnormBackward(dx, dw, dy, x, w, rstd) }, warmup, reps)],
      ['rope.fwd+bwd', await medianMs(async () => { await be.ropeForward(qr, qkv, NH, 10000); await be.ropeBackward(dqkv, dqr, NH, 10000) }, warmup, reps)],
      ['swiglu.fwd+bwd', await medianMs(async () => { await be.swigluForward(h, gu); await be.swigluBackward(dgu, dh, gu) }, warmup, reps)]
    ]
  } finally {
    for (const t of [x, w, rstd, y, dy, dx, dw, qkv, qr, dqr, dqkv, gu, h, dh, dgu]) be.free(t)
  }
}

/** One AdamW training step of the tiny preset through core/model's public API: zero, forward, backward, update. */
async function timeTrainStep (be: ComputeBackend, warmup: number, reps: number): Promise<number> {
  const config = modelPreset('tiny')
  const model = new GptModel(be, config, { seed: 1 })
  const { B, T } = TINY
  const ids = random(B * (T + 1), 7)
  const tokens = Int32Array.from({ length: B * T }, (_, i) => Math.floor((ids[i] + 1) / 2 * config.vocabSize) % config.vocabSize)
  const targets = Int32Array.from({ length: B * T }, (_, i) => tokens[(i + 1) % (B * T)])
  try {
    return await medianMs(async () => {
      await model.zeroGrad()
      await model.forward(tokens, B, T, targets)
      await model.backward()
      await model.update({ lr: 1e-3 })
    }, warmup, reps)
  } finally {
    model.dispose()
  }
}

/** flash: how the baseline computed the flash rows (torch < 2.0 has no scaled_dot_product_attention). */
type TorchResult = { torch: string, blas: string | null, threads: number, flash?: string, results: Record<string, number> } | { missing: string }

/** Runs bench/torch_baseline.py; a missing python or torch gives `missing` with the reason. */
async function runTorchBaseline (python: string, script: string, spec: object, threads: number): Promise<TorchResult> {
  return await new Promise<TorchResult>(resolve => {
    let child
    try {
      child = spawn(python, [script, JSON.stringify(spec)], {
        env: { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) },
        stdio: ['ignore', 'pipe', 'pipe']
      })
    } catch (err) {
      resolve({ missing: `cannot run ${python}: ${(err as Error).message}` })
      return
    }
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.on('error', e => { resolve({ missing: `cannot run ${python}: ${e.message}` }) })
    child.on('close', code => {
      if (code !== 0) {
        const last = err.trim().split('\n').pop() ?? ''
        resolve({ missing: /No module named .?torch/.test(err) ? `PyTorch is not installed for ${python}` : `${python} exited with code ${code}: ${last}` })
        return
      }
      try {
        resolve(JSON.parse(out) as TorchResult)
      } catch {
        resolve({ missing: `unreadable baseline output: ${out.slice(0, 200)}` })
      }
    })
  })
}
