// `layerswarm demo` as a real process: bad flags exit 2 with a message saying what to change, and
// a SIGTERM in the middle of a run stops every node process the demo started (no orphans).
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BIN, ROOT, runCli } from './cli-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'
import { pidAlive, writeMicroModel } from './swarm-helpers.ts'

describe('demo: flags', function () {
  this.timeout(120_000)

  const cases: Array<[string[], RegExp]> = [
    [['--nodes', '2', '--stages', '3'], /--nodes 2 is fewer than --stages 3: every stage needs at least one node/],
    [['--stages', '1'], /--stages must be an integer >= 2, got "1"/],
    [['--stages', '5', '--nodes', '5'], /--stages 5 is more than the model's 4 layers/],
    [['--nodes', '3', '--stages', '3', '--kill-at-step', '5'], /--kill-at-step needs a stage served by two nodes/],
    [['--steps', '20', '--kill-at-step', '20'], /--kill-at-step 20 must be below --steps 20/],
    [['--nodes', '40'], /--nodes 40 is more than 32 processes on one machine/],
    [['--backend', 'nosuch'], /--backend nosuch is not a known backend/],
    [['--steps', 'ten'], /--steps must be an integer >= 1, got "ten"/],
    [['--lr', '0'], /--lr must be a number > 0/],
    [['--model', 'missing-model.json'], /cannot read model config .*missing-model\.json: ENOENT/],
    [['--data', '/nonexistent/corpus.txt'], /--data \/nonexistent\/corpus\.txt: no such file or folder/],
    [['--nodse', '4'], /unknown option '--nodse'/],
    [['--codec', 'int9-block'], /--codec int9-block is not a codec; use one of none, raw, fp32, fp16, .*int8-block/],
    [['--codec', 'none', '--grad-codec', 'zip'], /--grad-codec zip is not a codec/],
    [['--bottleneck', '128'], /--bottleneck 128 must be below the model width 128/],
    [['--bottleneck', '-1'], /--bottleneck must be an integer >= 0/]
  ]
  it('exits 2 on training text shorter than one window', async () => {
    const dir = await tempDir('lsw-demo-flags-')
    try {
      const file = join(dir, 'tiny.txt')
      await writeFile(file, 'In the beginning.\n')
      const r = await runCli(['demo', '--data', file])
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, /the training text .*tiny\.txt has 19 tokens, fewer than one window of 65; give more text with --data/)
    } finally {
      await removeDirs([dir])
    }
  })

  for (const [args, message] of cases) {
    it(`exits 2 on ${args.join(' ')}`, async () => {
      const r = await runCli(['demo', ...args])
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, message)
      assert.equal(r.stdout, '')
    })
  }

  it('--help lists the flags', async () => {
    const r = await runCli(['demo', '--help'])
    assert.equal(r.code, 0)
    for (const f of ['--nodes', '--stages', '--steps', '--report', '--out', '--model', '--backend', '--seed', '--kill-at-step', '--codec', '--grad-codec', '--bottleneck']) assert.ok(r.stdout.includes(f), f)
  })
})

describe('demo: no orphans', function () {
  this.timeout(300_000)
  const dirs: string[] = []
  after(async () => { await removeDirs(dirs) })

  /** Starts `layerswarm demo` on the micro model with a long run; collects its stderr and the pids it notes. */
  async function startDemo (args: string[]): Promise<{ demo: ChildProcess, stderr: () => string, pids: () => number[], exited: Promise<number | null>, cleanup: () => void }> {
    const dir = await tempDir('lsw-demo-orphans-')
    dirs.push(dir)
    const model = await writeMicroModel(dir)
    const demo = spawn(process.execPath, [BIN, 'demo', '--steps', '100000', '--model', model, '--out', join(dir, 'out'), '--batch', '2', ...args], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe']
    })
    let stderr = ''
    demo.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
    demo.stdout?.resume()
    const exited = new Promise<number | null>(resolve => demo.on('exit', c => { resolve(c) }))
    // the display notes each node's pid as it starts
    const pids = (): number[] => [...stderr.matchAll(/\bpid (\d+)\b/g)].map(m => Number(m[1]))
    const cleanup = (): void => {
      if (demo.exitCode != null) return
      demo.kill('SIGKILL')
      for (const pid of pids()) { try { process.kill(-pid, 'SIGKILL') } catch {} }
    }
    return { demo, stderr: () => stderr, pids, exited, cleanup }
  }

  it('SIGTERM during a run stops every node it started, then exits 130', async () => {
    const { demo, stderr, pids, exited, cleanup } = await startDemo(['--nodes', '3', '--stages', '2'])
    try {
      await waitFor(() => pids().length >= 4 || demo.exitCode != null, { what: 'the demo to start 4 processes', timeoutMs: 180_000, intervalMs: 200 })
      assert.equal(demo.exitCode, null, `the demo ended early:\n${stderr()}`)
      const started = pids()
      assert.equal(started.length, 4)
      for (const pid of started) assert.ok(pidAlive(pid), `pid ${pid} runs`)
      demo.kill('SIGTERM')
      assert.equal(await exited, 130, stderr())
      assert.match(stderr(), /SIGTERM: stopping every node of the demo/)
      assert.match(stderr(), /demo interrupted; every node it started has stopped/)
      for (const pid of started) assert.equal(pidAlive(pid), false, `pid ${pid} is gone`)
    } finally {
      cleanup()
    }
  })

  it('a failed run (its only stage-0 node killed from outside) exits 1 naming the cause, and stops the other nodes', async () => {
    const { demo, stderr, pids, exited, cleanup } = await startDemo(['--nodes', '2', '--stages', '2'])
    try {
      await waitFor(() => /step [1-9]\d*\/100000/.test(stderr()) || demo.exitCode != null, { what: 'the first steps', timeoutMs: 240_000, intervalMs: 200 })
      assert.equal(demo.exitCode, null, `the demo ended early:\n${stderr()}`)
      const started = pids()
      assert.equal(started.length, 3)
      const s0 = Number(/\bs0 +stage 0 +pid (\d+)/.exec(stderr())?.[1])
      process.kill(s0, 'SIGKILL')
      assert.equal(await exited, 1, stderr())
      assert.match(stderr(), /node s0 \(stage 0\) exited: signal SIGKILL/)
      assert.match(stderr(), /layerswarm: stage 0 has no live node left; the run cannot finish/)
      for (const pid of started) assert.equal(pidAlive(pid), false, `pid ${pid} is gone`)
    } finally {
      cleanup()
    }
  })
})
