// `layerswarm start`: run a node until SIGINT/SIGTERM. Prints one line on stdout once listening:
//   listening peerId=<id> addrs=<multiaddr>,<multiaddr>,...
// (scripts parse it); logs go to stderr. On a signal: bootstrap dialer, control endpoint, plugins
// (reverse order), connections; exit 0. A second signal forces exit 1.
import type { Command } from 'commander'
import { createLogger } from '../../core/logger.ts'
import { resolveStartConfig, type StartFlags } from '../config.ts'

/** How long a clean shutdown may take before the process gives up and exits 1. */
const STOP_TIMEOUT_MS = 20_000

const collect = (value: string, previous?: string[]): string[] => [...(previous ?? []), value]

export function register (program: Command): void {
  program.command('start')
    .description('run a node: join the network, serve the DHT and gossip, run plugins, until SIGINT/SIGTERM')
    .option('--network <name|file>', 'network: local, testnet, or a profile JSON file (default: local)')
    .option('--listen <multiaddr>', 'listen address (repeat, or comma-separate; default: the network profile\'s)', collect)
    .option('--announce <multiaddr>', 'address to announce instead of the listen addresses (repeat)', collect)
    .option('--bootstrap <multiaddr>', 'bootstrap peer address, added to the network profile\'s (repeat)', collect)
    .option('--plugins <list>', 'comma-separated plugins: built-in names, ./paths or packages (default: backend-cpu; "" for none)')
    .option('--backend <name>', 'compute backend plugin, e.g. cpu, backend-cpu, ./my-backend.js')
    .option('--data-dir <dir>', 'identity key, lock and control socket (default: ~/.layerswarm)')
    .option('--bootstrap-node', 'only serve others: DHT server, gossip, circuit relay server; no training plugins')
    .option('--relay', 'reserve a slot on relays so peers can reach this node behind NAT')
    .option('--psk <file>', 'pre-shared key file (swarm.key format) of a private swarm; overrides the profile\'s')
    .option('--config <file>', 'JSON config file (flags > LAYERSWARM_* env > config file > defaults)')
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent (default: info)')
    .option('--log-format <format>', 'human or json (default: human)')
    .addHelpText('after', '\nEnvironment: LAYERSWARM_NETWORK, LAYERSWARM_LISTEN (comma-separated), LAYERSWARM_ANNOUNCE, ' +
      'LAYERSWARM_BOOTSTRAP, LAYERSWARM_PLUGINS, LAYERSWARM_BACKEND, LAYERSWARM_DATA_DIR, LAYERSWARM_BOOTSTRAP_NODE, ' +
      'LAYERSWARM_RELAY, LAYERSWARM_PSK, LAYERSWARM_CONFIG, LAYERSWARM_LOG_LEVEL, LAYERSWARM_LOG_FORMAT. See docs/node.md.')
    .action(async (flags: StartFlags) => { await runStart(flags) })
}

export async function runStart (flags: StartFlags): Promise<void> {
  const config = await resolveStartConfig(flags)
  const logger = createLogger({ level: config.logLevel, format: config.logFormat })
  const log = logger.forComponent('layerswarm:cli')

  // handlers go in before start, so a signal while starting still shuts down cleanly
  let signalled: ((sig: NodeJS.Signals) => void) | undefined
  const received = new Promise<NodeJS.Signals>(resolve => { signalled = resolve })
  let signals = 0
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++
    if (signals > 1) {
      log.error('second signal: exiting without a clean shutdown', { signal: sig })
      process.exit(1)
    }
    signalled?.(sig)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  // a long-running node logs stray rejections from the network stack instead of dying on them
  const onRejection = (reason: unknown): void => {
    log.error('unhandled rejection', { error: (reason as Error)?.stack ?? String(reason) })
  }
  process.on('unhandledRejection', onRejection)

  try {
    // imported here: the libp2p stack takes seconds to load, which --help and bad flags need not wait for
    const { createNode } = await import('../../core/node/create-node.ts')
    const node = await createNode({ ...config.node, logger })
    const starting = node.start()
    const first = await Promise.race([starting.then(() => undefined), received])
    if (first != null) {
      starting.catch(() => {}) // stop() below undoes the start; its outcome no longer matters
      await node.stop()
      log.info('stopped during start', { signal: first })
      return
    }
    process.stdout.write(`listening peerId=${node.peerId} addrs=${node.addresses().join(',')}\n`)
    // the training runtime hooks in here (stage worker, trainer) once it exists: config.node.runtime

    const sig = await received
    log.info('shutting down', { signal: sig })
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>(resolve => { timer = setTimeout(() => { resolve('timeout') }, STOP_TIMEOUT_MS) })
    const outcome = await Promise.race([node.stop().then(() => 'stopped' as const), timedOut])
    clearTimeout(timer)
    if (outcome === 'timeout') {
      log.error('shutdown did not finish in time; exiting', { timeoutMs: STOP_TIMEOUT_MS })
      process.exitCode = 1
    } else {
      log.info('shut down cleanly')
    }
    // libp2p may leave a timer or socket behind; do not let it keep a stopped node's process alive
    setTimeout(() => { process.exit() }, 2000).unref()
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.off('unhandledRejection', onRejection)
  }
}
