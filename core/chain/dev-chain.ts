// A local subtensor chain for tests and `layerswarm chain dev`: chopsticks on a raw chain spec
// (default: ../shared/chain/raonet.json beside the repository, or $LAYERSWARM_CHAIN_SPEC), in
// instant block mode (a block per extrinsic) with no database, in a child process (dev-chain-child.ts)
// because chopsticks in-process may keep the event loop alive after close(). Its dev_* RPCs fund
// accounts, set storage and advance blocks.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import './polkadot-console.ts'
import { ApiPromise, WsProvider } from '@polkadot/api'
import type { KeyringPair } from '@polkadot/keyring/types'
import { u8aToHex } from '@polkadot/util'
import { AbortError, ConfigError } from '../errors.ts'
import type { ChainClient } from './chain-client.ts'
import { DevChainError } from './errors.ts'

export const CHAIN_SPEC_ENV = 'LAYERSWARM_CHAIN_SPEC'
export const CHOPSTICKS_PACKAGE = '@acala-network/chopsticks@1.5.1'
const TAO = 1_000_000_000n
/** The dev subnet's pool depth on each side (rao). */
const DEV_POOL = 1_000_000n * TAO

interface StorageEntryLike {
  key: (...args: unknown[]) => string
  creator: { meta: { type: { isPlain: boolean, asPlain: { toNumber: () => number }, asMap: { value: { toNumber: () => number } } } } }
}

export interface DevChainOptions {
  /** Raw chain spec (default: $LAYERSWARM_CHAIN_SPEC, else ../shared/chain/raonet.json beside the repository). */
  readonly genesis?: string
  readonly host?: string
  /** 0 (default): any free port; the bound one is in `endpoint`. */
  readonly port?: number
  readonly signal?: AbortSignal
  /** Bound of the start (default 60 s). */
  readonly startTimeoutMs?: number
}

/** The repository root: the folder above core/ (also from dist/core/chain). */
function repoRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir
    dir = dirname(dir)
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '../..')
}

/** Where the default chain spec lives: $LAYERSWARM_CHAIN_SPEC, else ../shared/chain/raonet.json beside the repository. */
export function defaultChainSpec (): string {
  return process.env[CHAIN_SPEC_ENV] ?? resolve(repoRoot(), '../shared/chain/raonet.json')
}

function chopsticksInstalled (): boolean {
  try {
    import.meta.resolve('@acala-network/chopsticks')
    return true
  } catch {
    return false
  }
}

export class DevChain {
  readonly endpoint: string
  readonly genesis: string
  private readonly child: ChildProcess
  private readonly exited: Promise<void>
  private apiPromise?: Promise<ApiPromise>
  private provider?: WsProvider

  constructor (endpoint: string, genesis: string, child: ChildProcess, exited: Promise<void>) {
    this.endpoint = endpoint
    this.genesis = genesis
    this.child = child
    this.exited = exited
  }

  /** One connection of its own for the dev_* RPCs and the account reads fund() needs. */
  private async api (): Promise<ApiPromise> {
    if (this.apiPromise == null) {
      this.provider = new WsProvider(this.endpoint, 1000)
      this.apiPromise = ApiPromise.create({ provider: this.provider, noInitWarn: true, throwOnConnect: true })
    }
    return await this.apiPromise
  }

  /** Calls a dev_* (or any) RPC method. */
  async rpc (method: string, params: unknown[]): Promise<unknown> {
    await this.api()
    return await this.provider!.send(method, params)
  }

  /** dev_setStorage: `{ Pallet: { Item: value | [[[keys...], value], ...] } }` as chopsticks takes it. */
  async setStorage (changes: Record<string, Record<string, unknown>>): Promise<void> {
    await this.rpc('dev_setStorage', [changes])
  }

  /**
   * Sets one storage item by its @polkadot name (`subtensorModule`, `tempo`, [netuid], 10), raw: key
   * and SCALE value in hex. Chopsticks' object form treats a falsy value (0, false) as a deletion,
   * which brings back the item's default instead of setting it.
   */
  async setItem (section: string, item: string, keys: unknown[], value: unknown): Promise<void> {
    const api = await this.api()
    const entry = (api.query as unknown as Record<string, Record<string, StorageEntryLike> | undefined>)[section]?.[item]
    if (entry == null) throw new DevChainError(`no storage item ${section}.${item} on this runtime`)
    const t = entry.creator.meta.type
    const valueType = api.registry.createLookupType((t.isPlain ? t.asPlain : t.asMap.value).toNumber())
    await this.rpc('dev_setStorage', [[[entry.key(...keys), u8aToHex(api.createType(valueType, value).toU8a())]]])
  }

  /** Sets the account's free balance to `rao`, keeping its nonce and reference counts. */
  async fund (address: string, rao: bigint): Promise<void> {
    const api = await this.api()
    const acc = (await api.query.system.account(address)).toJSON() as { nonce: number, consumers: number, providers: number, sufficients: number, data: Record<string, unknown> }
    await this.setStorage({
      System: { Account: [[[address], { ...acc, providers: Math.max(1, acc.providers), data: { ...acc.data, free: rao.toString() } }]] }
    })
  }

  /** Makes `address` the sudo key (for AdminUtils calls). */
  async setSudo (address: string): Promise<void> {
    await this.setStorage({ Sudo: { Key: address } })
  }

  /** Builds `n` blocks (dev_newBlock); epochs run as their blocks pass. */
  async newBlocks (n: number): Promise<void> {
    if (n < 1) return
    await this.rpc('dev_newBlock', [{ count: n }])
  }

  /** Kills the child and waits for it. Idempotent. */
  async stop (): Promise<void> {
    const api = this.apiPromise
    this.apiPromise = undefined
    if (api != null) await api.then(async a => { await a.disconnect() }, () => {}).catch(() => {})
    if (this.child.exitCode == null && this.child.signalCode == null) {
      this.child.kill('SIGTERM')
      const timer = setTimeout(() => { this.child.kill('SIGKILL') }, 5000)
      await this.exited
      clearTimeout(timer)
    }
  }
}

/** Starts chopsticks on `genesis` in a child process and resolves once it listens. */
export async function startDevChain (opts: DevChainOptions = {}): Promise<DevChain> {
  const genesis = resolve(opts.genesis ?? defaultChainSpec())
  if (!existsSync(genesis)) {
    throw new ConfigError(`chain spec ${genesis} not found: pass --genesis FILE or set $${CHAIN_SPEC_ENV} (a raw spec such as subtensor's raonet.json)`)
  }
  if (!chopsticksInstalled()) throw new ConfigError(`the local chain needs chopsticks: install ${CHOPSTICKS_PACKAGE} (npm i -D ${CHOPSTICKS_PACKAGE})`)
  if (opts.signal?.aborted === true) throw new AbortError('starting the dev chain was aborted')
  const host = opts.host ?? '127.0.0.1'
  const childFile = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './dev-chain-child.ts' : './dev-chain-child.js', import.meta.url))
  const nodeArgs = childFile.endsWith('.ts') ? ['--import', 'tsx'] : []
  const child = spawn(process.execPath, [...nodeArgs, childFile, genesis, host, String(opts.port ?? 0)], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    cwd: repoRoot()
  })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  let chain: DevChain | undefined
  try {
    const addr = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new DevChainError(`chopsticks did not start within ${opts.startTimeoutMs ?? 60_000} ms; stderr: ${stderr}`)) }, opts.startTimeoutMs ?? 60_000)
      const onAbort = (): void => { reject(new AbortError('starting the dev chain was aborted')) }
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      const done = (): void => { clearTimeout(timer); opts.signal?.removeEventListener('abort', onAbort) }
      child.on('message', (m: { ready?: string, error?: string, missing?: boolean }) => {
        done()
        if (m.ready != null) resolve(m.ready)
        else if (m.missing === true) reject(new ConfigError(`the local chain needs chopsticks: install ${CHOPSTICKS_PACKAGE}`))
        else reject(new DevChainError(`chopsticks failed to start: ${m.error ?? 'unknown error'}`))
      })
      child.once('exit', (code, signal) => { done(); reject(new DevChainError(`chopsticks exited (${code ?? signal}) before listening; stderr: ${stderr}`)) })
    })
    const port = Number(addr.slice(addr.lastIndexOf(':') + 1))
    const h = host.includes(':') ? `[${host}]` : host
    chain = new DevChain(`ws://${h}:${port}`, genesis, child, exited)
    // chopsticks reports ready before it has built block 1, and a transaction signed at the genesis
    // block fails with "bad proof" here (its mortal era names a block hash the runtime does not hold):
    // hand out a chain at block 1 or later
    await chain.newBlocks(1)
    return chain
  } catch (err) {
    if (chain != null) await chain.stop().catch(() => {})
    child.kill('SIGKILL')
    await exited
    throw err
  }
}

export interface DevSubnetOptions {
  /** Blocks per epoch (default 10: validator permits and incentives appear within ~25 blocks). */
  readonly tempo?: number
  /** Blocks between weight updates of one hotkey (default 0). */
  readonly weightsRateLimit?: number
  /** Commit-reveal of weights (default off). */
  readonly commitReveal?: boolean
  /** The subnet's weights version key (default: the runtime's, 0). */
  readonly versionKey?: bigint
  /** Free balance the owner's coldkey is topped up to when it holds less (default 10,000 TAO). */
  readonly ownerFunds?: bigint
}

/**
 * Funds `owner`, registers a subnet with `ownerHotkey` and lowers its hyperparameters for quick
 * tests, straight through dev_setStorage (no sudo key, no rate limits on the admin calls):
 * - global NetworkRateLimit 0 (several subnets back to back) and TxRateLimit 0;
 * - Tempo `tempo` (10), WeightsSetRateLimit `weightsRateLimit` (0), ServingRateLimit 0,
 *   CommitRevealWeightsEnabled `commitReveal` (false), WeightsVersionKey `versionKey` if given,
 *   TargetRegistrationsPerInterval and MaxRegistrationsPerBlock 64 (many registrations per block);
 * - SubnetTAO = SubnetAlphaIn = 1,000,000 TAO: a deep pool at price 1, so add_stake buys about its
 *   amount in alpha (a fresh dynamic subnet's pool holds 1 rao of each and a stake would buy none).
 * Resolves with the netuid.
 */
export async function createDevSubnet (chain: DevChain, client: ChainClient, owner: KeyringPair, ownerHotkey: string, opts: DevSubnetOptions = {}): Promise<number> {
  const funds = opts.ownerFunds ?? 10_000n * TAO
  if (await client.balance(owner.address) < funds) await chain.fund(owner.address, funds)
  await chain.setItem('subtensorModule', 'networkRateLimit', [], 0)
  await chain.setItem('subtensorModule', 'txRateLimit', [], 0)
  const netuid = await client.registerNetwork(owner, ownerHotkey)
  await setDevSubnetParams(chain, netuid, {
    tempo: opts.tempo ?? 10,
    weightsSetRateLimit: opts.weightsRateLimit ?? 0,
    servingRateLimit: 0,
    commitRevealWeightsEnabled: opts.commitReveal ?? false,
    targetRegistrationsPerInterval: 64,
    maxRegistrationsPerBlock: 64,
    ...(opts.versionKey != null ? { weightsVersionKey: opts.versionKey } : {})
  })
  // a new dynamic subnet's pool holds 1 rao of TAO and 1 rao of alpha: a stake would buy ~0 alpha
  // until emissions fill it. A deep pool at price 1 makes add_stake buy about its amount in alpha.
  const items = client.api.query.subtensorModule as unknown as Record<string, unknown>
  if (items.subnetTAO != null && items.subnetAlphaIn != null) {
    await chain.setItem('subtensorModule', 'subnetTAO', [netuid], DEV_POOL)
    await chain.setItem('subtensorModule', 'subnetAlphaIn', [netuid], DEV_POOL)
  }
  return netuid
}

/** Sets SubtensorModule maps keyed by netuid alone (tempo, weightsSetRateLimit, ...: @polkadot's names) for one subnet. */
export async function setDevSubnetParams (chain: DevChain, netuid: number, params: Record<string, unknown>): Promise<void> {
  for (const [item, value] of Object.entries(params)) await chain.setItem('subtensorModule', item, [netuid], value)
}
