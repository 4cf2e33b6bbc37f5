// Training across the test bed (issue 15): a bootstrap node and three stage nodes (stages 0, 1, 2)
// on hosts whose links have 50 ms delay, 10 ms jitter, 1% loss and 50 Mbit/s, train the micro model
// for a fixed number of steps; the same run on loopback gives the reference held-out loss.
// Then, with a second stage-1 node (five processes), one stage-1 node's link goes down mid-run, for 20 s and (another run) 60 s: training goes on
// through the other stage-1 node, and the cut-off node comes back on its own once its link is up. A
// 20 s outage leaves TCP connections open (libp2p's keep-alive waits 30 s, create-node.ts); 60 s
// closes them, so the node must redial.
//
// Figures (tokens/s, held-out losses, reconnect times) are printed, not asserted: the machine is
// shared. Needs root (namespaces, TUN); skips with the reason where netnsUnavailable() says so.
import assert from 'node:assert/strict'
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sleep } from '../../core/timers.ts'
import type { TrainingStatus } from '../../core/demo/swarm-view.ts'
import { netnsUnavailable } from '../netns-helpers.ts'
import { startSwarm, trainingOf, waitForTraining, writeMicroModel, type TestSwarm } from '../swarm-helpers.ts'
import { startNetnsSwarm, peersOf } from './netns-swarm.ts'
import { Testbed, type LinkParams } from './testbed.ts'

const LINK: LinkParams = { delayMs: 50, jitterMs: 10, loss: 0.01, rateBps: 50e6 }
const STAGES = [0, 1, 2, 1]
// The loss comparison runs one node per stage: with two stage-1 replicas, which of them trains which
// microbatch depends on timing, and two loopback runs alone land ~3% apart (measured 2.875 vs 2.781
// after 60 steps); a single chain differs between runs only by what the network drops or delays.
const CHAIN = [0, 1, 2]
const STEPS = 60

function runArgs (model: string, steps: number): string[] {
  return ['--stages', '3', '--model', model, '--steps', String(steps), '--seed', '3', '--batch', '4', '--lr', '1e-2',
    '--microbatches', '2', '--eval-batches', '4', '--log-level', 'info']
}

interface RunFigures { seconds: number, tokens: number, tokensPerS: number, evalLoss: number }

async function subdir (dir: string, name: string): Promise<string> {
  const d = join(dir, name)
  await mkdir(d, { recursive: true })
  return d
}

/** Waits for every node to finish (and the last stage to have its held-out loss); the run's figures. */
async function finish (swarm: TestSwarm, t0: number, what: string, timeoutMs: number): Promise<RunFigures> {
  const last = await waitForTraining(swarm.nodes, what, ts => ts.every(t => t?.state === 'done') &&
    ts.some(t => t?.stage === 2 && t.evalLoss != null), timeoutMs) as TrainingStatus[]
  const seconds = (performance.now() - t0) / 1000
  const tokens = last.filter(t => t.stage === 0).reduce((a, t) => a + t.tokens, 0)
  const evals = last.filter(t => t.stage === 2 && t.evalLoss != null).map(t => t.evalLoss as number)
  return { seconds, tokens, tokensPerS: tokens / seconds, evalLoss: evals.reduce((a, b) => a + b, 0) / evals.length }
}

function show (name: string, f: RunFigures): string {
  return `${name}: ${STEPS} steps in ${f.seconds.toFixed(1)} s, ${f.tokensPerS.toFixed(0)} tokens/s, held-out loss ${f.evalLoss.toFixed(4)}`
}

describe('netns: training across hosts with 50 ms delay, 10 ms jitter, 1% loss, 50 Mbit/s links', function () {
  this.timeout(900_000)
  let bed: Testbed | undefined
  let dir = ''
  const swarms: TestSwarm[] = []

  before(async function () {
    const why = netnsUnavailable()
    if (why != null) {
      console.log(`      skipped: ${why}`)
      this.skip()
    }
    dir = await mkdtemp(join(tmpdir(), 'lsw-netns-train-'))
    bed = await Testbed.create({ tag: 'trn', hosts: STAGES.length + 1, link: LINK, seed: 7 })
  })

  after(async function () {
    for (const s of swarms) await s.stop().catch(() => {})
    bed?.destroy()
    if (dir === '') return
    // on failure (or with LAYERSWARM_NETNS_KEEP_LOGS=1) the nodes' logs are kept beside the removed run directory
    if (process.env.LAYERSWARM_NETNS_KEEP_LOGS === '1' || this.test?.parent?.tests.some(t => t.state === 'failed') === true) {
      for (const run of await readdir(dir, { withFileTypes: true })) {
        if (!run.isDirectory()) continue
        const logs = (await readdir(join(dir, run.name))).filter(f => f.endsWith('.log'))
        if (logs.length === 0) continue
        await mkdir(join(`${dir}-logs`, run.name), { recursive: true })
        for (const f of logs) await copyFile(join(dir, run.name, f), join(`${dir}-logs`, run.name, f))
      }
      console.log(`      logs kept in ${dir}-logs`)
    }
    await rm(dir, { recursive: true, force: true })
  })

  it('reaches the loopback run\'s held-out loss within 5%', async () => {
    const model = await writeMicroModel(dir)
    let t0 = performance.now()
    const loop = await startSwarm(await subdir(dir, 'loop'), CHAIN, runArgs(model, STEPS))
    swarms.push(loop)
    const lo = await finish(loop, t0, `loopback: ${STEPS} steps`, 400_000)
    await loop.stop()
    console.log(`      ${show('loopback', lo)}`)

    t0 = performance.now()
    const net = await startNetnsSwarm(bed!, await subdir(dir, 'net'), CHAIN, runArgs(model, STEPS))
    swarms.push(net)
    const ns = await finish(net, t0, `netns: ${STEPS} steps`, 600_000)
    await net.stop()
    const links = (await bed!.stats()).links
    const lost = Object.values(links).reduce((a, l) => a + l.lost, 0)
    const fwd = Object.values(links).reduce((a, l) => a + l.fwd, 0)
    console.log(`      ${show('netns', ns)}; ${lost} of ${lost + fwd} packets lost on the links`)
    const gap = Math.abs(ns.evalLoss - lo.evalLoss) / lo.evalLoss
    console.log(`      held-out loss netns vs loopback: ${(gap * 100).toFixed(2)}% apart`)
    assert.ok(gap <= 0.05, `held-out loss ${ns.evalLoss} (netns) vs ${lo.evalLoss} (loopback): ${(gap * 100).toFixed(1)}% apart`)
  })

  it('keeps training through a stage-1 node\'s 20 s outage, and the node comes back on its own', async () => {
    await outage(20_000, 80, 'outage20')
  })

  it('after a 60 s outage (past the 30 s keep-alive timeout: connections close) the node redials and serves again', async () => {
    await outage(60_000, 150, 'outage60')
  })

  /** Cuts the second stage-1 node's link for `downMs` from step 5 of a run of `steps`, and measures its return. */
  async function outage (downMs: number, steps: number, name: string): Promise<void> {
    const model = await writeMicroModel(dir)
    const t0 = performance.now()
    const net = await startNetnsSwarm(bed!, await subdir(dir, name), STAGES, runArgs(model, steps))
    swarms.push(net)
    const victim = net.nodes[3] // the second stage-1 node, on host 4
    const ip = bed!.hosts[4].ip
    const others = [{ name: 'boot', dataDir: net.boot.spec.args[net.boot.spec.args.indexOf('--data-dir') + 1] }, ...net.nodes.filter(n => n !== victim)]
    const listing = async (): Promise<boolean[]> => (await Promise.all(others.map(async o => await peersOf(o.dataDir)))).map(p => p?.includes(victim.node.peerId) === true)
    await waitForTraining(net.nodes, 'step 5 before the outage', ts => (ts[0]?.step ?? 0) >= 5 && (ts[3]?.microbatchesDone ?? 0) > 0, 300_000)

    const before = await trainingOf(net.nodes[0].dataDir)
    await bed!.linkDown(ip)
    const downAt = performance.now()
    // when each other node stopped listing the victim as connected, while its link is down
    const droppedAfter: Array<number | undefined> = others.map(() => undefined)
    while (performance.now() - downAt < downMs) {
      const l = await listing()
      l.forEach((on, k) => { if (!on && droppedAfter[k] == null) droppedAfter[k] = (performance.now() - downAt) / 1000 })
      await sleep(1000)
    }
    const during = await trainingOf(net.nodes[0].dataDir)
    const victimAtUp = await trainingOf(victim.dataDir)
    await bed!.linkUp(ip)
    const upAt = performance.now()

    // back: listed by each other node again, and completing microbatches again
    const relistedAfter: Array<number | undefined> = others.map(() => undefined)
    let workingS: number | undefined
    while ((relistedAfter.some(x => x == null) || workingS == null) && performance.now() - upAt < 180_000) {
      const l = await listing()
      l.forEach((on, k) => { if (on && relistedAfter[k] == null) relistedAfter[k] = (performance.now() - upAt) / 1000 })
      const t = await trainingOf(victim.dataDir).catch(() => undefined)
      if (workingS == null && t != null && t.microbatchesDone > (victimAtUp?.microbatchesDone ?? 0)) workingS = (performance.now() - upAt) / 1000
      if (t?.state === 'done') break
      await sleep(500)
    }
    const last = await waitForTraining(net.nodes, `netns ${name} run: ${steps} steps`, ts => ts.every(t => t?.state === 'done'), 600_000) as TrainingStatus[]
    const seconds = (performance.now() - t0) / 1000
    await net.stop()
    const fmt = (xs: Array<number | undefined>): string => others.map((o, k) => `${o.name} ${xs[k]?.toFixed(1) ?? '-'}`).join(', ')
    console.log(`      ${downMs / 1000} s outage from step ${before?.step ?? '?'}: stage 0 went on to step ${during?.step ?? '?'} meanwhile; ` +
      `peers dropped the node after (s): ${fmt(droppedAfter)}`)
    console.log(`      after the link came up: listed again after (s): ${fmt(relistedAfter)}; completing microbatches again after ${workingS?.toFixed(1) ?? 'never'} s`)
    console.log(`      run: ${steps} steps in ${seconds.toFixed(1)} s; microbatches done per node ${last.map(t => t.microbatchesDone).join(', ')}, ` +
      `dropped ${last.map(t => t.microbatchesDropped).join(', ')}, retried ${last.map(t => t.microbatchesRetried).join(', ')}`)
    assert.ok((during?.step ?? 0) > (before?.step ?? 0), 'stage 0 kept stepping while a stage-1 node was cut off')
    assert.ok(relistedAfter[0] != null, 'the bootstrap node lists the node again after its link came up')
    assert.ok(workingS != null, 'the node completes microbatches again after its link came up')
  }
})
