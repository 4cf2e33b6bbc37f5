// Configuration of `layerswarm start`, from four sources in order of precedence:
//   flags > environment (LAYERSWARM_*) > config file (--config / LAYERSWARM_CONFIG, JSON) > defaults.
// A list (listen, bootstrap, plugins, ...) from a higher source replaces the lower one's, never merges.
// Paths in a config file are relative to that file; paths in flags and env are relative to cwd.
// Everything is validated here so bad input is one ConfigError (exit 2) that says what and how to fix.
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, resolve } from 'node:path'
import { ConfigError } from '../core/errors.ts'
import { isLogLevel, type LogFormat } from '../core/logger.ts'
import type { LogLevel } from '../core/contracts/logger.ts'
import type { CreateNodeOptions } from '../core/node/create-node.ts'
import { BUILTIN_NETWORKS } from '../core/node/network-profile.ts'
import { parseMultiaddrs } from '../core/node/multiaddrs.ts'
import { parseStunServers } from '../core/node/stun-servers.ts'
import { isPathSpec } from '../core/node/plugin-registry.ts'
import { isSwarmKeyText } from '../core/node/swarm-key.ts'
import { withShorthandOptions } from './plugin-flags.ts'
import { MemorySizeError, parseMemorySize } from '../core/model/memory-estimate.ts'
import { parseMetricsAddress, type MetricsAddress } from '../core/metrics/metrics-address.ts'

/** Options as commander parses them from the `start` flags. */
export interface StartFlags {
  network?: string
  listen?: string[]
  announce?: string[]
  bootstrap?: string[]
  plugins?: string
  backend?: string
  dataDir?: string
  bootstrapNode?: boolean
  relay?: boolean
  /** --stun URL (repeat): STUN servers for WebRTC hole punching; --no-webrtc turns WebRTC off. */
  stun?: string[]
  webrtc?: boolean
  psk?: string
  config?: string
  logLevel?: string
  logFormat?: string
  // Bittensor (core/chain/chain-node.ts): endpoint, subnet, and the wallet's hotkey the node binds
  chain?: string
  netuid?: string
  wallet?: string
  hotkey?: string
  allowSoftwareGpu?: boolean
  gpuF16?: boolean
  // training (core/runtime/training-runtime.ts parses and validates them)
  stage?: string
  stages?: string
  model?: string
  tokenizer?: string
  data?: string
  steps?: string
  seed?: string
  batch?: string
  seqLen?: string
  microbatches?: string
  lr?: string
  warmup?: string
  weightDecay?: string
  gradClip?: string
  bottleneck?: string
  runName?: string
  codec?: string
  gradCodec?: string
  runManifest?: string
  maxInflight?: string
  sampleNodeId?: string
  evalBatches?: string
  evalEvery?: string
  report?: string
  checkpointDir?: string
  exitWhenDone?: boolean
  role?: string
  maxAttempts?: string
  peerWait?: string
  checkInterval?: string
  checksPerInterval?: string
  /** --max-memory SIZE (512M, 2G): also LAYERSWARM_MAX_MEMORY and the config file's "maxMemory". */
  maxMemory?: string
  /** --metrics HOST:PORT (or PORT: loopback): serve /metrics for Prometheus; also LAYERSWARM_METRICS and the config file's "metrics". */
  metrics?: string
  /** --dashboard [HOST:PORT]: true when given without a value (core/dashboard/address.ts parses it). */
  dashboard?: string | boolean
}

/** Flags of `start` that configure the training runtime; they go to CreateNodeOptions.runtime over the config file's `runtime`. */
export const TRAINING_FLAGS = [
  'stage', 'stages', 'model', 'tokenizer', 'data', 'steps', 'seed', 'batch', 'seqLen', 'microbatches', 'lr', 'warmup',
  'weightDecay', 'gradClip', 'bottleneck', 'runName', 'codec', 'gradCodec', 'runManifest', 'maxInflight', 'sampleNodeId', 'evalBatches',
  'evalEvery', 'report', 'checkpointDir', 'exitWhenDone', 'role', 'maxAttempts', 'peerWait',
  'checkInterval', 'checksPerInterval'
] as const

export interface StartConfig {
  /** Options for createNode (the logger is added by the command). */
  node: Omit<CreateNodeOptions, 'logger'>
  logLevel: LogLevel
  logFormat: LogFormat
  /** The config file read, if any. */
  configFile?: string
  /** With --chain: the subnet to join and the hotkey to load (cli/commands/start.ts loads it). */
  chain?: ChainConfig
  /** With --metrics: where the Prometheus endpoint listens (cli/commands/start.ts starts it; core/metrics/prometheus-exporter.ts). */
  metrics?: MetricsAddress
}

export interface ChainConfig {
  /** ws:// or wss:// URL of a subtensor node. */
  endpoint: string
  netuid: number
  /** Wallet and hotkey names in the data dir (default "default"). */
  wallet: string
  hotkey: string
}

/** Environment variables read by `start` (documented in docs/node.md). */
export const ENV = {
  config: 'LAYERSWARM_CONFIG',
  network: 'LAYERSWARM_NETWORK',
  listen: 'LAYERSWARM_LISTEN',
  announce: 'LAYERSWARM_ANNOUNCE',
  bootstrap: 'LAYERSWARM_BOOTSTRAP',
  plugins: 'LAYERSWARM_PLUGINS',
  backend: 'LAYERSWARM_BACKEND',
  dataDir: 'LAYERSWARM_DATA_DIR',
  bootstrapNode: 'LAYERSWARM_BOOTSTRAP_NODE',
  relay: 'LAYERSWARM_RELAY',
  psk: 'LAYERSWARM_PSK',
  stun: 'LAYERSWARM_STUN',
  webrtc: 'LAYERSWARM_WEBRTC',
  logLevel: 'LAYERSWARM_LOG_LEVEL',
  logFormat: 'LAYERSWARM_LOG_FORMAT',
  chain: 'LAYERSWARM_CHAIN',
  netuid: 'LAYERSWARM_NETUID',
  wallet: 'LAYERSWARM_WALLET',
  hotkey: 'LAYERSWARM_HOTKEY',
  maxMemory: 'LAYERSWARM_MAX_MEMORY',
  metrics: 'LAYERSWARM_METRICS'
} as const

/** Keys a config file may hold. */
const FILE_KEYS = new Set([
  'network', 'listen', 'announce', 'bootstrap', 'plugins', 'pluginOptions', 'backend', 'dataDir', 'bootstrapNode',
  'relay', 'psk', 'logLevel', 'logFormat', 'bootstrapRetry', 'runtime', 'chain', 'netuid', 'wallet', 'hotkey', 'maxMemory', 'metrics',
  'stun', 'webrtc'
])
const LOG_LEVELS = 'trace, debug, info, warn, error, silent'

/** One layer of settings, already normalized (paths absolute). */
interface Layer {
  network?: string
  listen?: string[]
  announce?: string[]
  bootstrap?: string[]
  plugins?: string[]
  pluginOptions?: Record<string, Record<string, unknown>>
  backend?: string
  dataDir?: string
  bootstrapNode?: boolean
  relay?: boolean
  stun?: string[]
  webrtc?: boolean
  psk?: string
  logLevel?: string
  logFormat?: string
  bootstrapRetry?: CreateNodeOptions['bootstrapRetry']
  runtime?: Record<string, unknown>
  chain?: string
  /** Text as given (a file's number becomes its text): checked once, in chainConfig. */
  netuid?: string
  wallet?: string
  hotkey?: string
  /** Text as given (a file's number becomes its text): parsed once, in resolveStartConfig. */
  maxMemory?: string
  /** HOST:PORT or PORT as given (a file's number becomes its text): parsed once, in resolveStartConfig. */
  metrics?: string
}

export async function resolveStartConfig (flags: StartFlags, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Promise<StartConfig> {
  const fromFlags = flagLayer(flags, cwd)
  const fromEnv = envLayer(env, cwd)
  const configPath = flags.config ?? nonEmpty(env[ENV.config])
  const configFile = configPath != null ? resolve(cwd, expandHome(configPath)) : undefined
  const fromFile = configFile != null ? await fileLayer(configFile) : {}

  const pick = <K extends keyof Layer>(k: K): Layer[K] => fromFlags[k] ?? fromEnv[k] ?? fromFile[k]
  const logLevel = pick('logLevel') ?? 'info'
  if (!isLogLevel(logLevel)) throw new ConfigError(`log level "${logLevel}" is not one of ${LOG_LEVELS}; fix --log-level, ${ENV.logLevel} or "logLevel"`)
  const logFormat = pick('logFormat') ?? 'human'
  if (logFormat !== 'human' && logFormat !== 'json') throw new ConfigError(`log format "${logFormat}" is not human or json; fix --log-format, ${ENV.logFormat} or "logFormat"`)

  const node: Omit<CreateNodeOptions, 'logger'> = {
    dataDir: pick('dataDir'),
    network: pick('network') ?? 'local',
    listen: pick('listen'),
    announce: pick('announce'),
    bootstrap: pick('bootstrap'),
    bootstrapNode: pick('bootstrapNode') ?? false,
    relayListen: pick('relay') ?? false,
    stun: pick('stun'),
    webrtc: pick('webrtc'),
    psk: pick('psk'),
    plugins: pick('plugins'),
    backend: pick('backend'),
    // --allow-software-gpu, --gpu-f16: shorthands for plugin options (cli/plugin-flags.ts)
    pluginOptions: withShorthandOptions(fromFile.pluginOptions, flags),
    bootstrapRetry: fromFile.bootstrapRetry,
    runtime: runtimeOptions(flags, fromFile.runtime),
    cwd
  }
  // check every multiaddr now, naming where it came from
  for (const key of ['listen', 'announce', 'bootstrap'] as const) {
    const where = fromFlags[key] != null ? `--${key}` : fromEnv[key] != null ? ENV[key] : `"${key}" of ${configFile ?? 'the config file'}`
    parseMultiaddrs(node[key] ?? [], where)
  }
  parseStunServers(node.stun ?? [], fromFlags.stun != null ? '--stun' : fromEnv.stun != null ? ENV.stun : `"stun" of ${configFile ?? 'the config file'}`)
  // --max-memory: the training runtime's budget (bytes); a node that does not train ignores it
  const mem = pick('maxMemory')
  if (mem != null && node.runtime != null) {
    const where = fromFlags.maxMemory != null ? '--max-memory' : fromEnv.maxMemory != null ? ENV.maxMemory : `"maxMemory" of ${configFile ?? 'the config file'}`
    try {
      node.runtime = { ...node.runtime, maxMemory: parseMemorySize(mem) }
    } catch (err) {
      throw new MemorySizeError(`${where}: ${(err as Error).message}`, { cause: err })
    }
  }
  const chain = chainConfig(pick('chain'), pick('netuid'), pick('wallet'), pick('hotkey'))
  const metricsText = pick('metrics')
  const metrics = metricsText == null ? undefined : parseMetricsAddress(metricsText, fromFlags.metrics != null ? '--metrics' : fromEnv.metrics != null ? ENV.metrics : `"metrics" of ${configFile ?? 'the config file'}`)
  return { node, logLevel, logFormat, configFile, ...(chain != null ? { chain } : {}), ...(metrics != null ? { metrics } : {}) }
}

// --chain needs --netuid; --netuid, --wallet and --hotkey mean nothing without --chain
function chainConfig (endpoint: string | undefined, netuid: string | undefined, wallet: string | undefined, hotkey: string | undefined): ChainConfig | undefined {
  if (endpoint == null) {
    const stray = [netuid != null ? '--netuid' : '', wallet != null ? '--wallet' : '', hotkey != null ? '--hotkey' : ''].filter(s => s !== '')
    if (stray.length > 0) throw new ConfigError(`${stray.join(', ')} given without --chain; pass the subtensor endpoint with --chain ws://HOST:PORT (or ${ENV.chain}, or "chain")`)
    return undefined
  }
  // "testnet" names the Bittensor testnet (cli/commands/chain.ts CHAIN_ALIASES; resolved when the hotkey is loaded)
  if (endpoint !== 'testnet' && !/^wss?:\/\/[^\s/]+/.test(endpoint)) throw new ConfigError(`chain endpoint "${endpoint}" is not a ws:// or wss:// URL (or "testnet"); fix --chain, ${ENV.chain} or "chain"`)
  if (netuid == null) throw new ConfigError(`--chain needs --netuid N (the subnet to join; or ${ENV.netuid}, or "netuid")`)
  if (!/^\d{1,5}$/.test(netuid) || Number(netuid) > 65535) throw new ConfigError(`netuid "${netuid}" is not an integer in 0..65535; fix --netuid, ${ENV.netuid} or "netuid"`)
  const name = (v: string | undefined, what: string): string => {
    const n = v ?? 'default'
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(n) || n.startsWith('.')) throw new ConfigError(`${what} name "${n}" must be 1-64 of [A-Za-z0-9._-], not starting with "."`)
    return n
  }
  return { endpoint, netuid: Number(netuid), wallet: name(wallet, 'wallet'), hotkey: name(hotkey, 'hotkey') }
}

// Training flags override the config file's `runtime` keys one by one (paths are resolved later,
// against cwd, by the runtime); with neither, runtime stays as the file left it.
function runtimeOptions (flags: StartFlags, fromFile: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  const given = Object.fromEntries(TRAINING_FLAGS.filter(k => flags[k] != null).map(k => [k, flags[k]]))
  if (Object.keys(given).length === 0) return fromFile
  return { ...fromFile, ...given }
}

function flagLayer (f: StartFlags, cwd: string): Layer {
  return {
    network: f.network != null ? networkSpec(f.network, cwd) : undefined,
    listen: f.listen != null ? splitList(f.listen.join(',')) : undefined,
    announce: f.announce != null ? splitList(f.announce.join(',')) : undefined,
    bootstrap: f.bootstrap != null ? splitList(f.bootstrap.join(',')) : undefined,
    plugins: f.plugins != null ? splitList(f.plugins).map(p => pluginSpec(p, cwd)) : undefined,
    backend: f.backend != null ? pluginSpec(f.backend, cwd) : undefined,
    dataDir: f.dataDir != null ? resolve(cwd, expandHome(f.dataDir)) : undefined,
    bootstrapNode: f.bootstrapNode === true ? true : undefined,
    relay: f.relay === true ? true : undefined,
    stun: f.stun != null ? splitList(f.stun.join(',')) : undefined,
    webrtc: f.webrtc === false ? false : undefined,
    psk: f.psk != null ? pskSpec(f.psk, cwd) : undefined,
    logLevel: f.logLevel,
    logFormat: f.logFormat,
    chain: f.chain,
    netuid: f.netuid,
    wallet: f.wallet,
    hotkey: f.hotkey,
    maxMemory: f.maxMemory,
    metrics: f.metrics
  }
}

function envLayer (env: NodeJS.ProcessEnv, cwd: string): Layer {
  const get = (k: keyof typeof ENV): string | undefined => nonEmpty(env[ENV[k]])
  const list = (k: keyof typeof ENV): string[] | undefined => {
    // set but empty means "none" (e.g. LAYERSWARM_PLUGINS= runs without plugins)
    const v = env[ENV[k]]
    return v != null ? splitList(v) : undefined
  }
  const network = get('network')
  const backend = get('backend')
  const dataDir = get('dataDir')
  const psk = get('psk')
  return {
    network: network != null ? networkSpec(network, cwd) : undefined,
    listen: list('listen'),
    announce: list('announce'),
    bootstrap: list('bootstrap'),
    plugins: list('plugins')?.map(p => pluginSpec(p, cwd)),
    backend: backend != null ? pluginSpec(backend, cwd) : undefined,
    dataDir: dataDir != null ? resolve(cwd, expandHome(dataDir)) : undefined,
    bootstrapNode: envBool(env, ENV.bootstrapNode),
    relay: envBool(env, ENV.relay),
    stun: list('stun'),
    webrtc: envBool(env, ENV.webrtc),
    psk: psk != null ? pskSpec(psk, cwd) : undefined,
    logLevel: get('logLevel'),
    logFormat: get('logFormat'),
    chain: get('chain'),
    netuid: get('netuid'),
    wallet: get('wallet'),
    hotkey: get('hotkey'),
    maxMemory: get('maxMemory'),
    metrics: get('metrics')
  }
}

async function fileLayer (file: string): Promise<Layer> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    throw new ConfigError(`config file ${file} cannot be read (${err?.code ?? err?.message}); check the --config path`, { cause: err })
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err: any) {
    throw new ConfigError(`config file ${file} is not valid JSON (${err?.message}); fix the syntax`, { cause: err })
  }
  const bad = (what: string): ConfigError => new ConfigError(`config file ${file}: ${what}`)
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('must be a JSON object, e.g. {"network": "local", "listen": ["/ip4/0.0.0.0/tcp/4001"]}')
  const o = raw as Record<string, unknown>
  const unknown = Object.keys(o).filter(k => !FILE_KEYS.has(k))
  if (unknown.length > 0) throw bad(`unknown key(s) ${unknown.join(', ')}; allowed: ${[...FILE_KEYS].join(', ')}`)
  const base = dirname(file)
  const str = (k: string): string | undefined => {
    if (o[k] == null) return undefined
    if (typeof o[k] !== 'string' || o[k] === '') throw bad(`"${k}" must be a non-empty string`)
    return o[k] as string
  }
  const strList = (k: string): string[] | undefined => {
    if (o[k] == null) return undefined
    if (!Array.isArray(o[k]) || (o[k] as unknown[]).some(x => typeof x !== 'string')) throw bad(`"${k}" must be an array of strings`)
    return o[k] as string[]
  }
  const bool = (k: string): boolean | undefined => {
    if (o[k] == null) return undefined
    if (typeof o[k] !== 'boolean') throw bad(`"${k}" must be true or false`)
    return o[k] as boolean
  }
  const obj = (k: string): Record<string, unknown> | undefined => {
    if (o[k] == null) return undefined
    if (typeof o[k] !== 'object' || Array.isArray(o[k])) throw bad(`"${k}" must be an object`)
    return o[k] as Record<string, unknown>
  }

  // "plugins": a list of specs, or an object spec -> that plugin's options
  let plugins: string[] | undefined
  let pluginOptions: Record<string, Record<string, unknown>> | undefined
  if (Array.isArray(o.plugins)) {
    plugins = strList('plugins')
  } else if (o.plugins != null) {
    const p = obj('plugins') ?? {}
    plugins = Object.keys(p)
    pluginOptions = {}
    for (const [name, opts] of Object.entries(p)) {
      if (opts == null || typeof opts !== 'object' || Array.isArray(opts)) throw bad(`"plugins.${name}" must be an options object ({} for none)`)
      pluginOptions[name] = opts as Record<string, unknown>
    }
  }
  const extraOptions = obj('pluginOptions') as Record<string, Record<string, unknown>> | undefined
  if (extraOptions != null) pluginOptions = { ...pluginOptions, ...extraOptions }
  // options keyed by a plugin's path follow it to the absolute path it is loaded by
  if (pluginOptions != null) pluginOptions = Object.fromEntries(Object.entries(pluginOptions).map(([k, v]) => [pluginSpec(k, base), v]))

  const retry = obj('bootstrapRetry')
  if (retry != null) {
    for (const [k, v] of Object.entries(retry)) {
      if (!['initialDelayMs', 'maxDelayMs', 'dialTimeoutMs'].includes(k)) throw bad(`unknown key bootstrapRetry.${k}; allowed: initialDelayMs, maxDelayMs, dialTimeoutMs`)
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw bad(`"bootstrapRetry.${k}" must be a positive number of milliseconds`)
    }
  }
  if (o.netuid != null && typeof o.netuid !== 'number' && typeof o.netuid !== 'string') throw bad('"netuid" must be an integer')
  if (o.maxMemory != null && typeof o.maxMemory !== 'number' && typeof o.maxMemory !== 'string') throw bad('"maxMemory" must be a size such as "2G" or a number of bytes')
  if (o.metrics != null && typeof o.metrics !== 'number' && typeof o.metrics !== 'string') throw bad('"metrics" must be "HOST:PORT" or a port number')
  const network = str('network')
  const dataDir = str('dataDir')
  const psk = str('psk')
  const backend = str('backend')
  return {
    network: network != null ? networkSpec(network, base) : undefined,
    listen: strList('listen'),
    announce: strList('announce'),
    bootstrap: strList('bootstrap'),
    plugins: plugins?.map(p => pluginSpec(p, base)),
    pluginOptions,
    backend: backend != null ? pluginSpec(backend, base) : undefined,
    dataDir: dataDir != null ? resolve(base, expandHome(dataDir)) : undefined,
    bootstrapNode: bool('bootstrapNode'),
    relay: bool('relay'),
    stun: strList('stun'),
    webrtc: bool('webrtc'),
    psk: psk != null ? pskSpec(psk, base) : undefined,
    logLevel: str('logLevel'),
    logFormat: str('logFormat'),
    bootstrapRetry: retry as CreateNodeOptions['bootstrapRetry'],
    runtime: obj('runtime'),
    chain: str('chain'),
    netuid: o.netuid != null ? String(o.netuid) : undefined,
    wallet: str('wallet'),
    hotkey: str('hotkey'),
    maxMemory: o.maxMemory != null ? String(o.maxMemory) : undefined,
    metrics: o.metrics != null ? String(o.metrics) : undefined
  }
}

function splitList (v: string): string[] {
  return v.split(',').map(s => s.trim()).filter(s => s !== '')
}

function nonEmpty (v: string | undefined): string | undefined {
  return v != null && v.trim() !== '' ? v.trim() : undefined
}

function envBool (env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const v = nonEmpty(env[name])?.toLowerCase()
  if (v == null) return undefined
  if (['1', 'true', 'yes', 'on'].includes(v)) return true
  if (['0', 'false', 'no', 'off'].includes(v)) return false
  throw new ConfigError(`${name}=${env[name]} is not a boolean; use true or false`)
}

function expandHome (p: string): string {
  return p === '~' || p.startsWith('~/') ? homedir() + p.slice(1) : p
}

// A network is a built-in name or a file; files resolve against the layer's base dir.
function networkSpec (v: string, base: string): string {
  return (BUILTIN_NETWORKS as readonly string[]).includes(v) ? v : resolve(base, expandHome(v))
}

// Plugin paths resolve against the layer's base dir; names and packages stay as they are.
function pluginSpec (v: string, base: string): string {
  return isPathSpec(v) && !v.startsWith('file:') ? resolve(base, v) : v
}

function pskSpec (v: string, base: string): string {
  return isSwarmKeyText(v) ? v : resolve(base, expandHome(v))
}
