// Running a node until a signal: what `layerswarm start` and `layerswarm join` share. From a
// resolved StartConfig: load the plugins the run needs, create and start the node, start the
// training runtime when the config trains, and on SIGINT/SIGTERM stop the runtime, then the node
// (bootstrap dialer, control endpoint, plugins in reverse order, connections). A second signal
// (more than a second after the first) forces exit 1. The hooks let a command print its own words (join) without a second copy of this.
import { createLogger } from '../core/logger.ts'
import type { Logger } from '../core/contracts/logger.ts'
import { ConfigError } from '../core/errors.ts'
import type { ChainConfig, StartConfig } from './config.ts'
import type { ChainOptions } from '../core/chain/chain-node.ts'
import type { LayerswarmNode } from '../core/node/create-node.ts'
import type { TrainingOptions, TrainingRuntime } from '../core/runtime/training-runtime.ts'

/** How long a clean shutdown may take before the process gives up and exits 1. */
export const STOP_TIMEOUT_MS = 20_000

/** Signals this close together are one (see onSignal). */
export const SAME_SIGNAL_MS = 1000

/** What ended the node's run: a signal, or the run being over (--exit-when-done). */
export type StopReason = NodeJS.Signals | 'done' | 'failed'

export interface RunNodeHooks {
  /** The node's logger; default one of the config's level and format on stderr. */
  logger?: Logger
  /** Once the node listens; default: the `listening peerId=<id> addrs=<a>,<b>` line on stdout (scripts parse it). */
  onListening?: (node: LayerswarmNode) => void
  /** Once the node (and its training runtime, where it trains) runs; the function it returns runs first at shutdown. */
  onRunning?: (node: LayerswarmNode, runtime: TrainingRuntime | undefined) => (() => void | Promise<void>) | undefined
  /** The shutdown begins (a signal, or the run is over). */
  onStopping?: (reason: StopReason) => void
  /** The shutdown ended: cleanly, or not within STOP_TIMEOUT_MS (the exit code is then 1). */
  onStopped?: (outcome: 'stopped' | 'timeout') => void
}

export async function runNode (config: StartConfig, hooks: RunNodeHooks = {}): Promise<void> {
  const logger = hooks.logger ?? createLogger({ level: config.logLevel, format: config.logFormat })
  const log = logger.forComponent('layerswarm:cli')

  // handlers go in before start, so a signal while starting still shuts down cleanly
  let signalled: ((sig: NodeJS.Signals) => void) | undefined
  const received = new Promise<NodeJS.Signals>(resolve => { signalled = resolve })
  let firstAt: number | undefined
  const onSignal = (sig: NodeJS.Signals): void => {
    // one Ctrl-C under `npx` arrives twice: from the terminal to the process group, and forwarded by
    // npm to its child; a repeat within SAME_SIGNAL_MS is that one keypress, not a second one
    if (firstAt != null && Date.now() - firstAt < SAME_SIGNAL_MS) return
    if (firstAt != null) {
      log.error('second signal: exiting without a clean shutdown', { signal: sig })
      process.exit(1)
    }
    firstAt = Date.now()
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
    const { createNode, DEFAULT_BACKEND_PLUGIN } = await import('../core/node/create-node.ts')
    const { backendSpec } = await import('../core/node/backend-choice.ts')
    let trainingOptions: TrainingOptions | undefined
    let plugins = config.node.plugins
    let runtimeConfig = config.node.runtime
    const rt = config.node.runtime != null && config.node.bootstrapNode !== true ? await import('../core/runtime/training-runtime.ts') : undefined
    if (rt?.wantsTraining(config.node.runtime) === true) {
      const { parseTrainingOptions, schedulerRuntime, trainingPlugins } = rt
      const { SCHEDULER_PLUGIN } = await import('../core/runtime/scheduling.ts')
      trainingOptions = parseTrainingOptions(config.node.runtime ?? {})
      // the scheduler plugin assigns the stage (or, with --stage, gossips the pin for the others), and
      // reads run id, stage count and pin from NodeConfig.runtime: so the manifest is built first
      runtimeConfig = { ...config.node.runtime, ...await schedulerRuntime(trainingOptions) }
      // a run whose boundaries use plugin codecs (--codec int8-block) needs the codecs plugin: add it
      // to the node's plugins (the defaults, or the user's list), since plugins load before training starts
      const extra = [...await trainingPlugins(trainingOptions), SCHEDULER_PLUGIN].filter(p => !(plugins ?? []).includes(p))
      if (extra.length > 0) {
        plugins = [...(plugins ?? [config.node.backend != null ? backendSpec(config.node.backend) : DEFAULT_BACKEND_PLUGIN]), ...extra]
        log.info('loading plugins the run needs', { plugins: extra.join(',') })
      }
    }
    const chain = config.chain != null ? await chainOption(config.chain, config.node.dataDir) : undefined
    const node = await createNode({ ...config.node, plugins, runtime: runtimeConfig, logger, ...(chain != null ? { chain } : {}) })
    const starting = node.start()
    const first = await Promise.race([starting.then(() => undefined), received])
    if (first != null) {
      starting.catch(() => {}) // stop() below undoes the start; its outcome no longer matters
      hooks.onStopping?.(first)
      await node.stop()
      log.info('stopped during start', { signal: first })
      hooks.onStopped?.('stopped')
      return
    }
    if (hooks.onListening != null) hooks.onListening(node)
    else process.stdout.write(`listening peerId=${node.peerId} addrs=${node.addresses().join(',')}\n`)

    // the training runtime (core/runtime): training flags mean this node trains
    let runtime: TrainingRuntime | undefined
    if (trainingOptions != null) {
      const { startTrainingRuntime } = await import('../core/runtime/training-runtime.ts')
      try {
        runtime = await startTrainingRuntime(node, trainingOptions, logger)
      } catch (err) {
        await node.stop()
        throw err
      }
    }
    const cleanup = hooks.onRunning?.(node, runtime)
    const finished = runtime?.options.exitWhenDone === true
      ? runtime.done.then(() => 'done' as const, err => { log.error('finishing the run failed', { error: (err as Error).message }); return 'failed' as const })
      : new Promise<never>(() => {})
    const sig = await Promise.race([received, finished])
    hooks.onStopping?.(sig)
    if (sig === 'done' || sig === 'failed') {
      const state = runtime?.status().state
      log.info('run over: exiting', { state })
      if (sig === 'failed' || state !== 'done') process.exitCode = 1
    } else {
      log.info('shutting down', { signal: sig })
    }
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>(resolve => { timer = setTimeout(() => { resolve('timeout') }, STOP_TIMEOUT_MS) })
    const stopping = (async () => {
      await Promise.resolve(cleanup?.()).catch(err => { log.warn('cleaning up failed', { error: (err as Error).message }) })
      await runtime?.stop().catch(err => { log.warn('stopping the training runtime failed', { error: (err as Error).message }) })
      await node.stop()
    })()
    const outcome = await Promise.race([stopping.then(() => 'stopped' as const), timedOut])
    clearTimeout(timer)
    if (outcome === 'timeout') {
      log.error('shutdown did not finish in time; exiting', { timeoutMs: STOP_TIMEOUT_MS })
      process.exitCode = 1
    } else {
      log.info('shut down cleanly')
    }
    hooks.onStopped?.(outcome)
    // libp2p may leave a timer or socket behind; do not let it keep a stopped node's process alive
    setTimeout(() => { process.exit() }, 2000).unref()
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.off('unhandledRejection', onRejection)
  }
}

/** createNode's `chain` option: the configured subnet and the wallet's hotkey, loaded from the data dir. */
export async function chainOption (c: ChainConfig, dataDir: string | undefined): Promise<ChainOptions> {
  const { loadHotkey } = await import('../core/chain/wallet.ts')
  const { WalletError } = await import('../core/chain/errors.ts')
  const { defaultDataDir } = await import('../core/node/data-dir.ts')
  try {
    const hotkey = await loadHotkey(dataDir ?? defaultDataDir(), c.wallet, c.hotkey)
    const { CHAIN_ALIASES } = await import('./commands/chain.ts')
    return { endpoint: CHAIN_ALIASES[c.endpoint] ?? c.endpoint, netuid: c.netuid, hotkey }
  } catch (err) {
    // a missing or unreadable hotkey is the user's to fix: a config error (exit 2)
    if (err instanceof WalletError) throw new ConfigError(`--chain needs hotkey "${c.hotkey}" of wallet "${c.wallet}": ${err.message}`, { cause: err })
    throw err
  }
}
