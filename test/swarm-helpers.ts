// Helpers of the multi-process swarm tests: a small model config file, a swarm of real
// `layerswarm start` processes (through the demo's launcher, which owns their process groups),
// their `training` status, and process liveness checks.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { queryControl } from '../core/node/control-endpoint.ts'
import { SwarmLauncher, type LaunchedNode } from '../core/demo/swarm-launcher.ts'
import { bootstrapArgs } from '../core/demo/swarm-plan.ts'
import { parseTrainingStatus, type TrainingStatus } from '../core/demo/swarm-view.ts'
import { BIN, ROOT } from './cli-helpers.ts'
import { waitFor } from './wait-helpers.ts'

/** A 3-layer byte-level GPT small enough that a few dozen steps of a swarm take seconds. */
export const MICRO_MODEL = { vocabSize: 256, blockSize: 32, nLayer: 3, nHead: 2, dModel: 32 }

export async function writeMicroModel (dir: string): Promise<string> {
  const file = join(dir, 'micro-model.json')
  await writeFile(file, JSON.stringify(MICRO_MODEL) + '\n')
  return file
}

export interface SwarmNode {
  readonly name: string
  readonly stage: number
  readonly dataDir: string
  readonly node: LaunchedNode
}

export interface TestSwarm {
  readonly launcher: SwarmLauncher
  readonly boot: LaunchedNode
  readonly nodes: SwarmNode[]
  stop(): Promise<void>
}

/**
 * A bootstrap node plus one training node per entry of `stages` (its stage), each started with
 * `runArgs` (the same run flags for all) and a single backend thread; data dirs and logs in `dir`.
 */
export async function startSwarm (dir: string, stages: number[], runArgs: string[]): Promise<TestSwarm> {
  const launcher = new SwarmLauncher({ bin: BIN, cwd: ROOT })
  const config = join(dir, 'node-config.json')
  await writeFile(config, JSON.stringify({ pluginOptions: { 'backend-cpu': { threads: 1 } } }))
  try {
    const boot = await launcher.start({ name: 'boot', args: bootstrapArgs(join(dir, 'boot')), logFile: join(dir, 'boot.log') })
    const nodes = await Promise.all(stages.map(async (stage, i) => {
      const name = `n${i}-s${stage}`
      const dataDir = join(dir, name)
      const node = await launcher.start({
        name,
        args: ['--data-dir', dataDir, '--config', config, '--listen', '/ip4/127.0.0.1/tcp/0', '--bootstrap', boot.addrs[0], '--stage', String(stage), ...runArgs],
        logFile: join(dir, `${name}.log`)
      })
      return { name, stage, dataDir, node }
    }))
    return { launcher, boot, nodes, stop: async () => { await launcher.stopAll(10_000) } }
  } catch (err) {
    await launcher.stopAll(5_000)
    throw err
  }
}

export async function trainingOf (dataDir: string): Promise<TrainingStatus | undefined> {
  return parseTrainingStatus(await queryControl(dataDir, '/status', { timeoutMs: 5000 }))
}

/** Polls the nodes' training status until `done(statuses)` holds; fails at once on a failed node, or after timeoutMs. */
export async function waitForTraining (nodes: readonly SwarmNode[], what: string, done: (t: Array<TrainingStatus | undefined>) => boolean, timeoutMs: number): Promise<Array<TrainingStatus | undefined>> {
  let last: Array<TrainingStatus | undefined> = []
  return await waitFor(async () => {
    last = await Promise.all(nodes.map(async n => n.node.exit == null ? await trainingOf(n.dataDir).catch(() => undefined) : undefined))
    const failed = last.findIndex(t => t?.state === 'failed')
    if (failed >= 0) throw new Error(`node ${nodes[failed].name} failed: ${last[failed]?.error ?? '(no error given)'}`)
    return done(last) ? last : undefined
  }, {
    what,
    timeoutMs,
    intervalMs: 1000,
    failOnError: true,
    state: () => last.map(t => t != null ? `${t.state} step ${t.step}` : '-').join(', ')
  })
}

export function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
