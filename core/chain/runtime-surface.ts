// What the chain client uses of a subtensor runtime: calls (with the argument counts it can build),
// storage items (with alternatives where runtimes renamed one) and the module errors it maps. The
// client checks a connected runtime against it and logs what is missing; test/chain-metadata checks
// it against the current runtime's metadata (../shared/chain/devnet-2026-06.scale).
import type { Metadata } from '@polkadot/types'
import type { Registry } from '@polkadot/types/types'

export interface SurfaceCall { readonly pallet: string, readonly name: string, readonly argCounts: readonly number[] }
/** Any one of `names` will do; `optional` items only refine what is read (zero where absent). */
export interface SurfaceStorage { readonly pallet: string, readonly names: readonly string[], readonly optional?: boolean }

export const SURFACE_CALLS: readonly SurfaceCall[] = [
  { pallet: 'SubtensorModule', name: 'burned_register', argCounts: [2] },
  // spec 218: (hotkey, mechid); later: (hotkey)
  { pallet: 'SubtensorModule', name: 'register_network', argCounts: [1, 2] },
  // dynamic TAO: (hotkey, netuid, amount); before: (hotkey, amount)
  { pallet: 'SubtensorModule', name: 'add_stake', argCounts: [2, 3] },
  { pallet: 'SubtensorModule', name: 'serve_axon', argCounts: [8] },
  { pallet: 'SubtensorModule', name: 'set_weights', argCounts: [4] },
  { pallet: 'SubtensorModule', name: 'commit_weights', argCounts: [2] },
  { pallet: 'SubtensorModule', name: 'reveal_weights', argCounts: [5] }
]

export const SURFACE_STORAGE: readonly SurfaceStorage[] = [
  { pallet: 'System', names: ['Account'] },
  ...['NetworksAdded', 'SubnetworkN', 'Keys', 'Uids', 'Owner', 'Axons', 'Weights', 'Burn', 'Tempo', 'WeightsVersionKey',
    'WeightsSetRateLimit', 'CommitRevealWeightsEnabled', 'MinAllowedWeights', 'MaxWeightsLimit', 'ValidatorPermit', 'LastUpdate']
    .map(n => ({ pallet: 'SubtensorModule', names: [n] })),
  { pallet: 'SubtensorModule', names: ['TotalHotkeyAlpha', 'TotalHotkeyStake'] },
  { pallet: 'SubtensorModule', names: ['StakeThreshold', 'WeightsMinStake'] },
  ...['Trust', 'Incentive', 'Dividends', 'Emission', 'RevealPeriodEpochs'].map(n => ({ pallet: 'SubtensorModule', names: [n], optional: true }))
]

/** Module errors the client maps to typed errors (extrinsic.ts); any one of a group may exist. */
export const SURFACE_ERRORS: ReadonlyArray<readonly string[]> = [
  ['NotEnoughBalanceToStake'], ['BalanceWithdrawalError'], ['HotKeyAlreadyRegisteredInSubNet'],
  ['SubNetworkDoesNotExist', 'SubnetNotExists', 'MechanismDoesNotExist'], ['IncorrectWeightVersionKey'], ['InvalidIpAddress'],
  ['SettingWeightsTooFast'], ['CommittingWeightsTooFast'], ['RevealTooEarly']
]

export interface SurfaceDifference {
  readonly kind: 'call' | 'storage' | 'error'
  readonly what: string
  /** 'missing', or what differs (an argument count). */
  readonly detail: string
  /** False when the client still works without it (an optional item, an unused alternative). */
  readonly breaking: boolean
}

/** Compares the surface with a runtime's metadata (registry set to it). */
export function checkRuntimeSurface (metadata: Metadata, registry: Registry): SurfaceDifference[] {
  const out: SurfaceDifference[] = []
  const pallets = metadata.asLatest.pallets
  const pallet = (name: string): (typeof pallets)[number] | undefined => pallets.find(p => p.name.toString() === name)
  for (const c of SURFACE_CALLS) {
    const p = pallet(c.pallet)
    const variants = p?.calls.isSome === true ? registry.lookup.getSiType(p.calls.unwrap().type).def.asVariant.variants : []
    const v = variants.find(x => x.name.toString() === c.name)
    if (v == null) out.push({ kind: 'call', what: `${c.pallet}.${c.name}`, detail: 'missing', breaking: true })
    else if (!c.argCounts.includes(v.fields.length)) out.push({ kind: 'call', what: `${c.pallet}.${c.name}`, detail: `takes ${v.fields.length} arguments, the client builds ${c.argCounts.join(' or ')}`, breaking: true })
  }
  for (const s of SURFACE_STORAGE) {
    const p = pallet(s.pallet)
    const items = p?.storage.isSome === true ? p.storage.unwrap().items.map(i => i.name.toString()) : []
    const found = s.names.filter(n => items.includes(n))
    if (found.length === 0) out.push({ kind: 'storage', what: `${s.pallet}.${s.names.join('|')}`, detail: 'missing', breaking: s.optional !== true })
  }
  const st = pallet('SubtensorModule')
  const errors = st?.errors.isSome === true ? registry.lookup.getSiType(st.errors.unwrap().type).def.asVariant.variants.map(v => v.name.toString()) : []
  for (const group of SURFACE_ERRORS) {
    if (!group.some(e => errors.includes(e))) out.push({ kind: 'error', what: `SubtensorModule.${group.join('|')}`, detail: 'missing', breaking: false })
  }
  return out
}
