// A swarm of real `layerswarm start` processes on the test bed: the bootstrap node on host 0, the
// training node i on host i + 1, each listening on its host's 10.80.0.x address. The demo's launcher
// starts them (process groups, logs, stop) through in-netns.mjs, which enters the host's namespace.
// Their control sockets are in their data dirs, so `status` reaches them from outside.
import { writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SwarmLauncher } from '../../core/demo/swarm-launcher.ts'
import { queryControl } from '../../core/node/control-endpoint.ts'
import { BIN, ROOT } from '../cli-helpers.ts'
import type { SwarmNode, TestSwarm } from '../swarm-helpers.ts'
import type { Testbed } from './testbed.ts'

const IN_NETNS = join(dirname(fileURLToPath(import.meta.url)), 'in-netns.mjs')

/** Like startSwarm (test/swarm-helpers.ts), on the bed: needs stages.length + 1 hosts. */
export async function startNetnsSwarm (bed: Testbed, dir: string, stages: number[], runArgs: string[]): Promise<TestSwarm> {
  if (bed.hosts.length < stages.length + 1) throw new Error(`${stages.length + 1} hosts needed, the bed has ${bed.hosts.length}`)
  const launcher = new SwarmLauncher({ bin: IN_NETNS, cwd: ROOT })
  const env = (i: number): Record<string, string> => ({ LSW_NETNS: bed.hosts[i].ns.name, LSW_NETNS_BIN: BIN })
  const config = join(dir, 'node-config.json')
  await writeFile(config, JSON.stringify({ pluginOptions: { 'backend-cpu': { threads: 1 } } }))
  try {
    const boot = await launcher.start({
      name: 'boot',
      args: ['--bootstrap-node', '--data-dir', join(dir, 'boot'), '--listen', `/ip4/${bed.hosts[0].ip}/tcp/0`, '--log-level', 'info'],
      logFile: join(dir, 'boot.log'),
      env: env(0)
    })
    const nodes: SwarmNode[] = await Promise.all(stages.map(async (stage, i) => {
      const name = `n${i}-s${stage}`
      const dataDir = join(dir, name)
      const node = await launcher.start({
        name,
        args: ['--data-dir', dataDir, '--config', config, '--listen', `/ip4/${bed.hosts[i + 1].ip}/tcp/0`, '--bootstrap', boot.addrs[0], '--stage', String(stage), ...runArgs],
        logFile: join(dir, `${name}.log`),
        env: env(i + 1)
      })
      return { name, stage, dataDir, node }
    }))
    return { launcher, boot, nodes, stop: async () => { await launcher.stopAll(10_000) } }
  } catch (err) {
    await launcher.stopAll(5_000)
    throw err
  }
}

/** The peer ids a node is connected to (its `status`), or undefined when it does not answer. */
export async function peersOf (dataDir: string): Promise<string[] | undefined> {
  const s = await queryControl(dataDir, '/status', { timeoutMs: 5000 }).catch(() => undefined) as { peers?: unknown } | undefined
  return Array.isArray(s?.peers) ? s.peers.filter((p): p is string => typeof p === 'string') : undefined
}
