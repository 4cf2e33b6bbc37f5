// `layerswarm chain dev|register|serve|status|stake|subnet create`: a local chain to try things on,
// and the signed operations a node's operator performs on a subtensor chain with the wallet in the
// data dir (core/chain/wallet.ts). The endpoint is --chain, else $LAYERSWARM_CHAIN; `--chain testnet`
// names the Bittensor testnet. Registering, staking and creating a subnet unlock the coldkey (its
// passphrase as the wallet commands take it); serving signs with the hotkey alone.
import type { Command } from 'commander'
import { resolve } from 'node:path'
import type { KeyringPair } from '@polkadot/keyring/types'
import { connectChain, TESTNET_ENDPOINT, type ChainClient } from '../../core/chain/chain-client.ts'
import { parseHostPort } from '../../core/chain/axon-address.ts'
import { WalletNotFoundError } from '../../core/chain/errors.ts'
import { loadColdkey, loadHotkey, showWallet } from '../../core/chain/wallet.ts'
import { ConfigError } from '../../core/errors.ts'
import { defaultDataDir } from '../../core/node/data-dir.ts'
import { ENV } from '../config.ts'
import { intFlag, makeLogger } from '../flags.ts'
import { readPassphrase, WALLET_PASSPHRASE_ENV } from './wallet.ts'

const TAO = 1_000_000_000n
/** Names `--chain` accepts for well-known endpoints. */
export const CHAIN_ALIASES: Readonly<Record<string, string>> = { testnet: TESTNET_ENDPOINT }

interface CommonFlags {
  chain?: string
  netuid?: string
  wallet?: string
  hotkey?: string
  dataDir?: string
  passphraseFile?: string
  json?: boolean
  logLevel?: string
  retries?: string
}

/** --chain's endpoint: an alias, a ws(s):// URL, else $LAYERSWARM_CHAIN; a ConfigError naming the flag when none. */
export function resolveChainEndpoint (value: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const v = value ?? env[ENV.chain]
  if (v == null || v === '') throw new ConfigError(`pass --chain ENDPOINT (a ws:// or wss:// subtensor node, or "testnet" for ${TESTNET_ENDPOINT}), or set $${ENV.chain}`)
  const endpoint = CHAIN_ALIASES[v] ?? v
  if (!/^wss?:\/\/[^\s/]+/.test(endpoint)) throw new ConfigError(`chain endpoint ${JSON.stringify(v)} is not a ws:// or wss:// URL (or one of: ${Object.keys(CHAIN_ALIASES).join(', ')})`)
  return endpoint
}

/** "1.5" TAO -> 1_500_000_000 rao (at most 9 decimals). */
export function parseTao (flag: string, v: string | undefined): bigint {
  const m = /^(\d+)(?:\.(\d{1,9}))?$/.exec(v?.trim() ?? '')
  if (m == null) throw new ConfigError(`${flag} must be an amount of TAO such as 10 or 0.5 (at most 9 decimals), got ${JSON.stringify(v)}`)
  return BigInt(m[1]) * TAO + BigInt((m[2] ?? '').padEnd(9, '0'))
}

/** rao as a TAO decimal text. */
export function formatTao (rao: bigint): string {
  const sign = rao < 0n ? '-' : ''
  const a = rao < 0n ? -rao : rao
  const frac = (a % TAO).toString().padStart(9, '0').replace(/0+$/, '')
  return `${sign}${a / TAO}${frac !== '' ? '.' + frac : ''}`
}

function dataDirOf (flags: CommonFlags): string {
  return resolve(flags.dataDir ?? process.env[ENV.dataDir] ?? defaultDataDir())
}
function walletOf (flags: CommonFlags): string { return flags.wallet ?? process.env[ENV.wallet] ?? 'default' }
function hotkeyOf (flags: CommonFlags): string { return flags.hotkey ?? process.env[ENV.hotkey] ?? 'default' }
function netuidOf (flags: CommonFlags): number {
  if (flags.netuid == null) throw new ConfigError('pass --netuid N (the subnet)')
  const n = intFlag('--netuid', flags.netuid, 0)
  if (n > 65535) throw new ConfigError(`--netuid must be in 0..65535, got ${n}`)
  return n
}

async function coldkeyOf (flags: CommonFlags): Promise<KeyringPair> {
  return await loadColdkey(dataDirOf(flags), walletOf(flags), await readPassphrase(flags, false))
}

/** Connects, runs `fn`, closes. */
async function withClient<T> (flags: CommonFlags, endpoint: string, fn: (client: ChainClient) => Promise<T>): Promise<T> {
  const log = makeLogger(flags.logLevel ?? 'warn')
  const retries = flags.retries != null ? intFlag('--retries', flags.retries, 0) : 4
  const client = await connectChain(endpoint, { log, retries })
  try {
    return await fn(client)
  } finally {
    await client.close()
  }
}

function print (flags: CommonFlags, json: Record<string, unknown>, lines: string[]): void {
  process.stdout.write(flags.json === true
    ? JSON.stringify(json, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v) + '\n'
    : lines.join('\n') + '\n')
}

async function registerHotkey (flags: CommonFlags): Promise<void> {
  const endpoint = resolveChainEndpoint(flags.chain)
  const netuid = netuidOf(flags)
  const hotkey = await loadHotkey(dataDirOf(flags), walletOf(flags), hotkeyOf(flags))
  const coldkey = await coldkeyOf(flags)
  await withClient(flags, endpoint, async client => {
    const uid = await client.burnedRegister(coldkey, hotkey.address, netuid)
    print(flags, { netuid, uid, hotkey: hotkey.address, coldkey: coldkey.address },
      [`registered hotkey ${hotkey.address} on subnet ${netuid} as uid ${uid}`])
  })
}

async function serve (flags: CommonFlags & { address?: string, ip?: string, port?: string }): Promise<void> {
  const endpoint = resolveChainEndpoint(flags.chain)
  const netuid = netuidOf(flags)
  let ip: string
  let port: number
  if (flags.address != null) {
    if (flags.ip != null || flags.port != null) throw new ConfigError('pass either --address IP:PORT or --ip and --port, not both')
    ;({ ip, port } = parseHostPort(flags.address))
  } else {
    if (flags.ip == null || flags.port == null) throw new ConfigError('pass --address IP:PORT (or --ip IP --port PORT): the address other nodes dial')
    ip = flags.ip
    port = intFlag('--port', flags.port, 1)
    if (port > 65535) throw new ConfigError(`--port must be in 1..65535, got ${port}`)
  }
  const hotkey = await loadHotkey(dataDirOf(flags), walletOf(flags), hotkeyOf(flags))
  await withClient(flags, endpoint, async client => {
    await client.serveAxon(hotkey, netuid, { ip, port })
    print(flags, { netuid, hotkey: hotkey.address, ip, port }, [`served ${ip}:${port} for hotkey ${hotkey.address} on subnet ${netuid}`])
  })
}

async function status (flags: CommonFlags): Promise<void> {
  const endpoint = resolveChainEndpoint(flags.chain)
  const netuid = netuidOf(flags)
  const dataDir = dataDirOf(flags)
  const info = await showWallet(dataDir, walletOf(flags))
  const hot = info.hotkeys.find(h => h.name === hotkeyOf(flags))
  if (hot == null) throw new WalletNotFoundError(`hotkey ${hotkeyOf(flags)} of wallet ${walletOf(flags)}`, dataDir)
  await withClient(flags, endpoint, async client => {
    const st = await client.neuronStatus(netuid, hot.address)
    const balance = info.coldkey != null ? await client.balance(info.coldkey) : null
    const n = st.neuron
    const json = {
      netuid, block: st.block, hotkey: hot.address, coldkey: info.coldkey, registered: st.registered,
      uid: n?.uid ?? null, stake: n?.stake ?? null, trust: n?.trust ?? null, incentive: n?.incentive ?? null,
      dividends: n?.dividends ?? null, emission: n?.emission ?? null, validatorPermit: n?.validatorPermit ?? null,
      lastUpdate: n?.lastUpdate ?? null, axon: n?.axon ?? null, balance
    }
    const lines = [
      `subnet     ${netuid} (block ${st.block})`,
      `hotkey     ${hot.address}`,
      `coldkey    ${info.coldkey ?? '(none in this wallet)'}${balance != null ? `  balance ${formatTao(balance)} TAO` : ''}`,
      ...(n == null
        ? ['registered no']
        : [
            `uid        ${n.uid}`,
            `stake      ${formatTao(n.stake)} (alpha)`,
            `trust      ${n.trust.toFixed(4)}  incentive ${n.incentive.toFixed(4)}  dividends ${n.dividends.toFixed(4)}`,
            `emission   ${formatTao(n.emission)} per tempo`,
            `validator  ${n.validatorPermit ? 'permit' : 'no permit'}  last weights at block ${n.lastUpdate}`,
            `axon       ${n.axon != null ? `${n.axon.ipType === 6 ? `[${n.axon.ip}]` : n.axon.ip}:${n.axon.port} (block ${n.axon.block})` : '(not served)'}`
          ])
    ]
    print(flags, json, lines)
  })
}

async function stake (flags: CommonFlags & { amount?: string }): Promise<void> {
  const endpoint = resolveChainEndpoint(flags.chain)
  const netuid = netuidOf(flags)
  const amount = parseTao('--amount', flags.amount)
  if (amount === 0n) throw new ConfigError('--amount must be more than 0')
  const hotkey = await loadHotkey(dataDirOf(flags), walletOf(flags), hotkeyOf(flags))
  const coldkey = await coldkeyOf(flags)
  await withClient(flags, endpoint, async client => {
    await client.addStake(coldkey, hotkey.address, netuid, amount)
    print(flags, { netuid, hotkey: hotkey.address, coldkey: coldkey.address, amount },
      [`staked ${formatTao(amount)} TAO from ${coldkey.address} onto ${hotkey.address} in subnet ${netuid}`])
  })
}

async function subnetCreate (flags: CommonFlags): Promise<void> {
  const endpoint = resolveChainEndpoint(flags.chain)
  const hotkey = await loadHotkey(dataDirOf(flags), walletOf(flags), hotkeyOf(flags))
  const coldkey = await coldkeyOf(flags)
  await withClient(flags, endpoint, async client => {
    const netuid = await client.registerNetwork(coldkey, hotkey.address)
    print(flags, { netuid, owner: coldkey.address, hotkey: hotkey.address }, [`created subnet ${netuid} owned by ${coldkey.address} (hotkey ${hotkey.address})`])
  })
}

async function dev (flags: { genesis?: string, host: string, port: string, fund?: string, fundAmount: string, blockTime?: string, json?: boolean }): Promise<void> {
  const { startDevChain } = await import('../../core/chain/dev-chain.ts')
  const port = intFlag('--port', flags.port, 0)
  const addresses = (flags.fund ?? '').split(',').map(s => s.trim()).filter(s => s !== '')
  const amount = parseTao('--fund-amount', flags.fundAmount)
  const stop = new AbortController()
  const onSignal = (): void => { stop.abort() }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const blockSeconds = intFlag('--block-time', flags.blockTime, 0)
  const chain = await startDevChain({ genesis: flags.genesis, host: flags.host, port, signal: stop.signal })
  let ticker: NodeJS.Timeout | undefined
  try {
    // a dev chain lets anyone create subnets and submit back to back (both rate limits are 0)
    await chain.setItem('subtensorModule', 'networkRateLimit', [], 0)
    await chain.setItem('subtensorModule', 'txRateLimit', [], 0)
    for (const a of addresses) await chain.fund(a, amount)
    // instant mode makes a block per transaction only; a node's metagraph refresh and the weights'
    // rate limit count blocks, so a chain to run a swarm on also makes them on a clock
    if (blockSeconds > 0) {
      ticker = setInterval(() => { chain.newBlocks(1).catch(() => {}) }, blockSeconds * 1000)
    }
    const out = { endpoint: chain.endpoint, genesis: chain.genesis, funded: addresses, amount, blockTime: blockSeconds }
    print(flags, out, [
      `chain endpoint=${chain.endpoint} genesis=${chain.genesis}`,
      ...addresses.map(a => `funded ${a} with ${formatTao(amount)} TAO`),
      blockSeconds > 0 ? `a block every ${blockSeconds} s, and one per transaction` : 'a block per transaction',
      'press Ctrl-C to stop'
    ])
    await new Promise<void>(resolve => {
      if (stop.signal.aborted) resolve()
      else stop.signal.addEventListener('abort', () => { resolve() }, { once: true })
    })
  } finally {
    clearInterval(ticker)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await chain.stop()
  }
}

export function register (program: Command): void {
  const chain = program.command('chain')
    .description('a subtensor (Bittensor) chain: a local dev chain, registration, serving, stake and status (docs/chain.md)')
  const chainHelp = `subtensor endpoint, ws:// or wss:// (default: $${ENV.chain}); "testnet" names ${TESTNET_ENDPOINT}`
  const passHelp = `file holding the coldkey's passphrase (else $${WALLET_PASSPHRASE_ENV}, else a prompt on a terminal)`
  const common = (c: Command, opts: { coldkey: boolean }): Command => {
    c.option('--chain <endpoint>', chainHelp)
      .option('--wallet <name>', `wallet in the data dir (default: $${ENV.wallet} or "default")`)
      .option('--hotkey <name>', `hotkey of that wallet (default: $${ENV.hotkey} or "default")`)
      .option('--data-dir <dir>', `data dir (default: $${ENV.dataDir} or ~/.layerswarm)`)
      .option('--retries <n>', 'further connection attempts when the endpoint does not answer (default 4, with back-off)')
      .option('--log-level <level>', 'trace, debug, info, warn, error or silent (default warn)')
      .option('--json', 'print one JSON object')
    if (opts.coldkey) c.option('--passphrase-file <file>', passHelp)
    return c
  }

  chain.command('dev')
    .description('run a local subtensor chain (chopsticks on a raw chain spec, a block per extrinsic) until Ctrl-C')
    .option('--genesis <file>', 'raw chain spec (default: $LAYERSWARM_CHAIN_SPEC, else ../shared/chain/raonet.json beside the repository)')
    .option('--host <ip>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free one)', '9944')
    .option('--fund <addresses>', 'comma-separated ss58 addresses to give a balance')
    .option('--fund-amount <tao>', 'the balance --fund gives each, in TAO', '100000')
    .option('--block-time <s>', 'also make a block every s seconds (0: only one per transaction)', '6')
    .option('--json', 'print one JSON object: {"endpoint", "genesis", "funded", "amount", "blockTime"}')
    .action(dev)

  common(chain.command('register'), { coldkey: true })
    .description('burned registration of the wallet\'s hotkey on a subnet, paid by its coldkey; prints the uid')
    .option('--netuid <n>', 'the subnet')
    .action(registerHotkey)

  common(chain.command('serve'), { coldkey: false })
    .description('publish the address other nodes dial for this hotkey (serve_axon; loopback addresses are refused)')
    .option('--netuid <n>', 'the subnet')
    .option('--address <ip:port>', 'IP:PORT or [IPv6]:PORT')
    .option('--ip <ip>', 'the IP (with --port)')
    .option('--port <n>', 'the port (with --ip)')
    .action(serve)

  common(chain.command('status'), { coldkey: false })
    .description('the hotkey on a subnet: uid, stake, trust/incentive/dividends/emission, validator permit, axon; the coldkey\'s balance')
    .option('--netuid <n>', 'the subnet')
    .action(status)

  common(chain.command('stake'), { coldkey: true })
    .description('stake TAO from the coldkey onto the hotkey in a subnet')
    .option('--netuid <n>', 'the subnet')
    .option('--amount <tao>', 'amount in TAO')
    .action(stake)

  const subnet = chain.command('subnet').description('subnets')
  common(subnet.command('create'), { coldkey: true })
    .description('register a new subnet owned by the coldkey, with the hotkey; prints its netuid')
    .action(subnetCreate)
}
