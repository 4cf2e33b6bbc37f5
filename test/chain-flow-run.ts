// The full chain flow of test/chain-flow.test.ts, run inside the test's network namespace (it listens
// on 10.77.0.2-7, which exist only there). Prints progress on stderr and one line
// `RESULT {json}` on stdout; exits 0 when the flow ran to its end (the test judges the figures).
//
//   1. a local chain (chopsticks on raonet.json, core/chain/dev-chain.ts) and a subnet on it
//   2. wallets on disk (a coldkey and a hotkey per node), funded; every hotkey burned-registered; the
//      validator staked until it holds a validator permit
//   3. every miner serves its axon (its 10.77.0.x address and port)
//   4. nodes started with only the chain endpoint (no bootstrap list): s0 (stage 0), fast, slow and
//      cheat (stage 1: honest, honest but slow, random outputs), s2 (stage 2), val (validator)
//   5. training until the run ends and the validator has convicted the cheater and set weights after it
//   6. the validator's weights read back from the chain's Weights storage
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cryptoWaitReady } from '@polkadot/util-crypto'
import type { KeyringPair } from '@polkadot/keyring/types'
import { createLogger } from '../core/logger.ts'
import { Tokens } from '../core/contracts/tokens.ts'
import { createNode, type LayerswarmNode } from '../core/node/create-node.ts'
import { parseTrainingOptions, startTrainingRuntime, type TrainingRuntime } from '../core/runtime/training-runtime.ts'
import { defaultManifest, runId as runIdOf } from '../core/run/manifest.ts'
import { modelPreset, validateModelConfig } from '../core/model/config.ts'
import { pause } from '../core/timers.ts'
import { createHotkey, createWallet, loadColdkey, loadHotkey } from '../core/chain/wallet.ts'
import { connectChain } from '../core/chain/chain-client.ts'
import { createDevSubnet, startDevChain } from '../core/chain/dev-chain.ts'
import type { AdversaryKind } from '../core/pipeline/adversary.ts'

type Name = 's0' | 'fast' | 'slow' | 'cheat' | 's2' | 'val'
const NODES: ReadonlyArray<{ name: Name, ip: string, stage?: number, adversary?: AdversaryKind, validator?: boolean }> = [
  { name: 'val', ip: '10.77.0.2', validator: true },
  { name: 's2', ip: '10.77.0.3', stage: 2 },
  { name: 'fast', ip: '10.77.0.4', stage: 1 },
  { name: 'slow', ip: '10.77.0.5', stage: 1, adversary: 'slow' },
  { name: 'cheat', ip: '10.77.0.6', stage: 1, adversary: 'random' },
  { name: 's0', ip: '10.77.0.7', stage: 0 }
]
const PORT = 4001
const TAO = 1_000_000_000n
const PASSPHRASE = 'chain-flow-test'
/** More than the flow needs: it stops once the weights are read back. */
const STEPS = 1000

const t0 = Date.now()
const phases: string[] = []
const say = (msg: string): void => {
  const line = `[chain-flow ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`
  phases.push(line)
  process.stderr.write(line + '\n')
}

async function main (): Promise<void> {
  await cryptoWaitReady()
  const dir = await mkdtemp(join(tmpdir(), 'lsw-chain-flow-'))
  const nodes: Array<{ name: Name, node: LayerswarmNode, runtime?: TrainingRuntime }> = []
  const chain = await startDevChain({ host: '127.0.0.1', port: 0 })
  let ticker: Promise<void> | undefined
  const stopTicker = new AbortController()
  const client = await connectChain(chain.endpoint)
  try {
    say(`chain up at ${chain.endpoint}`)
    // 2. wallets: one coldkey and one hotkey per node (and the subnet owner), on disk as a user's would be
    const keys = new Map<string, { cold: KeyringPair, hot: KeyringPair }>()
    for (const name of ['owner', ...NODES.map(n => n.name)]) {
      await createWallet({ dataDir: dir, wallet: name, passphrase: PASSPHRASE })
      await createHotkey({ dataDir: dir, wallet: name, hotkey: 'default' })
      const cold = await loadColdkey(dir, name, PASSPHRASE)
      const hot = await loadHotkey(dir, name, 'default')
      await chain.fund(cold.address, 100_000n * TAO)
      keys.set(name, { cold, hot })
    }
    const owner = keys.get('owner')!
    const netuid = await createDevSubnet(chain, client, owner.cold, owner.hot.address)
    say(`subnet ${netuid} created`)
    for (const n of NODES) {
      const k = keys.get(n.name)!
      await client.burnedRegister(k.cold, k.hot.address, netuid)
    }
    const val = keys.get('val')!
    await client.addStake(val.cold, val.hot.address, netuid, 10_000n * TAO)
    // blocks pass until the validator holds a permit (the epoch hands them out)
    for (let i = 0; i < 40; i++) {
      const mg = await client.metagraph(netuid)
      if (mg.neurons.find(x => x.hotkey === val.hot.address)?.validatorPermit === true) break
      await chain.newBlocks(5)
    }
    say('registered; the validator holds a permit')
    // 3. axons: the addresses nodes will listen on
    for (const n of NODES) await client.serveAxon(keys.get(n.name)!.hot, netuid, { ip: n.ip, port: PORT, ipType: 4 })
    const uids = Object.fromEntries((await client.metagraph(netuid)).neurons
      .map(x => [NODES.find(n => keys.get(n.name)!.hot.address === x.hotkey)?.name, x.uid] as const).filter(([k]) => k != null)) as Record<Name, number>
    say(`axons served; uids ${JSON.stringify(uids)}`)
    // a block every second from here on, as a real chain makes them (instant mode makes blocks only for extrinsics)
    ticker = (async () => { while (await pause(1000, stopTicker.signal)) await chain.newBlocks(1).catch(() => {}) })()

    // 4. the swarm: nothing but the chain endpoint to find each other with
    const manifest = defaultManifest({
      name: 'chain-flow',
      model: { ...modelPreset('tiny'), nLayer: 3, nHead: 2, dModel: 64, blockSize: 32 },
      stages: { count: 3, split: null },
      data: { corpus: 'builtin:kjv', seed: 1, tokenizer: 'byte', batchSize: 4, seqLen: 32 },
      optimizer: { lr: 3e-3, warmup: 2, steps: STEPS, weightDecay: 0.1, clip: 1 },
      codecs: { activation: 'none', 'activation-grad': 'none', parameter: 'none', 'parameter-grad': 'none' },
      averaging: { period: STEPS + 1, mode: 'pseudo-grad' },
      bottleneck: null
    }, { validateModel: validateModelConfig })
    const manifestFile = join(dir, 'manifest.json')
    await writeFile(manifestFile, JSON.stringify(manifest))
    const logger = createLogger({ level: (process.env.LAYERSWARM_FLOW_LOG ?? 'warn') as 'warn', format: 'human' })
    for (const n of NODES) {
      const node = await createNode({
        dataDir: join(dir, 'node-' + n.name),
        network: 'local',
        listen: [`/ip4/${n.ip}/tcp/${PORT}`],
        controlEndpoint: false,
        plugins: ['backend-cpu'],
        pluginOptions: { 'backend-cpu': { threads: 1 } },
        runtime: { runId: runIdOf(manifest), stages: manifest.stages.count, membership: { ttlMs: 15_000 } },
        chain: { endpoint: chain.endpoint, netuid, hotkey: keys.get(n.name)!.hot, refreshBlocks: 2 },
        logger
      })
      await node.start()
      nodes.push({ name: n.name, node })
    }
    say('nodes started')
    const of = (name: Name): { name: Name, node: LayerswarmNode, runtime?: TrainingRuntime } => nodes.find(x => x.name === name)!
    const train = async (name: Name, flags: Record<string, unknown>): Promise<void> => {
      const spec = NODES.find(n => n.name === name)!
      const m = of(name)
      m.runtime = await startTrainingRuntime(m.node, {
        ...parseTrainingOptions({ runManifest: manifestFile, maxInflight: 4, evalBatches: 4, sampleNodeId: 'chain-flow', peerWait: 120_000, ...flags }),
        ...(spec.adversary != null ? { adversary: spec.adversary } : {})
      }, logger)
    }
    await train('val', { role: 'validator', checkInterval: 1000, checksPerInterval: 2 })
    for (const name of ['s2', 'fast', 'slow', 'cheat'] as const) await train(name, { stage: NODES.find(n => n.name === name)!.stage })
    await train('s0', { stage: 0 })
    say('training')

    // 5. training goes on until the validator has convicted the cheater (it samples hops at random:
    // the cheater's are among them sooner or later) and has set weights after that
    const status = (): Record<string, any> => of('val').runtime!.status() as unknown as Record<string, any>
    const cheater = of('cheat').node.peerId
    const convicted = (): boolean => (status().verification?.convictions ?? []).some((c: { peer: string }) => c.peer === cheater)
    for (let i = 0; i < 300 && !convicted(); i++) await pause(1000)
    say(`step ${String(of('s0').runtime!.status().step)}; cheater convicted: ${String(convicted())}`)
    const setter = (): Record<string, any> => (of('val').node.status() as unknown as { chain?: { weights?: Record<string, any> } }).chain?.weights ?? {}
    const setAfter = (await client.head()) + 1
    for (let i = 0; i < 120; i++) {
      const last = Number(setter().lastSet?.block ?? setter().lastReveal?.block ?? 0)
      if (last >= setAfter) break
      await pause(1000)
    }
    say(`weights set at block ${String(setter().lastSet?.block ?? setter().lastReveal?.block)}`)
    // 6. what the chain holds
    const onChain = await client.weightsOf(netuid, uids.val)
    const byUid = new Map(onChain.map(([uid, w]) => [uid, w]))
    const weights = Object.fromEntries((Object.keys(uids) as Name[]).filter(n => n !== 'val').map(n => [n, byUid.get(uids[n]) ?? 0]))
    const result = {
      seconds: (Date.now() - t0) / 1000,
      netuid,
      steps: of('s0').runtime!.status().step,
      trainLoss: (of('s0').runtime!.status() as unknown as { lossLast?: number | null }).lossLast ?? null,
      uids,
      weights,
      convicted: convicted(),
      setterStatus: setter(),
      validator: status().verification?.validator,
      phases
    }
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`)
  } finally {
    stopTicker.abort()
    await ticker
    for (const m of [...nodes].reverse()) await m.runtime?.stop().catch(() => {})
    for (const m of [...nodes].reverse()) await m.node.stop().catch(() => {})
    await client.close().catch(() => {})
    await chain.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

main().then(() => process.exit(0), err => {
  process.stderr.write(`chain flow failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
