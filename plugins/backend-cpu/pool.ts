// Worker threads of the CPU backend. One job at a time: the main thread writes the job into shared
// memory, bumps the job counter and wakes the workers (Atomics.notify). Workers claim the job's
// chunks one by one from a counter tagged with the job (CLAIM = tag << 16 | next chunk, advanced by
// compare-exchange), so a worker the OS runs late finds nothing left and the others did its share;
// a claim for a finished job fails on the tag. The worker finishing the last chunk wakes the main
// thread, which waits with Atomics.waitAsync, so its event loop stays free for networking.
import { Worker } from 'node:worker_threads'
import { PARAMS_LENGTH } from './exec.ts'
import type { WasmMemory, WasmModule } from './wasm.ts'

// EXIT has its own slot: params are rewritten (zeroed first) for every job, so a worker that wakes
// late must never read a stop request out of them.
export const CTRL = { SEQ: 0, DONE: 1, ERROR: 2, CLAIM: 3, CHUNKS: 4, EXIT: 5 } as const
export const ERROR_BYTES = 2048

type WaitAsync = (a: Int32Array, index: number, value: number) => { async: boolean, value: Promise<string> | string }
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync

export class WorkerPool {
  readonly params: Float64Array
  readonly partials: Float64Array
  private readonly ctrl: Int32Array
  private readonly errorText: Uint8Array
  private dead: Error | null = null
  private closing = false
  private readonly exited: Array<Promise<void>>

  private constructor (private readonly workers: Worker[], control: SharedArrayBuffer) {
    const parts = workers.length
    this.exited = workers.map(async w => await new Promise<void>(resolve => { w.once('exit', () => { resolve() }) }))
    this.ctrl = new Int32Array(control, 0, 16)
    this.params = new Float64Array(control, 64, PARAMS_LENGTH)
    this.partials = new Float64Array(control, 64 + PARAMS_LENGTH * 8, parts)
    this.errorText = new Uint8Array(control, 64 + PARAMS_LENGTH * 8 + parts * 8, ERROR_BYTES)
  }

  get parts (): number { return this.workers.length }

  static async create (threads: number, memory: WasmMemory, module: WasmModule | null, native = false): Promise<WorkerPool> {
    const control = new SharedArrayBuffer(64 + PARAMS_LENGTH * 8 + threads * 8 + ERROR_BYTES)
    const workers: Worker[] = []
    const ready: Array<Promise<void>> = []
    for (let index = 0; index < threads; index++) {
      // execArgv [] so a parent started with `--import tsx` does not load tsx twice in the worker
      const w = new Worker(new URL('./worker-entry.mjs', import.meta.url), {
        workerData: { memory, module, native, control, index, parts: threads },
        execArgv: []
      })
      workers.push(w)
      ready.push(new Promise<void>((resolve, reject) => {
        w.once('message', () => { resolve() })
        w.once('error', reject)
        w.once('exit', code => { reject(new Error(`cpu backend worker exited with code ${code} while starting`)) })
      }))
    }
    try {
      await Promise.all(ready)
    } catch (err) {
      await Promise.all(workers.map(async w => await w.terminate()))
      throw err
    }
    for (const w of workers) w.removeAllListeners()
    const pool = new WorkerPool(workers, control)
    for (const w of workers) {
      w.on('error', err => { pool.fail(err) })
      w.on('exit', code => { if (!pool.closing) pool.fail(new Error(`cpu backend worker exited with code ${code}`)) })
      w.unref() // an undisposed backend must not keep the process alive
    }
    return pool
  }

  /** Runs the job already written into `params`, split in `chunks` (<= 65535); resolves when all are done. */
  async run (chunks: number): Promise<void> {
    if (this.dead !== null) throw this.dead
    const c = this.ctrl
    this.partials.fill(0)
    Atomics.store(c, CTRL.DONE, 0)
    Atomics.store(c, CTRL.ERROR, 0)
    Atomics.store(c, CTRL.CHUNKS, chunks)
    const seq = (Atomics.load(c, CTRL.SEQ) + 1) | 0
    Atomics.store(c, CTRL.CLAIM, (seq & 0xffff) << 16)
    Atomics.store(c, CTRL.SEQ, seq)
    Atomics.notify(c, CTRL.SEQ)
    // a pending waitAsync does not keep Node's event loop alive; a ref'd worker does
    this.workers[0].ref()
    try {
      for (;;) {
        const done = Atomics.load(c, CTRL.DONE)
        if (done >= chunks) break
        const r = waitAsync(c, CTRL.DONE, done)
        if (r.async) await r.value
      }
    } finally {
      this.workers[0].unref()
    }
    if (this.dead !== null) throw this.dead
    if (Atomics.load(c, CTRL.ERROR) !== 0) {
      const end = this.errorText.indexOf(0)
      throw new Error(`cpu backend kernel failed: ${new TextDecoder().decode(this.errorText.slice(0, end < 0 ? undefined : end))}`)
    }
  }

  /** Asks the workers to exit (after the current job) and waits for the threads to end. */
  async close (): Promise<void> {
    this.closing = true
    if (this.dead === null) {
      Atomics.store(this.ctrl, CTRL.EXIT, 1)
      Atomics.add(this.ctrl, CTRL.SEQ, 1)
      Atomics.notify(this.ctrl, CTRL.SEQ)
    }
    // a worker stuck in a long kernel is terminated after a grace period. The timer stays ref'd: the
    // workers are unref'd, so without it a process with nothing else to do could end before their
    // 'exit' events arrive, leaving this close() (and whoever awaits it) pending forever
    const timer = setTimeout(() => { for (const w of this.workers) void w.terminate() }, 2000)
    await Promise.all(this.exited)
    clearTimeout(timer)
  }

  // A worker died: wake a waiting job so it rejects; later jobs reject at once.
  private fail (err: Error): void {
    this.dead ??= err
    Atomics.store(this.ctrl, CTRL.DONE, 0x7fffffff)
    Atomics.notify(this.ctrl, CTRL.DONE)
  }
}
