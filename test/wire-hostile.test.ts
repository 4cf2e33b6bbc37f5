// Peers that bloat, flood, cut off or hold streams (issue 15), against a live 3-stage swarm of
// real `layerswarm start` processes; the attacker is a process of its own (test/hostile/wire-attack.ts)
// aimed at the one stage-1 node, which every microbatch crosses. Prints stage 0's step rate and the
// receiver's memory (VmRSS sampled, VmHWM) before and during each attack. Asserts robust outcomes
// only: the receiver's memory under the bloat stays well below the 2.1 GiB (its budget plus
// slack), nodes stay up and training goes on, cut-off frames are dropped at once, the flooder is
// penalised, and a node with held inbound streams still reaches `done`.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { queryControl } from '../core/node/control-endpoint.ts'
import { defaultBudgetOptions } from '../core/wire/budget.ts'
import { ROOT } from './cli-helpers.ts'
import { startSwarm, trainingOf, waitForTraining, writeMicroModel, type TestSwarm } from './swarm-helpers.ts'
import { waitFor } from './wait-helpers.ts'

const MiB = 1024 * 1024
const WINDOW_MS = 20_000
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** VmRSS and VmHWM of `pid`, in MiB. */
function memoryOf (pid: number): { rss: number, hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) / 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

interface Attacker {
  proc: ChildProcess
  peer: () => string
  stats: () => Record<string, number | boolean>
  stop: () => Promise<void>
}

function attacker (runId: string, target: string, args: string[]): Attacker {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/hostile/wire-attack.ts'), '--run', runId, '--target', target, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let peer = ''
  let stats: Record<string, number | boolean> = {}
  proc.stderr?.on('data', () => {})
  createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', line => {
    try {
      const o = JSON.parse(line) as Record<string, number | boolean> & { peer?: string }
      if (o.peer != null) peer = o.peer
      else stats = o
    } catch {}
  })
  const exited = new Promise<void>(resolve => { proc.once('exit', () => { resolve() }) })
  return {
    proc,
    peer: () => peer,
    stats: () => stats,
    stop: async () => {
      if (proc.exitCode == null && proc.signalCode == null) proc.kill('SIGTERM')
      const t = setTimeout(() => { proc.kill('SIGKILL') }, 5000)
      await exited
      clearTimeout(t)
    }
  }
}

/** The penalties the node's judge holds, from its status (wherever the runtime reports them). */
async function penaltiesOf (dataDir: string, peer: string): Promise<number> {
  const text = JSON.stringify(await queryControl(dataDir, '/status', { timeoutMs: 5000 }))
  const m = new RegExp(`"${peer}":(\\d+)`).exec(text)
  return m == null ? 0 : Number(m[1])
}

describe('wire: hostile clients against a live swarm (real processes)', function () {
  let dir: string | undefined
  let swarm: TestSwarm | undefined
  const attackers: Attacker[] = []

  afterEach(async () => {
    for (const a of attackers.splice(0)) await a.stop()
    await swarm?.stop()
    swarm = undefined
    if (dir != null) await rm(dir, { recursive: true, force: true })
    dir = undefined
  })

  it('bloat, flood and cut-off frames: the receiver\'s memory stays bounded, training goes on, the flooder is penalised', async function () {
    this.timeout(600_000)
    dir = await mkdtemp(join(tmpdir(), 'lsw-wire-hostile-'))
    const model = await writeMicroModel(dir)
    swarm = await startSwarm(dir, [0, 1, 2], [
      '--stages', '3', '--model', model, '--steps', '100000', '--seed', '7', '--batch', '2', '--lr', '1e-3', '--warmup', '2',
      '--microbatches', '2', '--max-inflight', '4', '--eval-batches', '0', '--log-level', 'info'
    ])
    const [s0, s1] = swarm.nodes
    await waitForTraining(swarm.nodes, 'stage 0 past step 10', ts => (ts[0]?.step ?? 0) >= 10, 180_000)
    const runId = (await trainingOf(s0.dataDir))?.runId as string
    const stepOf = async (): Promise<number> => (await trainingOf(s0.dataDir))?.step ?? 0
    const target = s1.node.addrs[0]

    /** Stage 0's steps and the receiver's peak sampled RSS over one window. */
    const measure = async (): Promise<{ steps: number, peakRss: number }> => {
      const a = await stepOf()
      let peakRss = 0
      const until = Date.now() + WINDOW_MS
      while (Date.now() < until) {
        peakRss = Math.max(peakRss, memoryOf(s1.node.pid).rss)
        await sleep(200)
      }
      return { steps: (await stepOf()) - a, peakRss }
    }
    const rate = (n: number): string => (n / (WINDOW_MS / 1000)).toFixed(2)

    const base = await measure()
    const baseHwm = memoryOf(s1.node.pid).hwm
    console.log(`      before: stage 0 ${rate(base.steps)} steps/s, receiver RSS peak ${base.peakRss.toFixed(0)} MiB, VmHWM ${baseHwm.toFixed(0)} MiB (load ${loadavg()[0].toFixed(1)})`)
    const figures: Record<string, { steps: number, peakRss: number, hwm: number, stats: Record<string, number | boolean> }> = {}
    const attacks: Array<[string, string[]]> = [
      ['bloat', ['--attack', 'bloat', '--streams', '32', '--declare', '64', '--send', '56']],
      ['flood', ['--attack', 'flood', '--seconds', String(WINDOW_MS / 1000), '--workers', '16']],
      ['cutoff', ['--attack', 'cutoff', '--streams', '8', '--declare', '30', '--send', '28']]
    ]
    let flooder = ''
    for (const [name, args] of attacks) {
      const a = attacker(runId, target, args)
      attackers.push(a)
      await waitFor(() => a.peer() !== '' ? true : undefined, { what: `the ${name} attacker to start`, timeoutMs: 60_000, intervalMs: 200 })
      if (name === 'flood') flooder = a.peer()
      const m = await measure()
      const hwm = memoryOf(s1.node.pid).hwm
      figures[name] = { ...m, hwm, stats: a.stats() }
      console.log(`      ${name}: stage 0 ${rate(m.steps)} steps/s, receiver RSS peak ${m.peakRss.toFixed(0)} MiB, VmHWM ${hwm.toFixed(0)} MiB (load ${loadavg()[0].toFixed(1)}); attacker ${JSON.stringify(a.stats())}`)
      await a.stop()
      attackers.splice(attackers.indexOf(a), 1)
    }

    const budget = defaultBudgetOptions()
    const log = await readFile(join(dir, `${s1.name}.log`), 'utf8')
    const count = (code: string): number => log.split('\n').filter(l => l.includes(code)).length
    const flooderPenalties = await penaltiesOf(s1.dataDir, flooder)
    console.log(`      receiver's budget: ${budget.nodeBytes / MiB} MiB node-wide, ${budget.peerBytes / MiB} MiB per peer; log: ${count('ERR_WIRE_PEER_BUDGET')} peer-budget refusals, ` +
      `${count('ERR_WIRE_RATE')} rate-limit refusals, ${count('ERR_WIRE_TRUNCATED')} cut-off frames, ${count('ERR_WIRE_IDLE')} idle streams; flooder's penalties ${flooderPenalties}`)

    // what stage 0 saw meanwhile (for reading the step rates)
    const log0 = await readFile(join(dir, `${s0.name}.log`), 'utf8')
    const codes: Record<string, number> = {}
    for (const m of log0.matchAll(/"code":"(ERR_[A-Z_]+)"/g)) codes[m[1]] = (codes[m[1]] ?? 0) + 1
    console.log(`      stage 0's log, error codes: ${JSON.stringify(codes)}; connections closed for flooding (stage 1): ${count('blocked for flooding')}`)

    // every node is still up and training
    for (const n of swarm.nodes) assert.equal(n.node.exit, null, `${n.name} is still running`)
    assert.ok(base.steps >= 5, `training ran before the attacks: ${base.steps} steps`)
    // the issue: 250 MiB -> 2.1 GiB; here at most one peer's share on top, with slack for the runtime
    const bound = baseHwm + budget.peerBytes / MiB + 300
    assert.ok(figures.bloat.hwm < Math.min(bound, 1536), `receiver's peak memory under the bloat ${figures.bloat.hwm.toFixed(0)} MiB < ${bound.toFixed(0)} MiB`)
    // past its share of bytes or of its byte rate (whichever it reaches first), then blocked
    assert.ok(count('ERR_WIRE_PEER_BUDGET') + count('ERR_WIRE_RATE') >= 1, 'the bloating peer was refused')
    assert.ok(figures.cutoff.hwm < Math.min(bound, 1536), `receiver's peak memory with cut-off frames ${figures.cutoff.hwm.toFixed(0)} MiB < ${bound.toFixed(0)} MiB`)
    // the receiver aborted every stream whose frame a clean close cut off (before, they stayed half open, pinned)
    assert.equal(figures.cutoff.stats.reset, 8, 'every cut-off stream was aborted by the receiver')
    assert.ok(flooderPenalties >= 1, 'the flooder was penalised')
    for (const name of ['bloat', 'flood', 'cutoff']) assert.ok(figures[name].steps >= 1, `training went on during the ${name} attack`)
  })

  it('a node whose inbound streams are held open still reaches done', async function () {
    this.timeout(600_000)
    dir = await mkdtemp(join(tmpdir(), 'lsw-wire-held-'))
    const model = await writeMicroModel(dir)
    swarm = await startSwarm(dir, [0, 1, 2], [
      '--stages', '3', '--model', model, '--steps', '40', '--seed', '7', '--batch', '2', '--lr', '1e-3', '--warmup', '2',
      '--microbatches', '2', '--max-inflight', '4', '--eval-batches', '0', '--log-level', 'info'
    ])
    const [s0, s1] = swarm.nodes
    await waitForTraining(swarm.nodes, 'stage 0 training', ts => (ts[0]?.step ?? 0) >= 1, 180_000)
    const runId = (await trainingOf(s0.dataDir))?.runId as string
    // a new silent stream every 5 s: one is always younger than any request deadline
    const a = attacker(runId, s1.node.addrs[0], ['--attack', 'hold', '--every', '5000'])
    attackers.push(a)
    await waitFor(() => (a.stats().held as number ?? 0) >= 1 ? true : undefined, { what: 'a held stream', timeoutMs: 60_000, intervalMs: 200 })
    const t0 = Date.now()
    await waitForTraining(swarm.nodes, 'every node done', ts => ts.every(t => t?.state === 'done'), 400_000)
    const graced = (await readFile(join(dir, `${s1.name}.log`), 'utf8')).split('\n').filter(l => l.includes('still in flight here: ending anyway')).length
    console.log(`      every node done ${((Date.now() - t0) / 1000).toFixed(0)} s after the first held stream; stage 1 ended past held streams: ${graced > 0}; attacker ${JSON.stringify(a.stats())}`)
    assert.ok((a.stats().held as number) >= 2, 'streams were held open while the run ended')
    assert.ok(graced >= 1, 'stage 1 ended with held streams in flight, after the grace period')
  })
})
