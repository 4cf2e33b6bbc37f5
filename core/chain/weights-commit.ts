// Commit-reveal v2 on subtensor: commit_weights carries a hash, reveal_weights (an epoch or more later)
// the weights and the salt; the runtime recomputes BlakeTwo256 over the SCALE encoding of
// (AccountId32 who, u16 netuid, Vec<u16> uids, Vec<u16> values, Vec<u16> salt, u64 version_key)
// and accepts the reveal only where it equals a pending commit's hash. So this must encode exactly
// that tuple, in that order, with those widths.
import { TypeRegistry, createType } from '@polkadot/types'
import { blake2AsU8a } from '@polkadot/util-crypto'
import { randomBytes } from 'node:crypto'

const registry = new TypeRegistry()
const TUPLE = '(AccountId32, u16, Vec<u16>, Vec<u16>, Vec<u16>, u64)'

export interface CommitInput {
  /** ss58 of the hotkey that commits and reveals. */
  readonly hotkey: string
  readonly netuid: number
  readonly uids: readonly number[]
  readonly weights: readonly number[]
  readonly salt: readonly number[]
  readonly versionKey: bigint
}

/** The 32-byte hash commit_weights takes for these weights (see the top of this file). */
export function commitHash (c: CommitInput): Uint8Array {
  for (const [what, xs] of [['uids', c.uids], ['weights', c.weights], ['salt', c.salt], ['netuid', [c.netuid]]] as const) {
    for (const x of xs) if (!(Number.isInteger(x) && x >= 0 && x <= 0xffff)) throw new RangeError(`${what} holds ${x}, not a u16`)
  }
  if (c.uids.length !== c.weights.length) throw new RangeError(`${c.uids.length} uids but ${c.weights.length} weights`)
  if (c.versionKey < 0n || c.versionKey >= 1n << 64n) throw new RangeError(`versionKey ${c.versionKey} is not a u64`)
  const encoded = createType(registry, TUPLE, [c.hotkey, c.netuid, [...c.uids], [...c.weights], [...c.salt], c.versionKey]).toU8a()
  return blake2AsU8a(encoded, 256)
}

/** `n` random u16s from the system's CSPRNG: the salt that keeps a commit from being guessed before its reveal. */
export function randomSalt (n = 8): number[] {
  if (!(Number.isInteger(n) && n > 0 && n <= 1024)) throw new RangeError(`salt length ${n} is not in 1..1024`)
  const b = randomBytes(2 * n)
  return Array.from({ length: n }, (_, i) => b[2 * i] | (b[2 * i + 1] << 8))
}
