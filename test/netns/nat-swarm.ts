// Launching a swarm on the NAT test bed (nat-topology.ts) for the NAT tests: the relay (the bootstrap
// node, on the internet bridge), and stage nodes in any namespace, each a real `layerswarm start`
// process run inside its namespace by in-netns.mjs; the nodes' control endpoints for status; and, on
// failure, the nodes' logs kept and their tails printed.
import { cp, readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SwarmLauncher, type LaunchedNode } from '../../core/demo/swarm-launcher.ts'
import { queryControl } from '../../core/node/control-endpoint.ts'
import { BIN, ROOT } from '../cli-helpers.ts'
import type { Netns } from '../netns-helpers.ts'
import { writeMicroModel, type SwarmNode } from '../swarm-helpers.ts'
import { RELAY_IP, STUN_URL, type NatTopology } from './nat-topology.ts'

const IN_NETNS = join(dirname(fileURLToPath(import.meta.url)), 'in-netns.mjs')

export const runArgs = (model: string, steps: number): string[] => ['--stages', '3', '--model', model, '--steps', String(steps), '--seed', '3',
  '--batch', '4', '--lr', '1e-2', '--microbatches', '2', '--eval-batches', '4', '--log-level', 'info']

export interface NatStatus {
  nat: { reachability: string, relayAddrs: string[], relayReason?: string }
  connections: { direct: number, relayed: number, peers: Array<{ peer: string, direct: boolean, addr: string }> }
}

export async function statusOf (dataDir: string): Promise<NatStatus | undefined> {
  return await queryControl(dataDir, '/status', { timeoutMs: 5000 }).catch(() => undefined) as NatStatus | undefined
}

export interface NatSwarm {
  readonly launcher: SwarmLauncher
  readonly relay: LaunchedNode
  readonly relayDir: string
  /** Starts a stage node in `ns` listening on `ip`, bootstrapped from the relay. */
  start: (name: string, ns: Netns, ip: string, stage: number) => Promise<SwarmNode>
}

/**
 * Starts the STUN server and the relay of a run of `steps` steps of the micro model, written to `dir`.
 * The network is an internet one, not the built-in LAN one: the DHT hands out no private addresses (a
 * home's 10.78.x address is useless to the other home), so a peer known without a public address is
 * looked up again when dialed and found at its relay address; WebRTC's ICE asks the bridge's STUN server.
 */
export async function startNatSwarm (topo: NatTopology, dir: string, steps: number): Promise<NatSwarm> {
  await topo.startStun(AbortSignal.timeout(10_000))
  const launcher = new SwarmLauncher({ bin: IN_NETNS, cwd: ROOT })
  const env = (ns: Netns): Record<string, string> => ({ LSW_NETNS: ns.name, LSW_NETNS_BIN: BIN })
  const model = await writeMicroModel(dir)
  const config = join(dir, 'node-config.json')
  await writeFile(config, JSON.stringify({ pluginOptions: { 'backend-cpu': { threads: 1 } } }))
  const network = join(dir, 'nat-net.json')
  await writeFile(network, JSON.stringify({ name: 'nat-test', lan: false, listen: [], stun: [STUN_URL] }))
  const run = ['--network', network, ...runArgs(model, steps)]
  const relayDir = join(dir, 'relay')
  const relay = await launcher.start({
    name: 'relay', args: ['--bootstrap-node', '--network', network, '--data-dir', relayDir, '--listen', `/ip4/${RELAY_IP}/tcp/4001`, '--log-level', 'info'],
    logFile: join(dir, 'relay.log'), env: env(topo.inet)
  })
  const start = async (name: string, ns: Netns, ip: string, stage: number): Promise<SwarmNode> => {
    const dataDir = join(dir, name)
    const node = await launcher.start({
      name,
      args: ['--data-dir', dataDir, '--config', config, '--listen', `/ip4/${ip}/tcp/0`, '--bootstrap', relay.addrs[0], '--stage', String(stage), ...run],
      logFile: join(dir, `${name}.log`),
      env: env(ns)
    })
    return { name, stage, dataDir, node }
  }
  return { launcher, relay, relayDir, start }
}

/** On failure: the nodes' logs go to a kept directory, and their tails to the test's output. */
export async function keepLogs (dir: string): Promise<void> {
  const kept = `${dir}-logs`
  const logs = (await readdir(dir)).filter(f => f.endsWith('.log'))
  for (const f of logs) {
    await cp(join(dir, f), join(kept, f)).catch(() => {})
    const tail = (await readFile(join(dir, f), 'utf8').catch(() => '')).split('\n').slice(-40).join('\n')
    console.log(`      --- ${f} (last 40 lines; all of it in ${kept}) ---\n${tail}`)
  }
}
