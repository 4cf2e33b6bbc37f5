// Deadlines across slow links (issue 15): the adaptive deadlines (core/net/peer-timing.ts, the hop
// deadlines of core/pipeline/dispatch.ts, averaging phases, state-sync chunks) must not fire on an
// honest swarm whose hosts are ~400 ms apart, and must still catch a peer that died quickly.
//
// The bed: every link 200 ms one way, 20 ms jitter, no loss, 50 Mbit/s (RTT host to host ~400 ms).
// A bootstrap node and stages 0, 1, 2, 1 with averaging every few steps, so rounds run across the
// links; once stage 1 has averaged, a third stage-1 node joins late and state-syncs the stage's
// weights from its peers across the links, then trains and averages with them. Every timeout and
// failure the nodes log or count (hop deadlines, wire timeouts, retried or dropped microbatches,
// averaging rounds failed, lonely or short of shards, state-sync chunks failed or fallen back) is
// counted from stage 1's first round (the start-up's connection churn is printed): there must be none,
// except a state-sync version race, printed (see below, where it is filtered).
//
// Then one stage-1 node dies the hard way: its host's link goes down and the process is killed
// (SIGKILL), so no FIN or RST ever reaches its peers, only silence, as when a home loses power. A
// plain kill -9 on a live link is the easy case (the kernel closes its sockets; streams fail at
// once). Stage 0 must notice within its hop deadline (a few round trips), re-route and ban, far
// below the 120 s a never-measured peer got before; training goes on.
//
// Figures are printed (counts, detection time, tokens/s); asserted: no timeout while healthy,
// detection under 30 s, stage 0 stepping after the death. Needs root; skips with the reason.
import assert from 'node:assert/strict'
import { copyFile, mkdir, readdir, readFile, writeFile, mkdtemp, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { validateManifest } from '../../core/run/manifest.ts'
import { buildManifest, parseTrainingOptions } from '../../core/runtime/training-runtime.ts'
import { validateModelConfig } from '../../core/model/config.ts'
import { queryControl } from '../../core/node/control-endpoint.ts'
import { sleep } from '../../core/timers.ts'
import { BIN } from '../cli-helpers.ts'
import { netnsUnavailable } from '../netns-helpers.ts'
import type { TrainingStatus } from '../../core/demo/swarm-view.ts'
import { waitFor } from '../wait-helpers.ts'
import { trainingOf, writeMicroModel, type SwarmNode, type TestSwarm } from '../swarm-helpers.ts'
import { startNetnsSwarm } from './netns-swarm.ts'
import { Testbed, type LinkParams } from './testbed.ts'

const LINK: LinkParams = { delayMs: 200, jitterMs: 20, loss: 0, rateBps: 50e6 }
const STAGES = [0, 1, 2, 1]
const PERIOD = 3
/** What the nodes log when a deadline fires or an exchange with a peer fails or falls short. */
const TROUBLE = [
  'ERR_PEER_DEADLINE', 'ERR_WIRE_TIMEOUT', 'ERR_WIRE_IDLE', 'ERR_SWARM_DEADLINE', 'microbatch failed at a peer',
  'dropped', 'averaging round failed', 'found no partner', 'alone after its retry', 'peer banned from averaging',
  'chunk failed', 'falling back', 'not fetched', 'no stage peer gave its state', 'cannot serve the stage'
]

/** Run flags plus a manifest file with params averaging every `period` steps (`start` has no averaging flag). */
async function runArgs (dir: string, model: string, period: number): Promise<string[]> {
  const flags = { stages: '3', model, steps: '100000', seed: '3', batch: '4', lr: '1e-2', warmup: '2', microbatches: '2' }
  const m = await buildManifest(parseTrainingOptions(flags))
  const manifest = validateManifest({ ...structuredClone(m) as object, averaging: { period, mode: 'params' } }, { validateModel: validateModelConfig })
  const file = join(dir, 'run-manifest.json')
  await writeFile(file, JSON.stringify(manifest))
  return ['--run-manifest', file, ...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, v]), '--max-inflight', '4', '--eval-batches', '0', '--log-level', 'info']
}

interface Averaging { rounds: number, alone: number, retried: number, late?: number, failed: number, lostShards: number, excluded: number }

async function averagingOf (dataDir: string): Promise<Averaging | undefined> {
  const s = await queryControl(dataDir, '/status', { timeoutMs: 5000 }).catch(() => undefined) as { training?: { averaging?: Averaging } } | undefined
  return s?.training?.averaging ?? undefined
}

/** The lines of `file` that name any of `patterns`, with their time (the log line's ISO prefix). */
async function troubleIn (file: string, patterns: readonly string[]): Promise<Array<{ t: number, line: string }>> {
  const text = await readFile(file, 'utf8').catch(() => '')
  return text.split('\n').filter(l => patterns.some(p => l.includes(p))).map(line => ({ t: Date.parse(line.slice(0, 24)), line }))
}

/** Polls the nodes' training and averaging status until `done` holds; fails at once on a failed node. */
async function until (nodes: readonly SwarmNode[], what: string, done: (t: Array<TrainingStatus | undefined>, a: Array<Averaging | undefined>) => boolean, timeoutMs: number): Promise<void> {
  let last: Array<TrainingStatus | undefined> = []
  await waitFor(async () => {
    last = await Promise.all(nodes.map(async n => n.node.exit == null ? await trainingOf(n.dataDir).catch(() => undefined) : undefined))
    const failed = last.findIndex(t => t?.state === 'failed')
    if (failed >= 0) throw new Error(`node ${nodes[failed].name} failed: ${last[failed]?.error ?? '(no error given)'}`)
    return done(last, await Promise.all(nodes.map(async n => await averagingOf(n.dataDir)))) || undefined
  }, { what, timeoutMs, intervalMs: 1000, failOnError: true, state: () => last.map(t => t != null ? `${t.state} step ${t.step}` : '-').join(', ') })
}

const load = (): string => `load ${loadavg()[0].toFixed(1)}`

describe('netns: deadlines across 200 ms links (no spurious timeout; a dead peer caught quickly)', function () {
  this.timeout(600_000)
  let bed: Testbed | undefined
  let dir = ''
  let swarm: TestSwarm | undefined

  before(async function () {
    // In `npm test` since it passed 5 runs in a row (load 18-22): the connection monitor no longer
    // aborts connections on a ping collision, and a joiner's first round that its partners had finished
    // (or ran while it synced) is logged as joined late, not as trouble. It was opt-in while it failed
    // (docs/networks.md, "Across slow links", has every run)
    const why = netnsUnavailable()
    if (why != null) {
      console.log(`      skipped: ${why}`)
      this.skip()
    }
    dir = await mkdtemp(join(tmpdir(), 'lsw-netns-ddl-'))
    bed = await Testbed.create({ tag: 'ddl', hosts: STAGES.length + 2, link: LINK, seed: 11 })
  })

  after(async function () {
    await swarm?.stop().catch(() => {})
    bed?.destroy()
    if (dir === '') return
    // on failure (or with LAYERSWARM_NETNS_KEEP_LOGS=1) the nodes' logs are kept beside the removed run directory
    if (process.env.LAYERSWARM_NETNS_KEEP_LOGS === '1' || this.currentTest?.state === 'failed' || this.test?.parent?.tests.some(t => t.state === 'failed') === true) {
      await mkdir(`${dir}-logs`, { recursive: true })
      for (const f of (await readdir(dir)).filter(f => f.endsWith('.log'))) await copyFile(join(dir, f), join(`${dir}-logs`, f))
      console.log(`      logs kept in ${dir}-logs`)
    }
    await rm(dir, { recursive: true, force: true })
  })

  it('averages and state-syncs across the links with no timeout, and catches a silently dead stage-1 node within seconds', async () => {
    const model = await writeMicroModel(dir)
    const args = await runArgs(dir, model, PERIOD)
    const t0 = performance.now()
    swarm = await startNetnsSwarm(bed!, dir, STAGES, args)
    const s = swarm
    await until(s.nodes, 'a stage-1 averaging round across the links', (_, av) => s.nodes.every((n, i) => n.stage !== 1 || (av[i]?.rounds ?? 0) >= 1), 300_000)
    const firstRoundS = (performance.now() - t0) / 1000
    // counted from here: the start's connection churn (a reset stream to the only stage-2 peer costs a
    // microbatch the 30 s peer wait, then a drop) is printed but is no deadline's doing
    const settledAt = Date.now()

    // the late joiner on host 5, not pinned: the scheduler places it and it state-syncs its stage from
    // the stage's peers across the links (a pinned `--stage` joiner does the same since the stage-host fix)
    const joiner: SwarmNode = {
      name: 'n4-join',
      stage: -1,
      dataDir: join(dir, 'n4-join'),
      node: await s.launcher.start({
        name: 'n4-join',
        args: ['--data-dir', join(dir, 'n4-join'), '--config', join(dir, 'node-config.json'), '--listen', `/ip4/${bed!.hosts[5].ip}/tcp/0`,
          '--bootstrap', s.boot.addrs[0], ...args],
        logFile: join(dir, 'n4-join.log'),
        env: { LSW_NETNS: bed!.hosts[5].ns.name, LSW_NETNS_BIN: BIN }
      })
    }
    s.nodes.push(joiner)
    const joinAt = performance.now()
    await until(s.nodes, 'the late joiner to train and average', (ts, av) => (ts[4]?.microbatchesDone ?? 0) > 0 && (av[4]?.rounds ?? 0) >= 1, 300_000)
    const joinedS = (performance.now() - joinAt) / 1000
    const synced = await troubleIn(join(dir, 'n4-join.log'), ['agreed stage state fetched', 'stage state fetched from one peer', 'starting from the seeded init', 'assigned'])
    const firstRound = (await troubleIn(join(dir, 'n4-join.log'), ['averaging round']))[0]?.line.replace(/^\S+ \S+\s+\[[^\]]*\] /, '') ?? '(none logged)'

    // the healthy phase's figures: everything logged and counted so far
    const healthy = await Promise.all(s.nodes.map(async n => ({
      n, t: await trainingOf(n.dataDir), a: await averagingOf(n.dataDir), trouble: await troubleIn(join(dir, `${n.name}.log`), TROUBLE)
    })))
    const healthyS = (performance.now() - t0) / 1000
    const tokens0 = healthy[0].t?.tokens ?? 0
    console.log(`      links ${LINK.delayMs} ms +- ${LINK.jitterMs} ms one way, ${((LINK.rateBps ?? 0) / 1e6).toFixed(0)} Mbit/s, no loss; averaging every ${PERIOD} steps (${load()})`)
    console.log(`      first stage-1 round after ${firstRoundS.toFixed(1)} s; joiner trained and averaged ${joinedS.toFixed(1)} s after its start; its sync: ${synced.map(x => x.line.replace(/^\S+ \S+\s+\[[^\]]*\] /, '')).join(' | ') || '(nothing logged)'}`)
    console.log(`      the joiner's first round: ${firstRound.slice(0, 300)}`)
    console.log(`      ${healthyS.toFixed(1)} s healthy: stage 0 at step ${healthy[0].t?.step ?? '?'}, ${(tokens0 / healthyS).toFixed(0)} tokens/s`)
    for (const h of healthy) {
      const a = h.a
      console.log(`      ${h.n.name}: microbatches done ${h.t?.microbatchesDone ?? '?'}, retried ${h.t?.microbatchesRetried ?? '?'}, dropped ${h.t?.microbatchesDropped ?? '?'}` +
        (a != null ? `; averaging rounds ${a.rounds}, alone ${a.alone}, retried ${a.retried}, late ${a.late ?? '?'}, failed ${a.failed}, lost shards ${a.lostShards}, excluded ${a.excluded}` : '') +
        `; trouble lines ${h.trouble.length}`)
      for (const x of h.trouble.slice(0, 5)) console.log(`        ${x.line.slice(0, 300)}`)
    }
    assert.ok(synced.some(x => x.line.includes('stage state fetched')), 'the joiner fetched its stage\'s state across the links')
    for (const h of healthy) {
      // not a timeout: the donors finished their next round between the joiner's manifest and its chunk
      // request, and serve only their latest agreed snapshot (ERR_STATE_VERSION); the joiner falls back
      // to a live state. Printed above, not counted (docs/networks.md, "Deadlines across slow links").
      const race = (l: string): boolean => l.includes('ERR_STATE_VERSION') || (l.includes('falling back') && h.trouble.some(x => x.line.includes('ERR_STATE_VERSION')))
      assert.deepEqual(h.trouble.filter(x => x.t >= settledAt).map(x => x.line).filter(l => !race(l)), [], `${h.n.name} logged no timeout or failed exchange while the swarm was healthy`)
      if (h.a != null) assert.equal(h.a.failed + h.a.lostShards, 0, `${h.n.name}: no averaging round failed or short of shards`)
    }

    // a silent death: the host's link goes down, then the process is killed (no FIN or RST reaches anyone)
    const victim = s.nodes[3]
    await bed!.linkDown(bed!.hosts[4].ip)
    s.launcher.signal(victim.node, 'SIGKILL')
    const killedAt = Date.now()
    const stepAtKill = (await trainingOf(s.nodes[0].dataDir))?.step ?? 0
    let caught: { t: number, line: string } | undefined
    let stepNow = stepAtKill
    while (Date.now() - killedAt < 120_000) {
      const found = (await troubleIn(join(dir, `${s.nodes[0].name}.log`), [victim.node.peerId])).filter(x => x.t >= killedAt - 1000 && x.line.includes('failed'))
      caught ??= found[0]
      stepNow = (await trainingOf(s.nodes[0].dataDir))?.step ?? stepNow
      if (caught != null && stepNow >= stepAtKill + 3) break
      await sleep(500)
    }
    const detectS = caught != null ? (caught.t - killedAt) / 1000 : undefined
    const after = await trainingOf(s.nodes[0].dataDir)
    console.log(`      silent death of ${victim.name} at stage 0's step ${stepAtKill} (${load()}): stage 0 re-routed its microbatch after ` +
      `${detectS?.toFixed(1) ?? 'never'} s: ${caught?.line.replace(/^\S+ \S+\s+\[[^\]]*\] /, '').slice(0, 300) ?? '-'}`)
    console.log(`      stage 0 then at step ${stepNow}; microbatches retried ${after?.microbatchesRetried ?? '?'}, dropped ${after?.microbatchesDropped ?? '?'}`)
    assert.ok(detectS != null && detectS < 30, `stage 0 noticed the dead peer within 30 s (took ${detectS ?? 'forever'})`)
    assert.ok(stepNow >= stepAtKill + 3, `stage 0 kept stepping after the death (step ${stepAtKill} -> ${stepNow})`)
  })
})
