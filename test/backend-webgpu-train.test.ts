// The WebGPU backend end to end: the first training steps of a small GPT on webgpu and on the CPU
// backend, same seed and data, give the same loss curve (within 1e-4 relative; measured ~1e-7 on lavapipe); the plugin loads by
// its built-in name and logs its adapter; f16 matmuls follow the f32 curve within 1% and keep
// operands of any magnitude; and the adapter errors are typed and say what to do: no
// Vulkan driver at all (a child process whose Vulkan loader is pointed at a missing driver file), and
// a hardware-only request where the only adapter is a software one.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { pathToFileURL } from 'node:url'
import type { ComputeBackend } from '../core/contracts/index.ts'
import { Tokens } from '../core/contracts/index.ts'
import { createLogger } from '../core/logger.ts'
import { validateModelConfig } from '../core/model/config.ts'
import { PluginHost } from '../core/node/plugin-host.ts'
import { trainLocal, type TrainerOptions } from '../core/train/trainer.ts'
import type { TrainData } from '../core/data/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { createWebGpuBackend, parseWebGpuOptions } from '../plugins/backend-webgpu/index.ts'
import { probeWebGpu, skipOrFail } from './backend-webgpu-helpers.ts'

const run = promisify(execFile)
const CFG = validateModelConfig({ vocabSize: 256, blockSize: 16, nLayer: 2, nHead: 2, dModel: 32 })

/** Deterministic batches from a short repeating text: learnable, so the loss moves in a few steps. */
function textData (): TrainData {
  const text = new TextEncoder().encode('the quick brown fox jumps over the lazy dog; '.repeat(40))
  const batch = (seed: number, B: number, T: number): { inputs: Int32Array, targets: Int32Array } => {
    const inputs = new Int32Array(B * T); const targets = new Int32Array(B * T)
    for (let b = 0; b < B; b++) {
      const start = (seed * 7919 + b * 104729) % (text.length - T - 1)
      for (let t = 0; t < T; t++) { inputs[b * T + t] = text[start + t]; targets[b * T + t] = text[start + t + 1] }
    }
    targets[0] = -1 // one ignored target
    return { inputs, targets }
  }
  return {
    trainBatch: (step, micro, B, T) => batch(step * 3 + micro, B, T),
    evalBatch: (index, B, T) => batch(100000 + index, B, T),
    evalBatchCount: () => 2
  }
}

describe('webgpu backend: training and adapter errors', function () {
  this.timeout(300_000)
  let probe: Awaited<ReturnType<typeof probeWebGpu>>
  before(async function () { probe = await probeWebGpu() })

  describe('with an adapter', function () {
    let gpu: ComputeBackend | undefined
    let gpuQueued: ComputeBackend | undefined
    let cpu: ComputeBackend | undefined
    before(async function () {
      if (probe.missing !== null) { skipOrFail(this, probe.missing); return }
      gpu = await createWebGpuBackend({ allowSoftwareGpu: true })
      gpuQueued = await createWebGpuBackend({ allowSoftwareGpu: true, completion: 'queue' })
      cpu = await createCpuBackend({ threads: 1 })
    })
    after(async function () {
      await gpu?.dispose()
      await gpuQueued?.dispose()
      await cpu?.dispose()
    })

    it('trains the first steps with the CPU backend\'s loss curve (same seed, same data)', async function () {
      const opts = (backend: ComputeBackend): TrainerOptions => ({
        backend,
        config: CFG,
        data: textData(),
        steps: 8,
        batchSize: 4,
        microbatches: 2,
        schedule: { maxLr: 1e-2, minLr: 1e-3, warmupSteps: 2, totalSteps: 8 },
        optimizer: { gradClip: 1 },
        seed: 3,
        evalBatches: 2
      })
      const g = await trainLocal(opts(gpu as ComputeBackend))
      const q = await trainLocal(opts(gpuQueued as ComputeBackend))
      const c = await trainLocal(opts(cpu as ComputeBackend))
      assert.deepEqual(q.losses, g.losses, 'completion "queue" runs the same kernels in the same order')
      assert.equal(g.losses.length, 8)
      assert.equal(g.skippedSteps, 0)
      for (let i = 0; i < 8; i++) {
        const rel = Math.abs(g.losses[i] - c.losses[i]) / Math.abs(c.losses[i])
        assert.ok(rel < 1e-4, `step ${i + 1}: webgpu loss ${g.losses[i]} vs cpu ${c.losses[i]} (relative ${rel.toExponential(2)})`)
      }
      assert.ok(c.losses[7] < c.losses[0] - 0.3, `the loss must move for the comparison to mean something: ${c.losses.join(', ')}`)
      const ge = g.evals.at(-1)?.loss as number; const ce = c.evals.at(-1)?.loss as number
      assert.ok(Math.abs(ge - ce) / ce < 1e-4, `final eval: webgpu ${ge} vs cpu ${ce}`)
    })

    describe('f16 matmuls (the f16 option)', function () {
      let half: ComputeBackend | undefined
      before(async function () {
        if (!probe.f16) { console.log('      (skipped: the adapter lacks shader-f16)'); this.skip() }
        half = await createWebGpuBackend({ allowSoftwareGpu: true, f16: true })
      })
      after(async function () { await half?.dispose() })

      it('reports its precision and trains the first steps within 1% of the f32 loss curve', async function () {
        const h = half as ComputeBackend
        assert.equal(h.info.matmulPrecision, 'f16')
        assert.equal((gpu as ComputeBackend).info.matmulPrecision, 'f32')
        const opts = (backend: ComputeBackend): TrainerOptions => ({
          backend, config: CFG, data: textData(), steps: 8, batchSize: 4, microbatches: 2,
          schedule: { maxLr: 1e-2, minLr: 1e-3, warmupSteps: 2, totalSteps: 8 }, optimizer: { gradClip: 1 }, seed: 3, evalBatches: 2
        })
        const f = await trainLocal(opts(h))
        const c = await trainLocal(opts(cpu as ComputeBackend))
        assert.equal(f.skippedSteps, 0)
        let worst = 0
        for (let i = 0; i < 8; i++) {
          const rel = Math.abs(f.losses[i] - c.losses[i]) / Math.abs(c.losses[i])
          worst = Math.max(worst, rel)
          assert.ok(rel < 1e-2, `step ${i + 1}: f16 loss ${f.losses[i]} vs f32 ${c.losses[i]} (relative ${rel.toExponential(2)})`)
        }
        assert.ok(worst > 0, 'f16 rounding must show in the losses, or the f16 path did not run')
      })

      it('scales each operand: gradients of 1e-9 and values of 1e6 (outside f16\'s range) come out right', async function () {
        const h = half as ComputeBackend
        const N = 16; const C = 24; const OC = 20
        let seed = 7
        const rnd = (n: number, scale: number): Float32Array => Float32Array.from({ length: n }, () => {
          seed = (seed * 1103515245 + 12345) % 2147483648
          return (seed / 2147483648 * 2 - 1) * scale
        })
        const check = async (xs: number, ws: number): Promise<number> => {
          const x = rnd(N * C, xs); const w = rnd(OC * C, ws)
          const out = h.alloc([N, OC])
          await h.matmulForward(out, h.upload(x, [N, C]), h.upload(w, [OC, C]), null)
          const got = await h.download(out) as Float32Array
          let worst = 0
          for (let n = 0; n < N; n++) {
            for (let o = 0; o < OC; o++) {
              let ref = 0; let mag = 0
              for (let k = 0; k < C; k++) { ref += x[n * C + k] * w[o * C + k]; mag += Math.abs(x[n * C + k] * w[o * C + k]) }
              assert.ok(Number.isFinite(got[n * OC + o]), `x ${xs}, w ${ws}: element ${n},${o} is ${got[n * OC + o]}`)
              worst = Math.max(worst, Math.abs(got[n * OC + o] - ref) / mag)
            }
          }
          assert.ok(worst < 4e-3, `x ${xs}, w ${ws}: error ${worst} of the sum of |products|`)
          return worst
        }
        const errs = [await check(1, 1), await check(1e-9, 1), await check(1e6, 1), await check(1e-20, 1e-12), await check(1e10, 3e8)]
        assert.ok(errs.every(e => e > 1e-6), `f16 rounding must show: ${errs.join(', ')}`)
      })

      it('an adapter without shader-f16: a typed error that says to drop the option', async function () {
        const real = await (await import('../plugins/backend-webgpu/node-gpu.ts')).nodeGpu()
        const adapter = await real.requestAdapter() as GPUAdapter
        const noF16 = new Set([...adapter.features].filter(f => f !== 'shader-f16'))
        const fake = { requestAdapter: async () => ({ info: adapter.info, features: noF16, limits: adapter.limits, requestDevice: adapter.requestDevice.bind(adapter) }) } as unknown as GPU
        await assert.rejects(createWebGpuBackend({ gpu: fake, allowSoftwareGpu: true, f16: true }), (err: Error & { code?: string }) => {
          assert.equal(err.name, 'WebGpuUnavailableError')
          assert.match(err.message, /shader-f16/)
          assert.match(err.message, /without the f16 option/)
          return true
        })
        assert.throws(() => parseWebGpuOptions({ f16: 'yes' }), (err: Error & { code?: string }) => err.code === 'ERR_CONFIG' && /f16 must be true or false/.test(err.message))
        assert.deepEqual(parseWebGpuOptions({ f16: true }), { f16: true })
      })
    })

    it('loads as the built-in plugin "backend-webgpu" and logs the adapter', async function () {
      const lines: string[] = []
      const host = new PluginHost({
        logger: createLogger({ level: 'info', format: 'json', write: l => { lines.push(l) } }),
        choices: { [Tokens.ComputeBackend]: 'backend-webgpu' },
        pluginOptions: { 'backend-webgpu': { allowSoftwareGpu: true } }
      })
      try {
        await host.load(['backend-webgpu'])
        await host.start()
        const be = host.container.resolve<ComputeBackend>(Tokens.ComputeBackend)
        assert.equal(be.info.name, 'webgpu')
        const t = be.upload(Float32Array.from([1, 2]), [2])
        assert.equal(await be.sumSquares(t), 5)
        const adapterLine = lines.map(l => JSON.parse(l) as Record<string, unknown>).find(l => l.msg === 'WebGPU adapter')
        assert.ok(adapterLine !== undefined, `no adapter line in ${lines.join('\n')}`)
        assert.equal(typeof adapterLine.maxStorageBufferBindingSize, 'number')
        assert.ok('vendor' in adapterLine && 'architecture' in adapterLine && 'device' in adapterLine)
      } finally {
        await host.stop()
      }
    })

    it('rejects bad plugin options with a ConfigError', async function () {
      const host = new PluginHost({
        logger: createLogger({ level: 'silent' }),
        choices: { [Tokens.ComputeBackend]: 'backend-webgpu' },
        pluginOptions: { 'backend-webgpu': { allowSoftwareGpu: 'yes' } }
      })
      try {
        await host.load(['backend-webgpu'])
        await assert.rejects(host.start(), (err: Error) => /allowSoftwareGpu must be true or false/.test(err.message) || /allowSoftwareGpu must be true or false/.test(String((err as { cause?: Error }).cause?.message)))
      } finally {
        await host.stop()
      }
    })

    it('a hardware-only request where the only adapter is software: typed error suggesting --allow-software-gpu', async function () {
      if (!probe.software) {
        console.log('      (skipped: this machine has a hardware adapter)')
        this.skip()
      }
      await assert.rejects(createWebGpuBackend({}), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_WEBGPU_SOFTWARE_ONLY')
        assert.equal(err.name, 'WebGpuSoftwareAdapterError')
        assert.match(err.message, /--allow-software-gpu/)
        return true
      })
    })
  })

  it('no Vulkan driver at all: a typed error naming what to install', async function () {
    if (process.platform !== 'linux') this.skip() // the Vulkan loader's variables only steer Linux
    const url = pathToFileURL(new URL('../plugins/backend-webgpu/index.ts', import.meta.url).pathname).href
    const script = `import { createWebGpuBackend } from ${JSON.stringify(url)}
try { await createWebGpuBackend({ allowSoftwareGpu: true }); console.log(JSON.stringify({ ok: true })) }
catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })) }`
    const missing = '/nonexistent/layerswarm-no-driver.json'
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, VK_ICD_FILENAMES: missing, VK_DRIVER_FILES: missing },
      timeout: 60_000
    })
    const r = JSON.parse(stdout.trim().split('\n').at(-1) as string) as { ok?: boolean, name?: string, code?: string, message?: string }
    assert.equal(r.ok, undefined, 'an adapter appeared although the Vulkan loader had no driver')
    assert.equal(r.code, 'ERR_WEBGPU_UNAVAILABLE')
    assert.equal(r.name, 'WebGpuUnavailableError')
    assert.match(r.message as string, /no Vulkan driver\/loader found/)
    assert.match(r.message as string, /libvulkan1/)
    assert.match(r.message as string, /mesa-vulkan-drivers/)
  })
})
