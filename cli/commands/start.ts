// `layerswarm start`: run a node until SIGINT/SIGTERM. Prints one line on stdout once listening:
//   listening peerId=<id> addrs=<multiaddr>,<multiaddr>,...
// (scripts parse it); logs go to stderr. On a signal: bootstrap dialer, control endpoint, plugins
// (reverse order), connections; exit 0. A second signal forces exit 1 (cli/run-node.ts, shared with join).
import type { Command } from 'commander'
import { resolveStartConfig, type StartConfig, type StartFlags } from '../config.ts'
import { chainOption, runNode, type RunNodeHooks } from '../run-node.ts'
import { createLogger } from '../../core/logger.ts'
import { parseDashboardAddress, type DashboardAddress } from '../../core/dashboard/address.ts'

const collect = (value: string, previous?: string[]): string[] => [...(previous ?? []), value]

export function register (program: Command): void {
  program.command('start')
    .description('run a node: join the network, serve the DHT and gossip, run plugins, until SIGINT/SIGTERM')
    .option('--network <name|file>', 'network: local, testnet, or a profile JSON file (default: local)')
    .option('--listen <multiaddr>', 'listen address (repeat, or comma-separate; default: the network profile\'s)', collect)
    .option('--announce <multiaddr>', 'address to announce instead of the listen addresses (repeat)', collect)
    .option('--bootstrap <multiaddr>', 'bootstrap peer address, added to the network profile\'s (repeat)', collect)
    .option('--plugins <list>', 'comma-separated plugins: built-in names, ./paths or packages (default: backend-cpu; "" for none)')
    .option('--backend <name>', 'compute backend: cpu, webgpu, a plugin name, or the ./path or package of a backend plugin; loaded, and chosen over other backends in --plugins')
    .option('--data-dir <dir>', 'identity key, lock and control socket (default: ~/.layerswarm)')
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (a bare PORT: 127.0.0.1 only; docs/metrics.md)')
    .option('--dashboard [host:port]', 'serve the live dashboard web page (default 127.0.0.1:7070: this machine only; docs/dashboard.md)')
    .option('--bootstrap-node', 'only serve others: DHT server, gossip, circuit relay server; no training plugins')
    .option('--relay', 'reserve a slot on relays so peers can reach this node behind NAT')
    .option('--stun <url>', 'STUN server for WebRTC hole punching behind NAT, stun:HOST[:PORT] (repeat; default: the network profile\'s, public ones on internet networks)', collect)
    .option('--no-webrtc', 'no WebRTC transport: peers behind NAT then talk through relays only')
    .option('--psk <file>', 'pre-shared key file (swarm.key format) of a private swarm; overrides the profile\'s')
    .option('--config <file>', 'JSON config file (flags > LAYERSWARM_* env > config file > defaults)')
    .option('--chain <url>', 'join a Bittensor subnet through this subtensor endpoint (ws:// or wss://; "testnet": the Bittensor testnet): bootstrap from its metagraph, admit only peers bound to its registered hotkeys (docs/chain.md)')
    .option('--netuid <n>', 'with --chain: the subnet to join')
    .option('--wallet <name>', 'with --chain: the wallet in the data dir whose hotkey this node binds (default: default)')
    .option('--hotkey <name>', 'with --chain: the hotkey of that wallet (default: default)')
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent (default: info)')
    .option('--log-format <format>', 'human or json (default: human)')
    .option('--allow-software-gpu', 'with --backend webgpu: accept a software adapter (llvmpipe) when no GPU is found')
    .option('--gpu-f16', 'with --backend webgpu: f16 matmuls with f32 accumulation (needs the adapter\'s shader-f16)')
    // training (docs/pipeline.md, docs/scheduler.md); any of these flags makes the node train
    .option('--stage <n>', 'train: pin this pipeline stage (0..S-1); without it the scheduler assigns and moves the stage')
    .option('--stages <n>', 'train: number of pipeline stages S (default 2)')
    .option('--model <preset|file>', 'train: tiny, small, gpt2-30m, gpt2-124m or a JSON model config (default tiny)')
    .option('--max-memory <size>', 'train: memory budget, e.g. 512M or 2G (powers of 1024): a pinned stage estimated above it fails the start, the scheduler assigns only stages within it')
    .option('--tokenizer <name>', 'train: byte or gpt2 (default byte)')
    .option('--data <path>', 'train: corpus file or folder, read by stage-0 nodes (default: the shipped corpus)')
    .option('--steps <n>', 'train: optimizer steps of the run (default 1000)')
    .option('--seed <n>', 'train: seed of the init and the batch draws (default 0)')
    .option('--batch <n>', 'train: B, sequences per microbatch (default 8)')
    .option('--seq-len <n>', 'train: T, tokens per sequence (default: the model context)')
    .option('--microbatches <n>', 'train: microbatches per optimizer step, per stage-0 node (default 1)')
    .option('--lr <x>', 'train: peak learning rate (default 1e-3; min lr = lr/10)')
    .option('--warmup <n>', 'train: warmup steps (default min(100, steps/10))')
    .option('--weight-decay <x>', 'train: AdamW weight decay (default 0.1)')
    .option('--grad-clip <x>', 'train: clip each stage\'s gradient norm (default 1; 0 off)')
    .option('--bottleneck <k>', 'train: learned bottleneck width at stage boundaries (default 0: off)')
    .option('--codec <name>', 'train: boundary codec of activations (and their gradients), e.g. fp16, int8-block; loads the compression plugin (default none: raw f32)')
    .option('--grad-codec <name>', 'train: codec of activation gradients, when it differs from --codec')
    .option('--run-name <name>', 'train: run name in the manifest (default layerswarm)')
    .option('--run-manifest <file>', 'train: run manifest JSON; replaces the model, stage, data and optimizer flags')
    .option('--max-inflight <k>', 'train: microbatches in flight per stage-0 node (default 4; 1 = synchronous)')
    .option('--sample-node-id <id>', 'train: node id of the batch sampler key (default: the peer id; "local" = train --local\'s)')
    .option('--eval-batches <n>', 'train: held-out batches of the final eval, run by stage 0 (default 8; 0 none)')
    .option('--eval-every <n>', 'train: also evaluate every n steps (default 0)')
    .option('--report <file>', 'train: write a JSON report when the run is done')
    .option('--checkpoint-dir <dir>', 'train: write this stage\'s checkpoint here when the run is done')
    .option('--exit-when-done', 'train: exit 0 once the run is done (default: keep serving)')
    .option('--role <list>', 'train: the roles this node runs, comma-separated: stage (serve a stage), data (originate microbatches: pins stage 0), validator (check peers\' work) (default stage)')
    .option('--max-attempts <n>', 'train: attempts per microbatch and hop, each on another peer, before it is dropped (default 3)')
    .option('--peer-wait <ms>', 'train: how long a microbatch waits for a peer of the next stage to appear (default 30000)')
    .option('--check-interval <ms>', 'train: with --role validator, the period of its checks (default 2000)')
    .option('--checks-per-interval <n>', 'train: with --role validator, the checks per period (the sample rate; default 1)')
    .addHelpText('after', '\nEnvironment: LAYERSWARM_NETWORK, LAYERSWARM_LISTEN (comma-separated), LAYERSWARM_ANNOUNCE, ' +
      'LAYERSWARM_BOOTSTRAP, LAYERSWARM_PLUGINS, LAYERSWARM_BACKEND, LAYERSWARM_DATA_DIR, LAYERSWARM_BOOTSTRAP_NODE, ' +
      'LAYERSWARM_RELAY, LAYERSWARM_PSK, LAYERSWARM_CONFIG, LAYERSWARM_LOG_LEVEL, LAYERSWARM_LOG_FORMAT, LAYERSWARM_CHAIN, ' +
      'LAYERSWARM_NETUID, LAYERSWARM_WALLET, LAYERSWARM_HOTKEY, LAYERSWARM_MAX_MEMORY, LAYERSWARM_METRICS. See docs/node.md, docs/chain.md and docs/metrics.md.')
    .action(async (flags: StartFlags) => { await runStart(flags) })
}

export async function runStart (flags: StartFlags): Promise<void> {
  // a bad --dashboard value exits 2 before anything starts
  const dashboard = parseDashboardAddress(flags.dashboard)
  const config = await resolveStartConfig(flags)
  await runWithMetrics(config, dashboard != null ? dashboardHooks(config, dashboard) : {})
}

/** Opens the dashboard once the node runs (a port in use costs the page, not the node) and prints `dashboard url=URL` on stdout. */
function dashboardHooks (config: StartConfig, at: DashboardAddress): RunNodeHooks {
  const logger = createLogger({ level: config.logLevel, format: config.logFormat })
  return {
    logger,
    onRunning: (node, runtime) => {
      const opening = import('../../core/dashboard/node-dashboard.ts')
        .then(async m => await m.openNodeDashboard(node, runtime, at, { log: logger }))
        .then(d => { process.stdout.write(`dashboard url=${d.url}\n`); return d }, err => {
          logger.forComponent('layerswarm:cli').error('the dashboard did not start; the node runs on', { error: (err as Error).message })
          return undefined
        })
      return async () => { await (await opening)?.close() }
    }
  }
}

/**
 * runNode, with --metrics: the Prometheus endpoint binds before the node is created (a bad or busy
 * address exits 2 at once), gets libp2p's metrics module into the node, reads the node once it runs,
 * and closes after the node has stopped (core/metrics/node-metrics.ts).
 */
async function runWithMetrics (config: Parameters<typeof runNode>[0], hooks: NonNullable<Parameters<typeof runNode>[1]>): Promise<void> {
  if (config.metrics == null) return await runNode(config, hooks)
  const { openNodeMetrics } = await import('../../core/metrics/node-metrics.ts')
  const metrics = await openNodeMetrics(config.metrics, { log: hooks.logger, logLevel: config.logLevel, logFormat: config.logFormat })
  try {
    await runNode({ ...config, node: { ...config.node, libp2pMetrics: metrics.libp2pMetrics } }, {
      ...hooks,
      onRunning: (node, runtime) => { metrics.attach(node, runtime); return hooks.onRunning?.(node, runtime) }
    })
  } finally {
    await metrics.close()
  }
}

// the shared part (cli/run-node.ts) has it now; kept here for callers of this module
export { chainOption }
