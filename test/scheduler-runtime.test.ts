// The scheduler in the training runtime, on real `layerswarm start` processes (loopback libp2p):
//  - four nodes started without --stage are assigned by the scheduler and serve both stages; after
//    kill -9 of every node of stage 1, a stage-0 node moves there (reason 'rebalance') and training
//    resumes: the remaining stage-0 node's steps keep increasing and its loss is finite and falls;
//  - nodes pinned with --stage never move, not even while the other stage is empty; unpinned nodes
//    join the empty stage.
// Scheduler timings are shortened through the config file's pluginOptions.scheduler.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { queryControl } from '../core/node/control-endpoint.ts'
import { SwarmLauncher, type LaunchedNode } from '../core/demo/swarm-launcher.ts'
import { bootstrapArgs } from '../core/demo/swarm-plan.ts'
import { BIN, ROOT } from './cli-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { tinyCorpus } from './pipeline-helpers.ts'
import { waitFor } from './wait-helpers.ts'

/** 2 layers, d = 32: a step of a 2-stage swarm takes a few ms of compute. */
const MODEL = { vocabSize: 256, blockSize: 16, nLayer: 2, nHead: 2, dModel: 32 }
const SCHEDULER = { heartbeatMs: 1000, joinListenMs: 2500, epochMs: 10_000, epochJitterMs: 1000, cooldownMs: 5000 }

interface Training {
  stage: number | null
  state: string
  step: number
  loss: Array<[number, number]>
  assignment: { stage: number, reason: string } | null
  moves: number
  servingPerStage?: number[]
  error?: string
}

interface Member { name: string, dataDir: string, node: LaunchedNode }

async function trainingOf (m: Member): Promise<Training | undefined> {
  if (m.node.exit != null) return undefined
  const st = await queryControl(m.dataDir, '/status', { timeoutMs: 5000 }).catch(() => undefined) as { training?: Training } | undefined
  return st?.training
}

/** The statuses the last poll() saw, for a timeout's message. */
let lastPolled: Array<{ name: string, training: Training | undefined }> = []

/** Statuses of nodes that must be alive: a node that exited or reports `failed` fails the test at once. */
async function poll (members: Member[]): Promise<Array<Training | undefined>> {
  const t = await Promise.all(members.map(trainingOf))
  lastPolled = members.map((m, i) => ({ name: m.name, training: t[i] }))
  members.forEach((m, i) => {
    if (m.node.exit != null) throw new Error(`node ${m.name} exited (${m.node.exit.code ?? m.node.exit.signal ?? '?'}); see ${m.node.spec.logFile}`)
    if (t[i]?.state === 'failed') throw new Error(`node ${m.name} failed: ${t[i]?.error ?? '(no error given)'}`)
  })
  return t
}

/** Polls `check` every second until it returns a value; its errors (a dead node, a moved pinned node) fail at once. */
async function until<T> (what: string, check: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  lastPolled = []
  return await waitFor(check, {
    what,
    timeoutMs,
    intervalMs: 1000,
    failOnError: true,
    state: () => lastPolled.map(({ name, training: x }) => x == null ? `${name}: -` : `${name}: ${x.state} stage ${x.stage ?? '-'} step ${x.step} moves ${x.moves}`).join('; ')
  })
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length

describe('scheduler: assignment and moves in the training runtime (multi-process)', function () {
  let dir: string
  let launcher: SwarmLauncher | undefined
  let runArgs: string[]
  let config: string

  before(async () => {
    dir = await tempDir('lsw-sched-rt-')
    const { path: corpus } = await tinyCorpus(dir)
    const model = join(dir, 'model.json')
    await writeFile(model, JSON.stringify(MODEL))
    config = join(dir, 'node-config.json')
    await writeFile(config, JSON.stringify({ pluginOptions: { 'backend-cpu': { threads: 1 }, scheduler: SCHEDULER } }))
    runArgs = ['--stages', '2', '--model', model, '--data', corpus, '--steps', '100000', '--batch', '2', '--seq-len', '16', '--lr', '3e-3',
      '--warmup', '2', '--microbatches', '1', '--max-inflight', '2', '--eval-batches', '0', '--log-level', 'info']
  })
  afterEach(async () => {
    await launcher?.stopAll(10_000)
    launcher = undefined
  })
  after(async () => {
    if (dir != null) await removeDirs([dir])
  })

  async function startNodes (names: string[], extra: (name: string) => string[], bootAddr: string): Promise<Member[]> {
    const l = launcher as SwarmLauncher
    return await Promise.all(names.map(async name => {
      const dataDir = join(dir, name)
      const node = await l.start({
        name,
        args: ['--data-dir', dataDir, '--config', config, '--listen', '/ip4/127.0.0.1/tcp/0', '--bootstrap', bootAddr, ...runArgs, ...extra(name)],
        logFile: join(dir, `${name}.log`)
      })
      return { name, dataDir, node }
    }))
  }

  async function startBoot (name: string): Promise<LaunchedNode> {
    launcher = new SwarmLauncher({ bin: BIN, cwd: ROOT })
    return await launcher.start({ name, args: bootstrapArgs(join(dir, name)), logFile: join(dir, `${name}.log`) })
  }

  it('unpinned nodes are assigned to every stage; after kill -9 of a whole stage a node moves there and training resumes', async () => {
    const boot = await startBoot('a-boot')
    const members = await startNodes(['a0', 'a1', 'a2', 'a3'], () => [], boot.addrs[0])

    // every node assigned by the scheduler ('join'), both stages served, stage 0 stepping
    const first = await until('both stages served and stage 0 training', async () => {
      const t = await poll(members)
      if (t.some(x => x?.assignment == null || x.state !== 'training')) return undefined
      const stages = t.map(x => x?.assignment?.stage)
      if (!stages.includes(0) || !stages.includes(1)) return undefined
      return t.every((x, i) => stages[i] !== 0 || (x?.step ?? 0) >= 3) ? t as Training[] : undefined
    }, 180_000)
    for (const t of first) {
      assert.equal(t.assignment?.reason, 'join')
      assert.equal(t.stage, t.assignment?.stage, 'the pipeline serves the assigned stage')
      assert.equal(t.moves, 0)
    }

    const victims = members.filter((_, i) => first[i].assignment?.stage === 1)
    const survivors = members.filter((_, i) => first[i].assignment?.stage === 0)
    for (const v of victims) launcher?.signal(v.node, 'SIGKILL')
    await Promise.all(victims.map(async v => await v.node.exited))

    // a survivor moves to the empty stage (more than one stage-0 node: one can go)
    let mover: Member | undefined
    let origin: Member | undefined
    const recovered = await until('a stage-0 node to move to stage 1 and serve it', async () => {
      const t = await poll(survivors)
      const i = t.findIndex(x => x?.assignment?.stage === 1 && x.stage === 1 && x.state === 'training')
      const j = t.findIndex(x => x?.stage === 0 && x.state === 'training')
      if (i < 0 || j < 0) return undefined
      mover = survivors[i]
      origin = survivors[j]
      return t
    }, 120_000)
    const moved = recovered[survivors.indexOf(mover as Member)] as Training
    assert.equal(moved.assignment?.reason, 'rebalance')
    assert.equal(moved.moves, 1)
    const stepAtRecovery = (recovered[survivors.indexOf(origin as Member)] as Training).step

    // training resumes through the moved node: stage 0's steps go on, its loss is finite and falls
    const after = await until('stage 0 to train 15 more steps', async () => {
      const [t] = await poll([origin as Member])
      return t != null && t.step >= stepAtRecovery + 15 ? t : undefined
    }, 180_000)
    const since = after.loss.filter(([s]) => s > stepAtRecovery).map(([, l]) => l)
    assert.ok(since.length >= 15, `losses after the move: ${since.length}`)
    assert.ok(since.every(Number.isFinite))
    assert.ok(mean(since.slice(-3)) < mean(since.slice(0, 3)), `loss after the move: ${since.slice(0, 3).join(', ')} ... ${since.slice(-3).join(', ')}`)
    assert.equal(after.stage, 0)
    assert.equal(after.moves, 0, 'one move was enough')
  })

  it('pinned nodes never move, even with the other stage empty; an unpinned node joins the empty stage', async () => {
    const boot = await startBoot('b-boot')
    const pinned = await startNodes(['p0', 'p1'], () => ['--stage', '0'], boot.addrs[0])
    const [u1] = await startNodes(['u1'], () => [], boot.addrs[0])
    const checkPinned = (t: Array<Training | undefined>): void => {
      for (const x of t) {
        if (x == null) continue
        assert.deepEqual(x.assignment, { stage: 0, reason: 'pinned' })
        assert.equal(x.moves, 0)
        if (x.stage != null) assert.equal(x.stage, 0)
      }
    }

    const joined = await until('the unpinned node to join stage 1 and stage 0 to train', async () => {
      const [t, p] = await Promise.all([poll([u1]).then(x => x[0]), poll(pinned)])
      checkPinned(p)
      return t?.stage === 1 && t.state === 'training' && p.every(x => (x?.step ?? 0) >= 2) ? t : undefined
    }, 180_000)
    assert.deepEqual(joined.assignment, { stage: 1, reason: 'join' }, 'a joiner takes the empty stage')

    launcher?.signal(u1.node, 'SIGKILL')
    await u1.node.exited
    // the pinned nodes see stage 1 empty for several heartbeats (an unpinned node would move within ~2)
    let emptyPolls = 0
    await until('the pinned nodes to see stage 1 empty for 4 polls', async () => {
      const p = await poll(pinned)
      checkPinned(p)
      emptyPolls = p.every(x => x?.servingPerStage?.[1] === 0) ? emptyPolls + 1 : 0
      return emptyPolls >= 4
    }, 60_000)

    const [u2] = await startNodes(['u2'], () => [], boot.addrs[0])
    const before = Math.max(...(await poll(pinned)).map(x => x?.step ?? 0))
    await until('training to resume through the new node', async () => {
      const [t, p] = await Promise.all([poll([u2]).then(x => x[0]), poll(pinned)])
      checkPinned(p)
      return t?.stage === 1 && t.assignment?.reason === 'join' && p.some(x => (x?.step ?? 0) >= before + 3)
    }, 180_000)
    checkPinned(await poll(pinned))
  })
})
