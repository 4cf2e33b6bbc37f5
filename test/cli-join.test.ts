// `layerswarm join` as a volunteer runs it: a bootstrap node and a node pinned to stage 0 as real
// processes on 127.0.0.1, then `join --bootstrap <addr>` with stdout a pipe (not a TTY). It says
// which backend it took and why (the CPU here: no GPU, or only llvmpipe), takes stage 1 from the
// scheduler, prints training lines, and on SIGINT leaves with its goodbye line and exit 0. Bad flags
// exit 2. The backend pick and the memory budget are checked as functions too.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { removeDirs, tempDir } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'
import { BIN, ROOT, runCli, startCli, terminate, type RunningNode } from './cli-helpers.ts'
import { pickBackend, isSoftwareAdapter } from '../core/join/backend-pick.ts'
import { memoryBudget, BUDGET_CAP } from '../core/join/memory-budget.ts'
import { joinReason } from '../core/join/narrator.ts'
import { joinStartFlags, DEFAULT_JOIN_NETWORK } from '../cli/commands/join.ts'

const GiB = 1024 ** 3

describe('cli: layerswarm join', function () {
  this.timeout(900_000)
  const dirs: string[] = []
  const running: RunningNode[] = []
  const children: ChildProcess[] = []
  const dir = async (): Promise<string> => { const d = await tempDir('lsw-join-'); dirs.push(d); return d }
  after(async () => {
    for (const c of children) if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL')
    await Promise.all(running.map(async n => await terminate(n)))
    await removeDirs(dirs)
  })

  it('joins a running swarm: CPU backend with its reason, a stage from the scheduler, training lines; SIGINT leaves with exit 0', async () => {
    const boot = await startCli(['--bootstrap-node', '--network', 'local', '--data-dir', await dir()], { timeoutMs: 180_000 })
    running.push(boot)
    const pinned = await startCli(['--network', 'local', '--bootstrap', boot.addrs[0], '--stage', '0', '--data-dir', await dir(), '--log-level', 'warn'], { timeoutMs: 180_000 })
    running.push(pinned)

    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('LAYERSWARM_') && k !== 'DISPLAY' && k !== 'WAYLAND_DISPLAY') env[k] = v
    const child = spawn(process.execPath, [BIN, 'join', '--network', 'local', '--bootstrap', boot.addrs[0], '--no-dashboard', '--data-dir', await dir()],
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => { resolve({ code, signal }) }))
    const lines = (): string[] => stdout.split('\n')
    const seen = async (re: RegExp, what: string): Promise<string> => await waitFor(() => lines().find(l => re.test(l)),
      { what: `${what}; stdout:\n${stdout}\nstderr:\n${stderr}`, timeoutMs: 300_000, intervalMs: 200 })

    // this machine has no hardware GPU adapter (none, or llvmpipe): the CPU, and the reason in words
    const backend = await seen(/^backend: /, 'the backend line')
    assert.match(backend, /^backend: CPU, because (no WebGPU adapter was found|the only WebGPU adapter is a software one|WebGPU could not be asked)/)
    assert.match(await seen(/^memory budget: /, 'the memory budget line'), /^memory budget: [\d.]+ [KMG]iB \(50% of /)
    await seen(/^finding peers \(\d+ found/, 'a finding-peers line')
    // stage 0 is pinned by the other node: the scheduler gives the joiner stage 1, the one nobody serves
    assert.match(await seen(/^serving stage /, 'the serving line'), /^serving stage 1 \(stages 0-1\) \(the scheduler chose it: nobody serves it yet\)$/)
    assert.match(await seen(/^training: step /, 'a training line'), /^training: step [\d,]+(, [\d,]+ tokens\/s)?(, loss \d+\.\d\d)?$/)
    const second = await seen(/^training: step .*tokens\/s/, 'a training line with a rate')
    assert.match(second, /, loss \d+\.\d\d$/, 'the last stage computes the loss')

    child.kill('SIGINT')
    const exit = await exited
    assert.deepEqual(exit, { code: 0, signal: null }, `stdout:\n${stdout}\nstderr:\n${stderr}`)
    assert.ok(lines().some(l => l.startsWith('leaving: stopping training')), stdout)
    assert.ok(lines().some(l => l.startsWith('goodbye: this node left the swarm cleanly')), stdout)
    // the pinned node lives on after the joiner left
    assert.equal(pinned.child.exitCode, null)
  })

  it('bad flags exit 2 with a message saying what is wrong', async () => {
    const d = await dir()
    const cases: Array<[string[], RegExp]> = [
      [['--bogus'], /unknown option '--bogus'/],
      [['--max-memory', '12Q', '--data-dir', d], /--max-memory: memory size "12Q" is not a size/],
      [['--dashboard', '127.0.0.1:99999', '--data-dir', d], /--dashboard 127\.0\.0\.1:99999: the port must be an integer/],
      [['--netuid', '3', '--data-dir', d], /--netuid given without --chain/],
      [['--bootstrap', 'not-a-multiaddr', '--data-dir', d], /not-a-multiaddr/],
      [['--network', '/nonexistent/profile.json', '--data-dir', d], /no such network/]
    ]
    // one at a time, with room: six CLI processes at once on a loaded 2-core machine took over 60 s each
    for (const [args, message] of cases) {
      const r = await runCli(['join', ...args], { timeoutMs: 180_000 })
      assert.equal(r.code, 2, `join ${args.join(' ')}: ${r.signal ?? ''} ${r.stderr}`)
      assert.match(r.stderr, message)
      assert.doesNotMatch(r.stdout, /^backend: /m, 'flags are checked before anything starts')
    }
  }).timeout(1_200_000)

  it('picks the backend and sizes the memory budget from what the machine has', () => {
    const hw = { vendor: 'nvidia', architecture: 'hopper', device: 'H100', description: '', isFallbackAdapter: false }
    const llvmpipe = { vendor: 'mesa', architecture: 'software', device: 'llvmpipe', description: 'llvmpipe (LLVM 15)', isFallbackAdapter: true }
    assert.deepEqual(pickBackend({ adapter: hw }).backend, 'webgpu')
    assert.equal(pickBackend({ adapter: llvmpipe }).backend, 'cpu')
    assert.equal(isSoftwareAdapter({ ...hw, description: 'SwiftShader Device', vendor: 'google' }), true)
    assert.equal(isSoftwareAdapter({ ...llvmpipe, architecture: '', isFallbackAdapter: false }), true, 'named llvmpipe is software')
    assert.match(pickBackend({ adapter: null }).why, /no WebGPU adapter/)
    assert.match(pickBackend({ error: 'boom' }).why, /boom/)

    const b = memoryBudget({ total: 16 * GiB, available: 6 * GiB })
    assert.equal(b.bytes, 3 * GiB)
    assert.equal(b.flag, '3072M')
    assert.match(b.why, /50% of 6 GiB free of 16 GiB/)
    assert.equal(memoryBudget({ total: 16 * GiB, available: 12 * GiB, limit: 2 * GiB }).bytes, GiB, 'a cgroup limit counts')
    assert.equal(memoryBudget({ total: 512 * GiB, available: 400 * GiB }).bytes, BUDGET_CAP)

    assert.equal(joinReason(1, [2, 0]), 'nobody serves it yet')
    assert.match(joinReason(0, [0.5, 1.5]), /slowest stage/)
    const f = joinStartFlags({})
    assert.equal(f.network, DEFAULT_JOIN_NETWORK)
    assert.equal(f.stage, undefined, 'the scheduler chooses the stage')
    assert.equal(f.role, 'stage')
  })
})
