// A subnet's metagraph and weight rules, read from storage (spec 218 has no get_metagraph runtime
// API; newer runtimes keep the same storage items). Everything of one metagraph is read at one block
// hash, so uids, keys and vectors agree. Items a runtime lacks read as zero/empty; which items the
// client relies on is checked against the current runtime's metadata in test/chain-metadata.test.ts.
import type { ApiPromise } from '@polkadot/api'
import type { ApiDecoration } from '@polkadot/api/types'
import type { Codec } from '@polkadot/types/types'
import { u128ToIp } from './axon-address.ts'
import type { AxonInfo, Metagraph, Neuron, SubnetWeightRules } from './types.ts'

type At = ApiDecoration<'promise'>
type Query = ((...args: unknown[]) => Promise<Codec>) & {
  multi: (keys: unknown[]) => Promise<Codec[]>
  entries: (...args: unknown[]) => Promise<Array<[{ args: Codec[] }, Codec]>>
}

const U16_MAX = 65535

/** A storage item of SubtensorModule, or undefined where this runtime has none. */
function item (at: At, name: string): Query | undefined {
  return (at.query.subtensorModule as unknown as Record<string, Query | undefined>)?.[name]
}

function num (c: Codec | undefined): number {
  if (c == null) return 0
  const j = c.toJSON()
  return typeof j === 'number' ? j : Number(j ?? 0)
}

function big (c: Codec | undefined): bigint {
  if (c == null) return 0n
  const p = c.toPrimitive()
  if (p == null) return 0n
  return BigInt(typeof p === 'number' || typeof p === 'string' || typeof p === 'bigint' ? p : String(p))
}

function vec<T> (c: Codec | undefined, map: (x: unknown) => T): T[] {
  const j = c?.toPrimitive()
  return Array.isArray(j) ? j.map(map) : []
}

function toBool (x: unknown): boolean { return x === true }
function toNum (x: unknown): number { return Number(x ?? 0) }

async function read (at: At, name: string, ...args: unknown[]): Promise<Codec | undefined> {
  const q = item(at, name)
  return q != null ? await q(...args) : undefined
}

/** The decoded AxonInfo of one hotkey, or null where it never served one (all-zero record). */
export function decodeAxon (c: Codec | undefined): AxonInfo | null {
  if (c == null || c.isEmpty) return null
  const raw = ((c as unknown as { unwrapOr?: (d: null) => Codec | null }).unwrapOr?.(null) ?? c)
  if (raw == null) return null
  const j = raw.toPrimitive() as Record<string, unknown> | null
  if (j == null) return null
  const ipType = Number(j.ipType ?? j.ip_type ?? 0)
  const port = Number(j.port ?? 0)
  const ip = BigInt(String(j.ip ?? 0))
  if ((ipType !== 4 && ipType !== 6) || (ip === 0n && port === 0)) return null
  return { ip: u128ToIp(ip, ipType), ipType, port, protocol: Number(j.protocol ?? 0), version: Number(j.version ?? 0), block: Number(j.block ?? 0) }
}

export async function readSubnetExists (api: ApiPromise, netuid: number): Promise<boolean> {
  const at = await api.at(await api.rpc.chain.getBlockHash())
  return (await read(at, 'networksAdded', netuid))?.toPrimitive() === true
}

/** The metagraph of `netuid` at the best block (or `blockHash`). */
export async function readMetagraph (api: ApiPromise, netuid: number, blockHash?: string): Promise<Metagraph> {
  const hash = blockHash ?? (await api.rpc.chain.getBlockHash()).toHex()
  const [at, header] = await Promise.all([api.at(hash), api.rpc.chain.getHeader(hash)])
  const block = header.number.toNumber()
  const n = num(await read(at, 'subnetworkN', netuid))
  if (n === 0) return { netuid, block, neurons: [] }
  const keyEntries = await item(at, 'keys')!.entries(netuid)
  const hotkeyByUid = new Map<number, string>()
  for (const [k, v] of keyEntries) hotkeyByUid.set(num(k.args[1]), v.toString())
  const uids = [...hotkeyByUid.keys()].filter(u => u < n).sort((a, b) => a - b)
  const hotkeys = uids.map(u => hotkeyByUid.get(u)!)

  const multi = async (name: string, keys: unknown[]): Promise<Array<Codec | undefined>> => {
    const q = item(at, name)
    return q != null && keys.length > 0 ? await q.multi(keys) : keys.map(() => undefined)
  }
  const stakeItem = item(at, 'totalHotkeyAlpha') != null ? 'totalHotkeyAlpha' : 'totalHotkeyStake'
  const stakeKeys = stakeItem === 'totalHotkeyAlpha' ? hotkeys.map(h => [h, netuid]) : hotkeys
  const [owners, stakes, axons, trust, incentive, dividends, emission, permit, lastUpdate] = await Promise.all([
    multi('owner', hotkeys),
    multi(stakeItem, stakeKeys),
    multi('axons', hotkeys.map(h => [netuid, h])),
    read(at, 'trust', netuid),
    read(at, 'incentive', netuid),
    read(at, 'dividends', netuid),
    read(at, 'emission', netuid),
    read(at, 'validatorPermit', netuid),
    read(at, 'lastUpdate', netuid)
  ])
  const t = vec(trust, toNum)
  const inc = vec(incentive, toNum)
  const div = vec(dividends, toNum)
  const em = vec(emission, x => BigInt(String(x ?? 0)))
  const vp = vec(permit, toBool)
  const lu = vec(lastUpdate, toNum)
  const neurons: Neuron[] = uids.map((uid, i) => ({
    uid,
    hotkey: hotkeys[i],
    coldkey: owners[i]?.toString() ?? '',
    stake: big(stakes[i]),
    trust: (t[uid] ?? 0) / U16_MAX,
    incentive: (inc[uid] ?? 0) / U16_MAX,
    dividends: (div[uid] ?? 0) / U16_MAX,
    emission: em[uid] ?? 0n,
    validatorPermit: vp[uid] ?? false,
    lastUpdate: lu[uid] ?? 0,
    axon: decodeAxon(axons[i])
  }))
  return { netuid, block, neurons }
}

/** The subnet's weight rules at the best block. */
export async function readWeightRules (api: ApiPromise, netuid: number): Promise<SubnetWeightRules> {
  const at = await api.at(await api.rpc.chain.getBlockHash())
  const minStakeItem = item(at, 'stakeThreshold') != null ? 'stakeThreshold' : 'weightsMinStake'
  const [tempo, versionKey, rateLimit, commitReveal, revealPeriod, minAllowed, maxLimit, minStake] = await Promise.all([
    read(at, 'tempo', netuid),
    read(at, 'weightsVersionKey', netuid),
    read(at, 'weightsSetRateLimit', netuid),
    read(at, 'commitRevealWeightsEnabled', netuid),
    read(at, 'revealPeriodEpochs', netuid),
    read(at, 'minAllowedWeights', netuid),
    read(at, 'maxWeightsLimit', netuid),
    read(at, minStakeItem)
  ])
  return {
    tempo: num(tempo),
    versionKey: big(versionKey),
    rateLimit: num(rateLimit),
    commitReveal: commitReveal?.toPrimitive() === true,
    revealPeriodEpochs: revealPeriod != null ? Math.max(1, num(revealPeriod)) : 1,
    minAllowedWeights: num(minAllowed),
    maxWeightLimit: maxLimit != null ? num(maxLimit) : U16_MAX,
    minStake: big(minStake)
  }
}

/** A neuron's weights row (the Weights storage): [uid, u16 weight] pairs. */
export async function readWeights (api: ApiPromise, netuid: number, uid: number): Promise<Array<[number, number]>> {
  const at = await api.at(await api.rpc.chain.getBlockHash())
  const row = await read(at, 'weights', netuid, uid)
  const j = row?.toPrimitive()
  return Array.isArray(j) ? j.map(p => { const [u, w] = p as [unknown, unknown]; return [Number(u), Number(w)] as [number, number] }) : []
}
