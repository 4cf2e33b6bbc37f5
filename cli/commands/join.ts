// `layerswarm join`: a volunteer's one command. It decides what `start` would need flags for, says
// what it decided and why, and runs the node through the same code as `start` (cli/run-node.ts):
//   backend   a hardware WebGPU adapter, else the CPU (core/join/backend-pick.ts), unless --backend
//   memory    half of the memory available now, capped (core/join/memory-budget.ts), unless --max-memory;
//             the scheduler assigns only a stage whose estimate fits it
//   stage     the scheduler's choice (no --stage): it moves the node when the swarm needs it elsewhere
//   network   testnet unless --network; with nobody to join it says so and keeps looking
//   dashboard http://127.0.0.1:7070/ unless --no-dashboard; a browser opens only where a display is
// Plain lines on stdout say what happens (core/join/narrator.ts); logs go to stderr at warn. On a
// TTY, waits and training progress show as bars. Ctrl-C stops training and leaves: exit 0; a second
// Ctrl-C forces exit 1.
import { spawn } from 'node:child_process'
import type { Command } from 'commander'
import type { SingleBar } from 'cli-progress'
import { createLogger } from '../../core/logger.ts'
import type { Logger } from '../../core/contracts/logger.ts'
import { resolveStartConfig, type StartFlags } from '../config.ts'
import { runNode } from '../run-node.ts'
import type { ProgressSink } from '../../core/join/narrator.ts'
import { Tokens } from '../../core/contracts/tokens.ts'
import { parseDashboardAddress, type DashboardAddress } from '../../core/dashboard/address.ts'
import type { Membership } from '../../core/contracts/membership.ts'
import type { Scheduler } from '../../core/contracts/scheduler.ts'
import type { LayerswarmNode } from '../../core/node/create-node.ts'
import type { TrainingRuntime } from '../../core/runtime/training-runtime.ts'

export interface JoinFlags {
  network?: string
  bootstrap?: string[]
  listen?: string[]
  chain?: string
  netuid?: string
  wallet?: string
  hotkey?: string
  dataDir?: string
  /** true (default), false (--no-dashboard) or HOST:PORT. */
  dashboard?: boolean | string
  maxMemory?: string
  backend?: string
  runManifest?: string
  logLevel?: string
  openBrowser?: boolean
}

/** The network a volunteer joins without --network (docs/node.md, "Join as a volunteer"). */
export const DEFAULT_JOIN_NETWORK = 'testnet'

const collect = (value: string, previous?: string[]): string[] => [...(previous ?? []), value]

export function register (program: Command): void {
  program.command('join')
    .description('volunteer this machine: pick the backend and memory budget, take a stage from the scheduler, train, show a dashboard; Ctrl-C leaves')
    .option('--network <name|file>', `network: testnet, local, or a profile JSON file (default: ${DEFAULT_JOIN_NETWORK})`)
    .option('--bootstrap <multiaddr>', 'a peer of the swarm to join through (repeat); ask the swarm\'s operator', collect)
    .option('--listen <multiaddr>', 'listen address (repeat; default: the network profile\'s)', collect)
    .option('--chain <url>', 'join a Bittensor subnet through this subtensor endpoint: its nodes\' addresses replace a bootstrap list (docs/chain.md)')
    .option('--netuid <n>', 'with --chain: the subnet')
    .option('--wallet <name>', 'with --chain: the wallet whose hotkey this node binds (default: default)')
    .option('--hotkey <name>', 'with --chain: that wallet\'s hotkey (default: default)')
    .option('--data-dir <dir>', 'identity key, lock and control socket (default: ~/.layerswarm)')
    .option('--dashboard [host:port]', 'serve the dashboard here (default 127.0.0.1:7070)')
    .option('--no-dashboard', 'no dashboard')
    .option('--no-open-browser', 'print the dashboard\'s URL but do not open a browser')
    .option('--max-memory <size>', 'memory budget, e.g. 2G (default: half of the memory available now, at most 16G)')
    .option('--backend <name>', 'compute backend (default: webgpu where a hardware GPU adapter exists, else cpu)')
    .option('--run-manifest <file>', 'the run to join, when the swarm trains another than the default run (docs/node.md)')
    .option('--log-level <level>', 'the node\'s log on stderr: trace, debug, info, warn, error or silent (default: warn)')
    .action(async (flags: JoinFlags) => { await runJoin(flags) })
}

export async function runJoin (flags: JoinFlags): Promise<void> {
  // every flag is checked before anything slow starts (exit 2)
  const startFlags = joinStartFlags(flags)
  const dashboardAt = flags.dashboard === false ? undefined : parseDashboardAddress(flags.dashboard ?? true)
  const checked = await resolveStartConfig(startFlags)
  const { loadNetworkProfile } = await import('../../core/node/network-profile.ts')
  await loadNetworkProfile(checked.node.network as string)
  const out = (line: string): void => { process.stdout.write(line + '\n') }

  const ac = new AbortController()
  if (startFlags.backend == null) {
    const { probeGpu, pickBackend } = await import('../../core/join/backend-pick.ts')
    const pick = pickBackend(await probeGpu({ signal: ac.signal }))
    startFlags.backend = pick.backend
    out(`backend: ${pick.backend === 'cpu' ? 'CPU' : 'WebGPU'}, because ${pick.why}`)
  } else {
    out(`backend: ${startFlags.backend} (--backend)`)
  }
  if (startFlags.maxMemory == null) {
    const { machineMemory, memoryBudget } = await import('../../core/join/memory-budget.ts')
    const { formatBytes } = await import('../../core/model/memory-estimate.ts')
    const budget = memoryBudget(machineMemory())
    startFlags.maxMemory = budget.flag
    out(`memory budget: ${formatBytes(budget.bytes)} (${budget.why}); the scheduler assigns a stage that fits it`)
  } else {
    out(`memory budget: ${startFlags.maxMemory} (--max-memory)`)
  }
  const config = await resolveStartConfig(startFlags)
  const network = config.node.network as string
  const bootstraps = (config.node.bootstrap ?? []).length

  const { tapLogger } = await import('../../core/join/log-tap.ts')
  const { Narrator } = await import('../../core/join/narrator.ts')
  const bars = process.stdout.isTTY ? await progressBars() : undefined
  let narrator: InstanceType<typeof Narrator> | undefined
  const base = createLogger({ level: config.logLevel, format: config.logFormat })
  const logger: Logger = tapLogger(base, e => { narrator?.event(e) })
  let timer: NodeJS.Timeout | undefined

  await runNode(config, {
    logger,
    onListening: node => {
      out(`joining the ${typeof network === 'string' && !network.includes('/') ? network : 'given'} network as ${node.peerId}`)
      out(`this node's addresses: ${node.addresses().join(', ')}`)
      if (bootstraps === 0 && config.chain == null) {
        out(`no bootstrap peer is known for ${network}: ${network === 'testnet' ? 'the testnet has no public bootstrap list yet' : 'its profile lists none'}; ` +
          'others can join through this node\'s addresses, or restart with --bootstrap ADDR (ask the swarm\'s operator)')
      }
    },
    onRunning: (node, runtime) => {
      narrator = new Narrator({
        say: line => { bars?.clear(); out(line) },
        ...(bars != null ? { progress: bars } : {}),
        peers: () => peerCounts(node),
        status: () => runtime?.status(),
        peersForStage: stage => schedulerPeers(node, stage),
        noPeersHint: `nobody to join yet on ${network}: still looking (pass --bootstrap ADDR of a running node, or --chain ENDPOINT --netuid N)`
      })
      timer = setInterval(() => { narrator?.tick() }, 1000)
      narrator.tick()
      const dashboard = dashboardAt != null ? openDashboard(node, runtime, dashboardAt, logger, ac.signal, flags.openBrowser !== false, out) : undefined
      return async () => {
        clearInterval(timer)
        ac.abort()
        await (await dashboard)?.close()
      }
    },
    onStopping: reason => {
      clearInterval(timer)
      bars?.clear()
      if (reason === 'SIGINT' || reason === 'SIGTERM') out('leaving: stopping training and closing connections (Ctrl-C again to force)')
    },
    onStopped: outcome => {
      bars?.clear()
      out(outcome === 'stopped' ? 'goodbye: this node left the swarm cleanly. Thank you for training with us.' : 'goodbye: the shutdown took too long; exiting anyway')
    }
  })
}

/** The `start` flags a join stands for: its own, plus what makes the node train with the scheduler. */
export function joinStartFlags (f: JoinFlags): StartFlags {
  const level = f.logLevel ?? 'warn'
  return {
    network: f.network ?? DEFAULT_JOIN_NETWORK,
    ...(f.bootstrap != null ? { bootstrap: f.bootstrap } : {}),
    ...(f.listen != null ? { listen: f.listen } : {}),
    ...(f.chain != null ? { chain: f.chain } : {}),
    ...(f.netuid != null ? { netuid: f.netuid } : {}),
    ...(f.wallet != null ? { wallet: f.wallet } : {}),
    ...(f.hotkey != null ? { hotkey: f.hotkey } : {}),
    ...(f.dataDir != null ? { dataDir: f.dataDir } : {}),
    ...(f.maxMemory != null ? { maxMemory: f.maxMemory } : {}),
    ...(f.backend != null ? { backend: f.backend } : {}),
    logLevel: level,
    // a training option makes the node train; the stage is the scheduler's (never --stage)
    role: 'stage',
    ...(f.runManifest != null ? { runManifest: f.runManifest } : {})
  }
}

function peerCounts (node: LayerswarmNode): { connected: number, inRun: number } {
  const c = node.container
  const inRun = c.isRegistered(Tokens.Membership, true) ? c.resolve<Membership>(Tokens.Membership).members().length : 0
  return { connected: node.libp2p.getPeers().length, inRun }
}

function schedulerPeers (node: LayerswarmNode, stage: number): string[] {
  const c = node.container
  return c.isRegistered(Tokens.Scheduler, true) ? c.resolve<Scheduler>(Tokens.Scheduler).peersForStage(stage) : []
}

/** Starts the dashboard and says where; a port in use costs the page, never the join. */
async function openDashboard (node: LayerswarmNode, runtime: TrainingRuntime | undefined, at: DashboardAddress, logger: Logger,
  signal: AbortSignal, browser: boolean, out: (line: string) => void): Promise<{ close: () => Promise<void> } | undefined> {
  try {
    const { openNodeDashboard } = await import('../../core/dashboard/node-dashboard.ts')
    const d = await openNodeDashboard(node, runtime, at, { log: logger, signal })
    out(`dashboard: ${d.url}`)
    if (browser) openBrowser(d.url)
    return d
  } catch (err) {
    out(`dashboard: not started (${(err as Error).message}); pass --dashboard HOST:PORT for another address, or --no-dashboard`)
    return undefined
  }
}

/** xdg-open / open where a display exists; anything that goes wrong is ignored (the URL is printed). */
function openBrowser (url: string): void {
  const cmd = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? undefined : 'xdg-open'
  const display = process.platform === 'darwin' || process.env.DISPLAY != null || process.env.WAYLAND_DISPLAY != null
  if (cmd == null || !display) return
  try {
    const child = spawn(cmd, [url], { stdio: 'ignore', detached: true })
    child.on('error', () => {})
    child.unref()
  } catch {
    // no opener: the printed URL is enough
  }
}

/** cli-progress bars on a TTY: one line that a plain line clears first. */
async function progressBars (): Promise<ProgressSink & { clear: () => void }> {
  const { SingleBar, Presets } = (await import('cli-progress')).default
  let bar: SingleBar | undefined
  let kind: 'wait' | 'training' | undefined
  let since = 0
  const make = (format: string, total: number, k: 'wait' | 'training'): SingleBar => {
    if (bar != null && kind === k) return bar
    bar?.stop()
    bar = new SingleBar({ format, hideCursor: true, clearOnComplete: true, stopOnComplete: false, etaBuffer: 20 }, Presets.shades_classic)
    kind = k
    bar.start(total, 0, { text: '' })
    return bar
  }
  return {
    wait (label) {
      if (kind !== 'wait') since = Date.now()
      const b = make(`${label} {bar} {text}`, 20, 'wait')
      const s = Math.floor((Date.now() - since) / 1000)
      b.update(s % 21, { text: `${s} s` })
    },
    training (step, steps, text) {
      make('training {bar} {text}', steps, 'training').update(Math.min(step, steps), { text })
    },
    clear () {
      bar?.stop()
      bar = undefined
      kind = undefined
    }
  }
}
