// A silent peer caught and routed around (issue 15): a 3-stage swarm of real `layerswarm start`
// processes with two honest stage-1 nodes, then a hostile stage-1 peer in a process of its own
// (test/hostile/silent-peer.ts) that heartbeats as a fast stage-1 server, accepts forward streams
// and never answers. Before the hop deadlines adapted it stalled stage 0 for 196 s. Prints stage 0's
// step rate before and during the attack; asserts only that the attack reached stage 0 (the peer
// accepted streams), that training went on through it by a wide margin, and that stage 0 gave up on
// the silent peer by its deadline (ERR_PEER_DEADLINE in its log) and re-routed.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { ROOT } from './cli-helpers.ts'
import { startSwarm, trainingOf, waitForTraining, writeMicroModel, type TestSwarm } from './swarm-helpers.ts'
import { waitFor } from './wait-helpers.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('pipeline: a silent stage-1 peer (real processes)', function () {
  let dir: string | undefined
  let swarm: TestSwarm | undefined
  let hostile: ChildProcess | undefined

  after(async () => {
    if (hostile?.pid != null && hostile.exitCode == null) {
      hostile.kill('SIGKILL')
      await new Promise(resolve => { hostile?.once('exit', resolve); setTimeout(resolve, 5000) })
    }
    await swarm?.stop()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('stage 0 keeps training: the silent peer is dropped by its deadline, banned, and routed around', async function () {
    this.timeout(420_000)
    dir = await mkdtemp(join(tmpdir(), 'lsw-silent-'))
    const model = await writeMicroModel(dir)
    swarm = await startSwarm(dir, [0, 1, 1, 2], [
      '--stages', '3', '--model', model, '--steps', '100000', '--seed', '7', '--batch', '2', '--lr', '1e-3', '--warmup', '2',
      '--microbatches', '2', '--max-inflight', '4', '--eval-batches', '0', '--log-level', 'info'
    ])
    const s0 = swarm.nodes[0]
    await waitForTraining(swarm.nodes, 'stage 0 past step 10', ts => (ts[0]?.step ?? 0) >= 10, 180_000)
    const stepOf = async (): Promise<number> => (await trainingOf(s0.dataDir))?.step ?? 0

    const WINDOW_MS = 30_000
    const a0 = await stepOf()
    await sleep(WINDOW_MS)
    const before = (await stepOf()) - a0
    const runId = (await trainingOf(s0.dataDir))?.runId as string
    assert.ok(typeof runId === 'string' && runId.length > 0, 'the run id from stage 0\'s status')

    // the attack: every node's address, so stage 0 has a direct connection to dial the silent peer on
    const connect = [swarm.boot, ...swarm.nodes.map(n => n.node)].map(n => n.addrs[0]).join(',')
    const proc = hostile = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/hostile/silent-peer.ts'), '--run', runId, '--stage', '1', '--stages', '3', '--connect', connect], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let silent = ''
    let accepted = 0
    let stderr = ''
    proc.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', line => {
      try {
        const o = JSON.parse(line) as { peer?: string, accepted?: number }
        if (o.peer != null) silent = o.peer
        if (o.accepted != null) accepted = o.accepted
      } catch {}
    })
    await waitFor(() => silent !== '' ? true : undefined, { what: 'the silent peer to start', timeoutMs: 60_000, intervalMs: 200, state: () => stderr })
    // the attack window starts when stage 0 first routed to it
    await waitFor(() => accepted > 0 ? true : undefined, { what: 'stage 0 to route to the silent peer', timeoutMs: 90_000, intervalMs: 500, state: () => `accepted ${accepted}; ${stderr}` })
    const b0 = await stepOf()
    await sleep(WINDOW_MS)
    const during = (await stepOf()) - b0

    const log = await readFile(join(dir, `${s0.name}.log`), 'utf8')
    const deadlines = log.split('\n').filter(l => l.includes(silent) && l.includes('ERR_PEER_DEADLINE')).length
    const rate = (n: number): string => (n / (WINDOW_MS / 1000)).toFixed(2)
    console.log(`      stage 0: ${rate(before)} steps/s before, ${rate(during)} steps/s during the attack (${WINDOW_MS / 1000} s windows, load ${(await import('node:os')).loadavg()[0].toFixed(1)}); ` +
      `silent peer accepted ${accepted} streams, stage 0 logged ${deadlines} deadline failures on it`)

    assert.ok(before >= 5, `training ran before the attack: ${before} steps`)
    assert.ok(accepted >= 1, 'the silent peer was routed to')
    assert.ok(deadlines >= 1, 'stage 0 gave up on the silent peer by its deadline')
    // the stall: 0.15 steps/s against 4.4 (3%); here training goes on. The share during the
    // window swings with the load (each deadline failure stalls stage 0's step for that deadline):
    // 0.20-0.41 in six runs at load 1.6-3.9 (CI and local, 2026-12-07), so the bound is 0.15, five
    // times the stall's share, not the 0.25 it was (two CI runs at load 2.6-3.3 measured 0.20 and 0.22)
    assert.ok(during >= Math.max(3, 0.15 * before), `training went on during the attack: ${during} steps against ${before} before`)
  })
})
