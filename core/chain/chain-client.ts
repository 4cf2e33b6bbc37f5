// The node's view of a subtensor chain over @polkadot/api: reads (head, subnets, metagraph, weight
// rules, balances) and the signed operations a node performs (burned registration, a subnet, stake,
// serving an axon, weights). Reads wait a bounded time for a dropped connection to come back (the
// provider reconnects by itself), then throw ChainUnreachableError; signed operations go through
// extrinsic.ts (local nonces, inclusion, typed dispatch errors).
import { routePolkadotConsole } from './polkadot-console.ts'
import { checkRuntimeSurface } from './runtime-surface.ts'
import { ApiPromise, WsProvider } from '@polkadot/api'
import type { SubmittableExtrinsic } from '@polkadot/api/types'
import type { KeyringPair } from '@polkadot/keyring/types'
import type { Logger } from '../contracts/logger.ts'
import { AbortError, ConfigError } from '../errors.ts'
import { silentLogger } from '../logger.ts'
import { backoffDelay } from '../node/bootstrap-dialer.ts'
import { pause, withDeadline } from '../timers.ts'
import { ipToU128, isUnservableIp } from './axon-address.ts'
import { AlreadyRegisteredError, ChainExtrinsicError, ChainUnreachableError, InsufficientBalanceError, LoopbackAddressError, SubnetNotFoundError } from './errors.ts'
import { submitSigned, type Included, type SubmitOptions } from './extrinsic.ts'
import { readMetagraph, readSubnetExists, readWeightRules, readWeights } from './metagraph-read.ts'
import { NonceTracker } from './nonce-tracker.ts'
import type { ChainCallOptions, ChainReader, Metagraph, Neuron, SubnetWeightRules, WeightsWriter } from './types.ts'

/** The Bittensor testnet, named so `--chain testnet` can pick it; never dialled by default. */
export const TESTNET_ENDPOINT = 'wss://test.finney.opentensor.ai:443'

export interface ConnectOptions {
  readonly signal?: AbortSignal
  /** Further attempts after the first (default 4). */
  readonly retries?: number
  /** Back-off before the first retry, doubling up to maxDelayMs, with jitter (defaults 500 ms, 8 s). */
  readonly initialDelayMs?: number
  readonly maxDelayMs?: number
  /** Bound of one connection attempt, metadata included (default 30 s). */
  readonly attemptTimeoutMs?: number
  /** How long a read waits for a dropped connection to come back (default 10 s). */
  readonly readTimeoutMs?: number
  readonly log?: Logger
}

export interface AxonSpec {
  readonly ip: string
  readonly port: number
  /** Taken from the address when absent. */
  readonly ipType?: 4 | 6
  readonly protocol?: number
  readonly version?: number
}

/** What `chain status` shows of one hotkey on one subnet. */
export interface NeuronStatus {
  readonly netuid: number
  readonly hotkey: string
  readonly block: number
  readonly registered: boolean
  /** Null when not registered. */
  readonly neuron: Neuron | null
}

/** Connects with retries and jittered exponential back-off; ChainUnreachableError when they run out. */
export async function connectChain (endpoint: string, opts: ConnectOptions = {}): Promise<ChainClient> {
  if (!/^wss?:\/\//.test(endpoint)) throw new ConfigError(`chain endpoint must be a ws:// or wss:// URL, got ${JSON.stringify(endpoint)}`)
  const log = (opts.log ?? silentLogger).forComponent('layerswarm:chain')
  routePolkadotConsole(log)
  const retries = opts.retries ?? 4
  let lastErr: unknown
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0) {
      const delay = backoffDelay(attempt, opts.initialDelayMs ?? 500, opts.maxDelayMs ?? 8000, Math.random)
      log.warn('chain endpoint unreachable; retrying', { endpoint, attempt, retryInMs: delay, error: String((lastErr as Error)?.message ?? lastErr) })
      if (!await pause(delay, opts.signal)) throw new AbortError('connecting to the chain was aborted')
    }
    if (opts.signal?.aborted === true) throw new AbortError('connecting to the chain was aborted')
    const provider = new WsProvider(endpoint, 2500)
    const api = new ApiPromise({ provider, noInitWarn: true })
    try {
      await withDeadline(opts.attemptTimeoutMs ?? 30_000, [opts.signal], async signal => {
        await new Promise<void>((resolve, reject) => {
          const onAbort = (): void => { reject(signal.reason) }
          signal.addEventListener('abort', onAbort, { once: true })
          api.isReadyOrError.then(() => { resolve() }, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
        })
      })
      log.debug('connected', { endpoint, spec: api.runtimeVersion.specVersion.toNumber() })
      for (const d of checkRuntimeSurface(api.runtimeMetadata, api.registry)) {
        (d.breaking ? log.warn : log.debug)('the runtime differs from what the chain client uses', { endpoint, kind: d.kind, what: d.what, detail: d.detail })
      }
      return new ChainClient(api, endpoint, log, opts.readTimeoutMs ?? 10_000)
    } catch (err) {
      lastErr = err
      await api.disconnect().catch(() => {})
      if (opts.signal != null && opts.signal.aborted) throw new AbortError('connecting to the chain was aborted')
    }
  }
  throw new ChainUnreachableError(endpoint, lastErr)
}

export class ChainClient implements ChainReader {
  readonly api: ApiPromise
  readonly endpoint: string
  private readonly log: Logger
  private readonly readTimeoutMs: number
  private readonly nonces: NonceTracker

  constructor (api: ApiPromise, endpoint: string, log: Logger, readTimeoutMs: number) {
    this.api = api
    this.endpoint = endpoint
    this.log = log
    this.readTimeoutMs = readTimeoutMs
    this.nonces = new NonceTracker(async address => (await api.rpc.system.accountNextIndex(address)).toNumber())
  }

  get connected (): boolean { return this.api.isConnected }

  async close (): Promise<void> {
    await this.api.disconnect().catch(() => {})
  }

  /** Calls `cb` with each new best block number (across reconnects); returns the unsubscribe. */
  onHead (cb: (block: number) => void): () => void {
    let unsub: (() => void) | undefined
    let closed = false
    this.api.rpc.chain.subscribeNewHeads(h => { cb(h.number.toNumber()) })
      .then(u => { if (closed) u(); else unsub = u }, err => { this.log.debug('head subscription failed', { error: String(err) }) })
    return () => { closed = true; unsub?.() }
  }

  /** Runs a read, waiting out a dropped connection up to readTimeoutMs; ChainUnreachableError after. */
  async read<T> (what: string, fn: () => Promise<T>, options: ChainCallOptions = {}): Promise<T> {
    let lastErr: unknown
    try {
      return await withDeadline(this.readTimeoutMs, [options.signal], async signal => {
        for (let failures = 0; ; failures++) {
          if (this.api.isConnected) {
            try {
              return await untilAborted(fn(), signal)
            } catch (err) {
              if (signal.aborted) throw signal.reason
              if (this.api.isConnected && !isConnectionError(err)) throw err
              lastErr = err
            }
          }
          if (!await pause(backoffDelay(failures + 1, 100, 1000, Math.random), signal)) throw signal.reason
        }
      })
    } catch (err) {
      if (options.signal?.aborted === true) throw new AbortError(`${what} aborted`)
      if (err instanceof DOMException && err.name === 'TimeoutError') throw new ChainUnreachableError(this.endpoint, lastErr ?? 'not connected')
      throw err
    }
  }

  async head (options?: ChainCallOptions): Promise<number> {
    return await this.read('head', async () => (await this.api.rpc.chain.getHeader()).number.toNumber(), options)
  }

  async subnetExists (netuid: number, options?: ChainCallOptions): Promise<boolean> {
    return await this.read('subnetExists', async () => await readSubnetExists(this.api, netuid), options)
  }

  async weightRules (netuid: number, options?: ChainCallOptions): Promise<SubnetWeightRules> {
    return await this.read('weightRules', async () => await readWeightRules(this.api, netuid), options)
  }

  async metagraph (netuid: number, options?: ChainCallOptions): Promise<Metagraph> {
    return await this.read('metagraph', async () => await readMetagraph(this.api, netuid), options)
  }

  /** Free balance (rao). */
  async balance (address: string, options?: ChainCallOptions): Promise<bigint> {
    return await this.read('balance', async () => {
      const acc = await this.api.query.system.account(address)
      return BigInt((acc as unknown as { data: { free: { toString: () => string } } }).data.free.toString())
    }, options)
  }

  /** The hotkey's uid on the subnet, or null. */
  async uidOf (netuid: number, hotkey: string, options?: ChainCallOptions): Promise<number | null> {
    return await this.read('uidOf', async () => {
      const v = await this.api.query.subtensorModule.uids(netuid, hotkey)
      const j = v.toPrimitive()
      return j == null ? null : Number(j)
    }, options)
  }

  /** The weights row of `uid` ([uid, u16 weight] pairs) as stored. */
  async weightsOf (netuid: number, uid: number, options?: ChainCallOptions): Promise<Array<[number, number]>> {
    return await this.read('weightsOf', async () => await readWeights(this.api, netuid, uid), options)
  }

  async neuronStatus (netuid: number, hotkey: string, options?: ChainCallOptions): Promise<NeuronStatus> {
    if (!await this.subnetExists(netuid, options)) throw new SubnetNotFoundError(netuid)
    const mg = await this.metagraph(netuid, options)
    const neuron = mg.neurons.find(n => n.hotkey === hotkey) ?? null
    return { netuid, hotkey, block: mg.block, registered: neuron != null, neuron }
  }

  /** Signs and submits through the nonce tracker; resolves once in a block and succeeded. */
  async submit (tx: SubmittableExtrinsic<'promise'>, signer: KeyringPair, options: Omit<SubmitOptions, 'log'> = {}): Promise<Included> {
    if (!this.api.isConnected) {
      // wait out a reconnect within the read bound before giving up
      await this.read('submit', async () => undefined, options)
    }
    return await submitSigned(this.api, this.nonces, tx, signer, { ...options, log: this.log })
  }

  /**
   * Burned registration of `hotkey` on `netuid`, paid by `coldkey`. Checks first: the subnet exists,
   * the hotkey is not registered there, the coldkey holds the burn plus the fee. Resolves with the uid.
   */
  async burnedRegister (coldkey: KeyringPair, hotkey: string, netuid: number, options: ChainCallOptions = {}): Promise<number> {
    if (!await this.subnetExists(netuid, options)) throw new SubnetNotFoundError(netuid)
    if (await this.uidOf(netuid, hotkey, options) != null) throw new AlreadyRegisteredError(`hotkey ${hotkey} is already registered on subnet ${netuid}`)
    const tx = this.api.tx.subtensorModule.burnedRegister(netuid, hotkey)
    const [burn, free, fee] = await Promise.all([
      this.read('burn', async () => BigInt((await this.api.query.subtensorModule.burn(netuid)).toString()), options),
      this.balance(coldkey.address, options),
      this.read('fee', async () => BigInt((await tx.paymentInfo(coldkey)).partialFee.toString()), options)
    ])
    if (free < burn + fee) {
      throw new InsufficientBalanceError(`coldkey ${coldkey.address} holds ${free} rao; registering on subnet ${netuid} burns ${burn} rao plus a fee of about ${fee} rao`)
    }
    await this.submit(tx, coldkey, { ...options, netuid })
    const uid = await this.uidOf(netuid, hotkey, options)
    if (uid == null) throw new ChainExtrinsicError('burnedRegister succeeded but the hotkey has no uid (deregistered at once?)')
    return uid
  }

  /** Registers a new subnet owned by `coldkey` with `hotkey`; resolves with its netuid. */
  async registerNetwork (coldkey: KeyringPair, hotkey: string, options: ChainCallOptions = {}): Promise<number> {
    const call = this.api.tx.subtensorModule.registerNetwork
    // spec 218: register_network(hotkey, mechid); later runtimes: register_network(hotkey)
    const tx = call.meta.args.length >= 2 ? call(hotkey, 1) : call(hotkey)
    const { result } = await this.submit(tx, coldkey, options)
    const added = result.events.find(({ event }) => event.section === 'subtensorModule' && event.method === 'NetworkAdded')
    if (added == null) throw new ChainExtrinsicError('registerNetwork succeeded without a NetworkAdded event')
    return Number(added.event.data[0].toString())
  }

  /** Stakes `amountRao` from `coldkey` onto `hotkey` in subnet `netuid`. */
  async addStake (coldkey: KeyringPair, hotkey: string, netuid: number, amountRao: bigint, options: ChainCallOptions = {}): Promise<void> {
    const call = this.api.tx.subtensorModule.addStake
    // dynamic-TAO runtimes stake per subnet (hotkey, netuid, amount); older ones (hotkey, amount)
    const tx = call.meta.args.length >= 3 ? call(hotkey, netuid, amountRao) : call(hotkey, amountRao)
    await this.submit(tx, coldkey, { ...options, netuid })
  }

  /** Publishes the hotkey's axon on `netuid`. Loopback and unspecified addresses are refused before sending. */
  async serveAxon (hotkey: KeyringPair, netuid: number, axon: AxonSpec, options: ChainCallOptions = {}): Promise<void> {
    if (isUnservableIp(axon.ip)) throw new LoopbackAddressError(axon.ip)
    const { value, ipType } = ipToU128(axon.ip)
    if (!Number.isInteger(axon.port) || axon.port < 1 || axon.port > 65535) throw new ConfigError(`axon port out of range: ${axon.port}`)
    const tx = this.api.tx.subtensorModule.serveAxon(netuid, axon.version ?? 0, value, axon.port, axon.ipType ?? ipType, axon.protocol ?? 0, 0, 0)
    await this.submit(tx, hotkey, { ...options, netuid, ip: axon.ip })
  }

  /** The weight operations signed by `hotkey`. */
  writer (hotkey: KeyringPair): WeightsWriter {
    const tx = this.api.tx.subtensorModule
    return {
      hotkey: hotkey.address,
      setWeights: async (netuid, uids, weights, versionKey, options = {}) => {
        await this.submit(tx.setWeights(netuid, [...uids], [...weights], versionKey), hotkey, { ...options, netuid })
      },
      commitWeights: async (netuid, hash, options = {}) => {
        if (hash.length !== 32) throw new ConfigError(`a weights commit hash is 32 bytes, got ${hash.length}`)
        await this.submit(tx.commitWeights(netuid, hash), hotkey, { ...options, netuid })
      },
      revealWeights: async (netuid, uids, weights, salt, versionKey, options = {}) => {
        await this.submit(tx.revealWeights(netuid, [...uids], [...weights], [...salt], versionKey), hotkey, { ...options, netuid })
      }
    }
  }
}

/** `p`, or the signal's reason once it aborts (the request itself is left to polkadot's own timeout). */
async function untilAborted<T> (p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw signal.reason
  let onAbort!: () => void
  const aborted = new Promise<never>((_resolve, reject) => { onAbort = () => { reject(signal.reason) } })
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await Promise.race([p, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/** Errors of a request that never got an answer because the socket was down. */
function isConnectionError (err: unknown): boolean {
  return /disconnected|not connected|WebSocket is not|Abnormal Closure|ECONNREFUSED|No response received/i.test(String((err as Error)?.message ?? err))
}
