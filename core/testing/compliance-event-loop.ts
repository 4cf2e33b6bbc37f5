// Backend compliance, the event loop: the contract promises that kernels leave the caller's event
// loop free (a node keeps networking while it computes). Measured as timer lateness: a 10 ms interval
// runs while matmuls whose work takes at least 200 ms run, and a tick later than 3/4 of that time
// means the backend held the loop for most of it. Not eventLoopUtilization: Dawn's polling (WebGPU on
// lavapipe) keeps utilization near 100% while timers still run on time.
//
// Scheduling noise can delay a tick: on a 2-core machine lavapipe's rasterizer threads took both
// cores and single ticks came up to 160 ms late (82 ms in a 142 ms call), hence 200 ms of work, not
// less. Noise delays one try, not every one: a backend that blocks does so each time, so the check
// passes on the first of 4 tries that is on time.
import assert from 'node:assert/strict'
import type { ComputeBackend, Tensor } from '../contracts/index.ts'
import type { SuiteContext } from './compliance-context.ts'

const TICK_MS = 10
/** A tick later than this share of the kernels' time fails the try. */
const LATE_SHARE = 0.75
const MIN_KERNEL_MS = 200
/** Largest square matmul side tried (3 tensors of 16 MiB); a faster backend runs several queued calls. */
const MAX_N = 2048
const MAX_CALLS = 256
const TRIES = 4

export interface EventLoopTry {
  /** Wall time from the first call until every queued matmul resolved. */
  readonly kernelMs: number
  /** How much later than its 10 ms the latest timer tick came. */
  readonly lateMs: number
}

export interface EventLoopReport {
  /** Side of the square matmuls and how many were queued per try. */
  readonly n: number
  readonly calls: number
  readonly tries: readonly EventLoopTry[]
  /** Whether some try had every tick on time. */
  readonly free: boolean
}

const onTime = (t: EventLoopTry): boolean => t.lateMs <= LATE_SHARE * t.kernelMs

/**
 * Queues `calls` n^3 matmuls and waits for their result: a readback (sumSquares) waits for every
 * earlier kernel, also on a backend whose kernels resolve once queued (WebGPU's completion: 'queue').
 */
async function matmuls (be: ComputeBackend, [a, w, out]: Tensor[], calls: number): Promise<void> {
  const pending: Array<Promise<void>> = []
  for (let i = 0; i < calls; i++) pending.push(be.matmulForward(out, a, w, null))
  await Promise.all(pending)
  await be.sumSquares(out)
}

/** Runs `calls` queued n^3 matmuls while a 10 ms interval ticks; how late the latest tick was. */
async function matmulsWhileTicking (be: ComputeBackend, tensors: Tensor[], calls: number): Promise<EventLoopTry> {
  let last = performance.now()
  let maxGap = 0
  const timer = setInterval(() => {
    const now = performance.now()
    maxGap = Math.max(maxGap, now - last)
    last = now
  }, TICK_MS)
  const t0 = performance.now()
  last = t0
  try {
    await matmuls(be, tensors, calls)
  } finally {
    clearInterval(timer)
  }
  const t1 = performance.now()
  maxGap = Math.max(maxGap, t1 - last) // a loop that never ticked was held all along
  return { kernelMs: t1 - t0, lateMs: Math.max(0, maxGap - TICK_MS) }
}

function upload (be: ComputeBackend, n: number): Tensor[] {
  const fill = (seed: number): Float32Array => Float32Array.from({ length: n * n }, (_, i) => ((i * 2654435761 + seed) % 1000) / 1000 - 0.5)
  return [be.upload(fill(1), [n, n]), be.upload(fill(2), [n, n]), be.alloc([n, n])]
}

/**
 * Measures whether `be`'s kernels leave the event loop free: grows a square matmul until one call
 * takes at least 200 ms, past the largest size queues more calls, then up to 4 tries.
 */
export async function measureEventLoop (be: ComputeBackend): Promise<EventLoopReport> {
  let n = 256
  let calls = 1
  let tensors = upload(be, n)
  try {
    await matmuls(be, tensors, 1) // warm-up: compilation, scratch memory
    for (;;) {
      const t0 = performance.now()
      await matmuls(be, tensors, calls)
      const ms = Math.max(performance.now() - t0, 0.1)
      if (ms >= MIN_KERNEL_MS || calls >= MAX_CALLS) break
      // aim a little past the minimum; the work grows as n^3, then with the calls
      const grow = 1.3 * MIN_KERNEL_MS / ms
      if (n < MAX_N) {
        n = Math.min(MAX_N, Math.ceil(n * Math.min(4, Math.max(1.25, Math.cbrt(grow))) / 16) * 16)
        for (const t of tensors) be.free(t)
        tensors = upload(be, n)
        await matmuls(be, tensors, 1)
      } else {
        calls = Math.min(MAX_CALLS, Math.ceil(calls * Math.min(16, Math.max(1.25, grow))))
      }
    }
    const tries: EventLoopTry[] = []
    while (tries.length < TRIES) {
      const t = await matmulsWhileTicking(be, tensors, calls)
      tries.push(t)
      if (onTime(t)) break
    }
    return { n, calls, tries, free: tries.some(onTime) }
  } finally {
    for (const t of tensors) be.free(t)
  }
}

/** Fails (AssertionError) when `be` holds the event loop through its kernels, saying by how much. */
export async function assertEventLoopFree (be: ComputeBackend): Promise<EventLoopReport> {
  const report = await measureEventLoop(be)
  if (!report.free) {
    const each = report.tries.map(t => `${t.lateMs.toFixed(0)} ms late in ${t.kernelMs.toFixed(0)} ms`).join(', ')
    assert.fail(`kernels block the event loop: a ${TICK_MS} ms timer ticked more than ${LATE_SHARE * 100}% of the kernels' time late ` +
      `in each of ${report.tries.length} tries (${report.calls} x matmul ${report.n}^3: ${each}); run the work off the caller's thread ` +
      '(worker threads, a device queue), or pass { eventLoop: false } for a backend that computes on the caller\'s thread by design')
  }
  return report
}

export function eventLoopTests (ctx: SuiteContext): void {
  describe('event loop', function () {
    it(`kernels leave it free: a ${TICK_MS} ms timer stays on time while matmuls take ${MIN_KERNEL_MS} ms or more`, async function () {
      this.timeout(120_000)
      await assertEventLoopFree(ctx.be)
    })
  })
}
