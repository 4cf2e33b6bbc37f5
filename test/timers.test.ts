// core/timers.ts: deadlines fire on time while garbage is collected every 20 ms (the failure mode of
// AbortSignal.any + AbortSignal.timeout on Node 20, nodejs/node#57736), parents propagate, clear()
// detaches, fractional and out-of-range delays are accepted; the DHT group finder's deadlines hold;
// and no source file builds a deadline any other way.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { deadline, pause, sleep, timerMs, withDeadline } from '../core/timers.ts'
import { DhtGroupFinder } from '../core/averaging/group.ts'
import { gc, underGc } from './gc-helpers.ts'

const ROOT = join(fileURLToPath(import.meta.url), '..', '..')

/** Resolves with the signal's reason when it aborts. */
async function aborted (signal: AbortSignal): Promise<unknown> {
  return await new Promise(resolve => {
    if (signal.aborted) { resolve(signal.reason); return }
    signal.addEventListener('abort', () => { resolve(signal.reason) }, { once: true })
  })
}

describe('timers: deadlines that always fire', function () {
  it('a deadline combined with a parent fires on time under forced collections (where AbortSignal.any does not)', async () => {
    const parent = new AbortController()
    const { value: reason, ms } = await underGc(async () => {
      const d = deadline(150, parent.signal)
      // nothing but the promise below references d's signal: exactly the composite case that fails
      return await aborted(d.signal)
    })
    assert.equal((reason as Error).name, 'TimeoutError')
    assert.ok(ms >= 145 && ms < 10_000, `fired after ${ms.toFixed(0)} ms`)
    // the bug this guards against, shown (not asserted: a fixed Node may fire it)
    const c = new AbortController()
    const composite = AbortSignal.any([c.signal, AbortSignal.timeout(100)])
    await underGc(async () => { await new Promise(resolve => setTimeout(resolve, 400)) })
    console.log(`      [fact] AbortSignal.any([signal, AbortSignal.timeout(100)]) after 400 ms of collections on Node ${process.version}: ${composite.aborted ? 'fired' : 'never fired'}`)
  })

  it('a parent that aborts first passes its reason; an already aborted parent aborts at once', async () => {
    const parent = new AbortController()
    const d = deadline(10_000, parent.signal)
    const why = new Error('stop')
    parent.abort(why)
    assert.equal(d.signal.aborted, true)
    assert.equal(d.signal.reason, why)
    d.clear()
    const d2 = deadline(10_000, undefined, parent.signal, null)
    assert.equal(d2.signal.reason, why)
    d2.clear()
  })

  it('clear() stops the timer and detaches from the parents', async () => {
    const parent = new AbortController()
    const d = deadline(50, parent.signal)
    d.clear()
    d.clear() // idempotent
    await sleep(120)
    parent.abort()
    assert.equal(d.signal.aborted, false)
  })

  it('withDeadline clears however the work ends, and its signal fires when the work overruns', async () => {
    const parent = new AbortController()
    let seen: AbortSignal | undefined
    assert.equal(await withDeadline(5_000, [parent.signal], async s => { seen = s; return 7 }), 7)
    parent.abort()
    assert.equal(seen?.aborted, false, 'detached after the work resolved')
    await assert.rejects(withDeadline(5_000, [], async () => { throw new RangeError('boom') }), RangeError)
    const { value, ms } = await underGc(async () => await withDeadline(100, [], async s => await sleep(10_000, s).then(() => 'slept', (e: Error) => e.name)))
    assert.equal(value, 'TimeoutError')
    assert.ok(ms < 1500, `overrun cut after ${ms.toFixed(0)} ms`)
  })

  it('fractional, zero, negative, NaN and huge delays: no throw (AbortSignal.timeout(10000.5) throws ERR_OUT_OF_RANGE)', async () => {
    assert.throws(() => AbortSignal.timeout(10000.5), { code: 'ERR_OUT_OF_RANGE' })
    assert.equal(timerMs(10000.5), 10001)
    assert.equal(timerMs(-5), 0)
    assert.equal(timerMs(Number.NaN), 0)
    assert.equal(timerMs(1e12), 0x7fffffff)
    const d = deadline(10000.5)
    assert.equal(d.signal.aborted, false)
    d.clear()
    for (const ms of [0, -1, Number.NaN, 0.4]) {
      const z = deadline(ms)
      assert.equal((await aborted(z.signal) as Error).name, 'TimeoutError', `deadline(${ms})`)
    }
  })

  it('sleep rejects with the signal reason; pause resolves false', async () => {
    const c = new AbortController()
    const p = sleep(10_000, c.signal)
    const q = pause(10_000, c.signal)
    const why = new Error('why')
    c.abort(why)
    await assert.rejects(p, e => e === why)
    assert.equal(await q, false)
    assert.equal(await pause(1), true)
  })

  it('the DHT group finder returns by its deadline when the DHT never answers, under collections', async () => {
    let providing: AbortSignal | undefined
    const hang = async (signal?: AbortSignal): Promise<void> => {
      await new Promise<void>((_resolve, reject) => { signal?.addEventListener('abort', () => { reject(signal.reason) }, { once: true }) })
    }
    const routing = {
      contentRouting: {
        async provide (_key: unknown, o: { signal?: AbortSignal }) { providing = o.signal; await hang(o.signal) },
        async * findProviders (_key: unknown, o: { signal?: AbortSignal }) { await hang(o.signal); yield * [] }
      }
    }
    const finder = new DhtGroupFinder(routing as never, { pollMs: 50 })
    const found = new Set<string>(['me'])
    const { ms } = await underGc(async () => { await finder.find({ name: 'g', self: 'me', deadline: Date.now() + 400, found }) })
    // the bug this catches is never returning; a loaded machine (load 16) took 2.3 s to come back from the GCs
    assert.ok(ms >= 390 && ms < 10_000, `find() returned after ${ms.toFixed(0)} ms`)
    gc()
    await sleep(50)
    assert.equal(providing?.aborted, true, 'the background provide was cut at the deadline too')
  })
})

describe('timers: one way to build a deadline', function () {
  it('no source outside core/timers.ts calls AbortSignal.any or AbortSignal.timeout', async () => {
    const offenders: string[] = []
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = join(dir, e.name)
        if (e.isDirectory()) { if (e.name !== 'node_modules' && e.name !== 'fixtures') await walk(p); continue }
        if (!/\.(ts|js|mjs)$/.test(e.name)) continue
        const rel = relative(ROOT, p)
        if (rel === join('core', 'timers.ts')) continue
        const text = await readFile(p, 'utf8')
        text.split('\n').forEach((line, i) => {
          const code = line.replace(/\/\/.*$/, '')
          if (/AbortSignal\s*\.\s*(any|timeout)\s*\(/.test(code)) offenders.push(`${rel}:${i + 1}: ${line.trim()}`)
        })
      }
    }
    for (const d of ['core', 'plugins', 'cli', 'bench', 'bin']) await walk(join(ROOT, d)).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
    assert.deepEqual(offenders, [], 'build deadlines with deadline()/withDeadline() from core/timers.ts (see its opening comment)')
  })
})
