// The backend compliance suite's own checks fail the backends they should, with messages an author
// can act on: an expected ShapeError that did not come says what was thrown instead (or that nothing
// was), and a backend that holds the event loop through its kernels is caught, while the CPU
// backend's worker pool and WebGPU (lavapipe here) pass, also with the machine loaded.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import type { ComputeBackend } from '../core/contracts/index.ts'
import { ConfigError, ShapeError } from '../core/errors.ts'
import { expectShapeError } from '../core/testing/compliance-context.ts'
import { assertEventLoopFree, measureEventLoop } from '../core/testing/compliance-event-loop.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'
import { createWebGpuBackend } from '../plugins/backend-webgpu/index.ts'
import { probeWebGpu, skipOrFail } from './backend-webgpu-helpers.ts'

const failure = (fn: () => void): string => {
  try { fn() } catch (err) { return (err as Error).message }
  return 'passed'
}

describe('compliance suite: expected ShapeError', function () {
  it('passes a ShapeError, and says what came instead of one', function () {
    assert.equal(failure(() => { expectShapeError({ thrown: new ShapeError('bad') }, 'x') }), 'passed')
    assert.equal(failure(() => { expectShapeError(undefined, 'alloc [2,-1]') }),
      'alloc [2,-1]: expected ShapeError (code ERR_SHAPE), but nothing was thrown')
    assert.equal(failure(() => { expectShapeError({ thrown: new TypeError('x is undefined') }, 'copy') }),
      'copy: expected ShapeError (code ERR_SHAPE), got TypeError: x is undefined')
    assert.equal(failure(() => { expectShapeError({ thrown: new ConfigError('wrong') }, 'scale') }),
      'scale: expected ShapeError (code ERR_SHAPE), got ConfigError (code ERR_CONFIG): wrong')
    assert.equal(failure(() => { expectShapeError({ thrown: 'oops' }, 'write') }),
      'write: expected ShapeError (code ERR_SHAPE), got a non-Error value oops')
  })
})

/**
 * A backend whose matmulForward busy-waits on the caller's thread (as long as a 2 GFLOP/s core would
 * take) before it computes, on the inline CPU backend: every kernel runs on the caller's thread, so
 * no worker round trip under a loaded machine's scheduling dilutes the held time.
 */
async function blockingBackend (): Promise<ComputeBackend> {
  const inner = await createCpuBackend({ threads: 0 })
  return new Proxy(inner, {
    get (target, key) {
      if (key === 'matmulForward') {
        return async (...args: Parameters<ComputeBackend['matmulForward']>) => {
          const [, inp, w] = args
          const until = performance.now() + 2 * inp.size * w.shape[0] / 2e6
          while (performance.now() < until) { /* synchronous busy-wait: the loop is held */ }
          await target.matmulForward(...args)
        }
      }
      const v = Reflect.get(target, key, target)
      return typeof v === 'function' ? v.bind(target) : v
    }
  }) as ComputeBackend
}

/** A busy loop at the lowest priority, as other work on a shared machine. */
function loadMachine (): ChildProcess {
  return spawn('nice', ['-n', '19', process.execPath, '-e', 'for(;;){}'], { stdio: 'ignore' })
}

describe('compliance suite: kernels must leave the event loop free', function () {
  this.timeout(180_000)
  let be: ComputeBackend | undefined
  let load: ChildProcess | undefined
  afterEach(async function () {
    await be?.dispose()
    be = undefined
    load?.kill('SIGKILL')
    load = undefined
  })

  const passes = async (what: string, make: () => Promise<ComputeBackend>, loaded: boolean): Promise<void> => {
    be = await make()
    if (loaded) load = loadMachine()
    for (let i = 0; i < 3; i++) {
      const r = await assertEventLoopFree(be)
      console.log(`      [measure] ${what}${loaded ? ' (loaded)' : ''}: ${r.calls} x ${r.n}^3, ${r.tries.map(t => `${t.lateMs.toFixed(0)} ms late in ${t.kernelMs.toFixed(0)} ms`).join(', ')}`)
    }
  }

  it('fails a backend whose matmul busy-waits on the caller\'s thread, saying so', async function () {
    be = await blockingBackend()
    await assert.rejects(assertEventLoopFree(be), (err: unknown) => {
      assert.match((err as Error).message, /^kernels block the event loop: a 10 ms timer ticked more than 75% of the kernels' time late in each of 4 tries \(\d+ x matmul \d+\^3: \d+ ms late in \d+ ms, /)
      return true
    })
  })

  it('fails the CPU backend inline (threads: 0), which computes on the caller\'s thread', async function () {
    be = await createCpuBackend({ threads: 0 })
    const r = await measureEventLoop(be)
    assert.equal(r.free, false, JSON.stringify(r))
    assert.equal(r.tries.length, 4)
  })

  it('passes WebGPU with kernels that resolve once queued (completion: \'queue\'): the readback waits for them', async function () {
    const probe = await probeWebGpu()
    if (probe.missing !== null) skipOrFail(this, probe.missing)
    await passes('webgpu (completion: queue)', async () => await createWebGpuBackend({ allowSoftwareGpu: true, completion: 'queue' }), false)
  })

  for (const loaded of [false, true]) {
    it(`passes the CPU backend on worker threads, 3 times${loaded ? ', with a busy process beside it' : ''}`, async function () {
      await passes('cpu threads 2', async () => await createCpuBackend({ threads: 2 }), loaded)
    })

    it(`passes WebGPU, 3 times${loaded ? ', with a busy process beside it' : ''}`, async function () {
      const probe = await probeWebGpu()
      if (probe.missing !== null) skipOrFail(this, probe.missing)
      await passes('webgpu', async () => await createWebGpuBackend({ allowSoftwareGpu: true }), loaded)
    })
  }
})
