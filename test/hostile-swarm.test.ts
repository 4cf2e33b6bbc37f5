// Hostile peers against a live swarm of real `layerswarm start` processes (issue 15), each attacker
// a process of its own (test/hostile/swarm-attack.ts): peers that drop every microbatch, peers that
// feed a stage work it should not take, a heartbeat flood (with a control window), and Sybil provider records of the
// averaging rounds. Prints stage 0's step rate and the honest nodes' memory before and during each
// attack (and the counts); asserts robust outcomes only: droppers judged and routed around, fed
// work refused and never answered, rounds with a partner under the Sybils, training goes on.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { startSwarm, trainingOf, waitForTraining, writeMicroModel, type TestSwarm } from './swarm-helpers.ts'
import { waitFor } from './wait-helpers.ts'
import { cpuSecondsOf, describeWindow, measure, runArgs, startAttacker, type Attacker, type Window } from './hostile/swarm-measure.ts'

const WINDOW_MS = 12_000
const load = (): string => `load ${loadavg()[0].toFixed(1)}`

describe('hostile peers against a live swarm (real processes)', function () {
  let dir: string | undefined
  let swarm: TestSwarm | undefined
  const attackers: Attacker[] = []

  afterEach(async () => {
    for (const a of attackers.splice(0)) await a.stop()
    await swarm?.stop()
    swarm = undefined
    // LSW_KEEP_LOGS=1 keeps the nodes' logs for reading
    if (dir != null && process.env.LSW_KEEP_LOGS !== '1') await rm(dir, { recursive: true, force: true })
    else if (dir != null) console.log(`      logs kept in ${dir}`)
    dir = undefined
  })

  const attack = async (args: string[]): Promise<Attacker> => {
    const a = await startAttacker(args)
    attackers.push(a)
    return a
  }
  const stopAttacker = async (a: Attacker): Promise<void> => {
    await a.stop()
    attackers.splice(attackers.indexOf(a), 1)
  }

  it('droppers and fed microbatches: penalised or refused, training goes on', async function () {
    this.timeout(600_000)
    dir = await mkdtemp(join(tmpdir(), 'lsw-hostile-swarm-'))
    const model = await writeMicroModel(dir)
    // averaging off: a stage-1 dropper in the view would otherwise hold stage 1 in rounds it never joins
    swarm = await startSwarm(dir, [0, 1, 2], await runArgs(dir, model, 0))
    const [s0, s1, s2] = swarm.nodes
    await waitForTraining(swarm.nodes, 'stage 0 past step 10', ts => (ts[0]?.step ?? 0) >= 10, 180_000)
    const runId = (await trainingOf(s0.dataDir))?.runId as string
    const connect = [swarm.boot, ...swarm.nodes.map(n => n.node)].map(n => n.addrs[0]).join(',')
    const base = ['--run', runId, '--stages', '3', '--connect', connect]
    const d = dir
    const logOf = async (name: string): Promise<string[]> => (await readFile(join(d, `${name}.log`), 'utf8')).split('\n')

    // 1. microbatches fed into stage 1 by a peer that is no stage-0 node; then into stage 2 by one that
    // heartbeats as a stage-1 server (so it passes the upstream check) and names stage 0 as their origin
    const feeds: Record<string, Record<string, number>> = {}
    for (const [name, target, extra] of [['stranger', s1, ['--stage', '1']], ['origin', s2, ['--stage', '2', '--origin', s0.node.peerId]]] as const) {
      const before = await measure(s0, [target], WINDOW_MS)
      const a = await attack([...base, '--attack', 'feed', '--target', target.node.addrs[0], ...extra])
      await waitFor(() => (a.stats().sent ?? 0) >= 1 ? true : undefined, { what: `the ${name} feeder's first microbatch`, timeoutMs: 60_000, intervalMs: 200 })
      const during = await measure(s0, [target], WINDOW_MS)
      feeds[name] = a.stats()
      console.log(`      fed (${name}, stage ${target.stage} watched): before ${describeWindow(before, WINDOW_MS)}; during ${describeWindow(during, WINDOW_MS)} (${load()}); feeder ${JSON.stringify(a.stats())}`)
      await stopAttacker(a)
      assert.ok(during.steps >= 1, `training went on while the ${name} feeder fed stage 1`)
    }

    // 2. k = 1 and k = 2 stage-1 identities that answer every microbatch with ERR_PIPELINE_DROPPED
    const drops: Record<number, { share: number, penalised: number, k: number }> = {}
    for (const k of [1, 2]) {
      const before = await measure(s0, [s1], WINDOW_MS)
      const a = await attack([...base, '--attack', 'drop', '--identities', String(k), '--stage', '1'])
      const received = (): number => Array.from({ length: k }, (_, i) => a.stats()[`received${i}`] ?? 0).reduce((x, y) => x + y, 0)
      // the window opens when stage 0 first routed to a dropper
      await waitFor(() => received() >= 1 ? true : undefined, { what: 'stage 0 to route to a dropper', timeoutMs: 90_000, intervalMs: 200 })
      const r0 = received()
      const during = await measure(s0, [s1], WINDOW_MS)
      const took = received() - r0
      // every microbatch stage 0 completed crossed the honest stage-1 node
      const share = took / Math.max(1, took + 2 * during.steps)
      const log0 = await logOf(s0.name)
      // judged RepeatedDropsError: a 'reject' verdict on a remote drop (the line logs the remote's code)
      const penalised = a.peers().filter(p => log0.some(l => l.includes(`peer=${p}`) && l.includes('verdict=reject') && l.includes('ERR_PIPELINE_DROPPED'))).length
      drops[k] = { share, penalised, k }
      console.log(`      ${k} dropper(s): before ${describeWindow(before, WINDOW_MS)}; during ${describeWindow(during, WINDOW_MS)} (${load()}); ` +
        `droppers took ${took} microbatches in the window (${(100 * share).toFixed(1)}% of the stage's; unpenalised ~${(100 * k / (k + 1)).toFixed(0)}%), ` +
        `${received()} in all; ${penalised} of ${k} judged (repeated drops, reject) by stage 0`)
      await stopAttacker(a)
      assert.ok(during.steps >= 1, `training went on beside ${k} dropper(s)`)
    }

    for (const n of swarm.nodes) assert.equal(n.node.exit, null, `${n.name} is still running`)
    // fed work: refused, never answered (nothing trained on)
    assert.equal(feeds.stranger.answered ?? 0, 0, 'stage 1 answered no microbatch of the stranger')
    assert.ok((feeds.stranger.ERR_PIPELINE_UPSTREAM ?? 0) >= 1, 'the stranger was refused as no stage-0 node')
    assert.equal(feeds.origin.answered ?? 0, 0, 'stage 2 answered no microbatch naming another origin')
    assert.ok((feeds.origin.ERR_PIPELINE_ORIGIN_AUTH ?? 0) >= 1, 'the forged origin was refused')
    // droppers: each judged; together they took less than an unpenalised share
    // droppers: each judged, and together they took less than an unpenalised share
    for (const { k, share, penalised } of Object.values(drops)) {
      assert.equal(penalised, k, `every one of the ${k} dropper(s) was judged`)
      assert.ok(share < k / (k + 1), `${k} dropper(s) took ${(100 * share).toFixed(1)}% of the stage's microbatches, below the unpenalised ${(100 * k / (k + 1)).toFixed(0)}%`)
    }
  })

  // 20,000 valid heartbeats of a fresh identity (the issue: training stalled ~55 s). The flooder signs
  // every one before the window and sends at the rate it once reached signing as it went, so its own
  // CPU in the window is sending only; a control window after it burns that same CPU in a process
  // that sends nothing, so before / control / flood separate what the flood costs the honest nodes
  // from what a busy neighbour process costs them on this shared machine.
  it('a heartbeat flood: the flooder is cut off, views kept, training goes on', async function () {
    this.timeout(600_000)
    dir = await mkdtemp(join(tmpdir(), 'lsw-hostile-flood-'))
    const model = await writeMicroModel(dir)
    swarm = await startSwarm(dir, [0, 1, 2], await runArgs(dir, model, 0))
    const s0 = swarm.nodes[0]
    await waitForTraining(swarm.nodes, 'stage 0 past step 10', ts => (ts[0]?.step ?? 0) >= 10, 180_000)
    const runId = (await trainingOf(s0.dataDir))?.runId as string
    const connect = [swarm.boot, ...swarm.nodes.map(n => n.node)].map(n => n.addrs[0]).join(',')
    const base = ['--run', runId, '--stages', '3', '--connect', connect]

    const flooded = async (extra: string[]): Promise<{ during: Window, cpu: number, sent: number, ms: number, stats: Record<string, number>, cut: number[], load: string }> => {
      const a = await attack([...base, '--attack', 'hbflood', '--count', '20000', '--subscribers', String(nodes.length), ...extra])
      await waitFor(() => (a.stats().ready ?? 0) > 0 ? true : undefined, { what: 'the flooder to sign its heartbeats', timeoutMs: 120_000, intervalMs: 100 })
      const t0 = Date.now()
      const sent0 = a.stats().sent ?? 0
      const cpu0 = cpuSecondsOf(a.proc.pid as number)
      const during = await measure(s0, nodes, WINDOW_MS)
      const cpu = cpuSecondsOf(a.proc.pid as number) - cpu0
      const sent = (a.stats().sent ?? 0) - sent0
      const l = load()
      await waitFor(() => (a.stats().finished ?? 0) > 0 ? true : undefined, { what: 'the flood to end', timeoutMs: 180_000, intervalMs: 250, state: () => JSON.stringify(a.stats()) })
      const ms = Date.now() - t0
      const logs = await Promise.all(nodes.map(async n => (await readFile(join(dir as string, `${n.name}.log`), 'utf8')).split('\n')))
      const cut = logs.map(l => l.filter(x => x.includes(a.peers()[0]) && x.includes('flood')).length)
      await stopAttacker(a)
      return { during, cpu, sent, ms, stats: a.stats(), cut, load: l }
    }
    const nodes = swarm.nodes
    const pct = (x: number): string => `${(100 * x / (WINDOW_MS / 1000)).toFixed(0)}%`
    const show = (name: string, f: Awaited<ReturnType<typeof flooded>>): void => {
      console.log(`      ${name}: ${describeWindow(f.during, WINDOW_MS)} (${f.load}); ${f.sent} heartbeats in the window (${f.stats.reached ?? 0} of 20,000 went to a node), flooder CPU ${pct(f.cpu)} of a core` +
        `${f.stats.signMs != null ? ` (signing all 20,000 beforehand took ${(f.stats.signMs / 1000).toFixed(1)} s CPU; dated ${f.stats.lateMs ?? 0} ms before they went out)` : ''}; 20,000 sent in ${(f.ms / 1000).toFixed(1)} s; ` +
        `nodes that logged cutting it off: ${f.cut.filter(x => x > 0).length} of ${f.cut.length}`)
    }

    const before = await measure(s0, nodes, WINDOW_MS)
    console.log(`      before: ${describeWindow(before, WINDOW_MS)} (${load()})`)
    // as first written: the flooder signs each heartbeat as it goes (its CPU on the nodes' cores)
    const signing = await flooded(['--presign', '0'])
    show('flood signing as it goes', signing)
    const presigned = await flooded([])
    show('flood pre-signed', presigned)
    // the control: the signing flooder's CPU share in its window, burnt by a connected process that sends nothing
    const c = await attack([...base, '--attack', 'burn', '--cpu', (signing.cpu / (WINDOW_MS / 1000)).toFixed(3)])
    await waitFor(() => (c.stats().ready ?? 0) > 0 ? true : undefined, { what: 'the control to start', timeoutMs: 60_000, intervalMs: 100 })
    const cc0 = cpuSecondsOf(c.proc.pid as number)
    const control = await measure(s0, nodes, WINDOW_MS)
    const controlCpu = cpuSecondsOf(c.proc.pid as number) - cc0
    await stopAttacker(c)
    console.log(`      control: ${describeWindow(control, WINDOW_MS)} (${load()}); a connected process burning ${pct(controlCpu)} of a core, sending nothing`)

    for (const n of swarm.nodes) assert.equal(n.node.exit, null, `${n.name} is still running`)
    for (const f of [signing, presigned]) {
      assert.equal(f.stats.sent, 20_000, 'the flood went out')
      // every stage node cut the flooder off (core/timed-bans.ts, membership-service.ts)
      f.cut.forEach((lines, i) => { assert.ok(lines >= 1, `${nodes[i].name} cut the flooder off`) })
    }
    // views kept: stage 0 still completes steps through stages 1 and 2, during the floods and after them
    for (const w of [signing.during, presigned.during, control]) assert.ok(w.steps >= 1, 'training went on')
  })

  // The Sybils first emptied every honest view: gossipsub's IP colocation penalty scored every peer on
  // 127.0.0.1 (honest ones too) below the graylist once 24 more identities shared the address. A LAN or
  // loopback network now turns that penalty off (core/node/create-node.ts); an internet one keeps it.
  it('24 Sybil provider records of the coming averaging rounds: the honest stage-1 nodes still average together', async function () {
    this.timeout(600_000)
    dir = await mkdtemp(join(tmpdir(), 'lsw-hostile-sybil-'))
    const model = await writeMicroModel(dir)
    const PERIOD = 10
    swarm = await startSwarm(dir, [0, 1, 1, 2], await runArgs(dir, model, PERIOD))
    const s0 = swarm.nodes[0]
    const ones = swarm.nodes.filter(n => n.stage === 1)
    const avg = async (): Promise<Array<{ rounds: number, alone: number, failed: number }>> => await Promise.all(ones.map(async n => {
      const a = (await trainingOf(n.dataDir))?.averaging
      return { rounds: a?.rounds ?? 0, alone: a?.alone ?? 0, failed: a?.failed ?? 0 }
    }))
    await waitForTraining(swarm.nodes, 'a stage-1 round with a partner', ts => ts.filter((t, i) => swarm?.nodes[i].stage === 1).every(t => (t?.averaging?.rounds ?? 0) >= 1), 240_000)
    const runId = (await trainingOf(s0.dataDir))?.runId as string
    const connect = [swarm.boot, ...swarm.nodes.map(n => n.node)].map(n => n.addrs[0]).join(',')
    const diff = (a: Array<{ rounds: number, alone: number }>, b: Array<{ rounds: number, alone: number }>): string =>
      a.map((x, i) => `${b[i].rounds - x.rounds} with a partner / ${b[i].alone - x.alone} alone`).join(', ')

    const a0 = await avg()
    const before = await measure(s0, ones, WINDOW_MS)
    const a1 = await avg()
    const step = (await trainingOf(s0.dataDir))?.step ?? 0
    const a = await attack(['--run', runId, '--stages', '3', '--connect', connect, '--attack', 'sybil', '--identities', '24', '--stage', '1',
      '--from-round', String(Math.floor(step / PERIOD) + 1), '--rounds', '40'])
    await waitFor(() => (a.stats().provided ?? 0) >= 24 ? true : undefined, { what: 'the Sybils\' first records', timeoutMs: 90_000, intervalMs: 250 })
    const a2 = await avg()
    const during = await measure(s0, ones, 2 * WINDOW_MS)
    const a3 = await avg()
    const logs = await Promise.all(ones.map(async n => (await readFile(join(dir as string, `${n.name}.log`), 'utf8')).split('\n')))
    const strangers = logs.map(l => l.filter(x => x.includes('provided by peers the view does not list')).length)
    const retried = logs.map(l => l.filter(x => x.includes('retrying once')).length)
    console.log(`      averaging every ${PERIOD} steps; before: ${describeWindow(before, WINDOW_MS)}, stage-1 rounds ${diff(a0, a1)} (${load()})`)
    console.log(`      24 Sybils: ${describeWindow(during, 2 * WINDOW_MS)}, stage-1 rounds ${diff(a2, a3)} (${load()}); sybils ${JSON.stringify(a.stats())}; ` +
      `rounds logging Sybil records left out: ${strangers.join('/')}; lonely rounds retried: ${retried.join('/')}; failed ${a3.map(x => x.failed).join('/')}`)

    for (const n of swarm.nodes) assert.equal(n.node.exit, null, `${n.name} is still running`)
    assert.ok((a.stats().provided ?? 0) >= 24, 'the Sybils\' provider records went out')
    // the issue: both honest nodes alone for 25 rounds in a row; here each still finds its partner
    a2.forEach((x, i) => { assert.ok(a3[i].rounds - x.rounds >= 1, `${ones[i].name} averaged with a partner during the attack`) })
    assert.ok(during.steps >= 1, 'training went on during the attack')
  })
})
