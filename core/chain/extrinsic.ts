// The one path every signed submission takes: a local nonce (nonce-tracker.ts), one resync-and-retry
// when the pool calls the nonce stale, a wait until the extrinsic is in a block, and the runtime's
// dispatch error turned into a typed ChainError by its module error's name.
import type { ApiPromise } from '@polkadot/api'
import type { SubmittableExtrinsic } from '@polkadot/api/types'
import type { KeyringPair } from '@polkadot/keyring/types'
import type { ISubmittableResult } from '@polkadot/types/types'
import type { Logger } from '../contracts/logger.ts'
import { AbortError } from '../errors.ts'
import { silentLogger } from '../logger.ts'
import { deadline } from '../timers.ts'
import {
  AlreadyRegisteredError, ChainError, ChainExtrinsicError, InsufficientBalanceError, LoopbackAddressError,
  SubnetNotFoundError, WeightsTooSoonError, WeightVersionKeyError
} from './errors.ts'
import { isStaleNonceError, type NonceTracker } from './nonce-tracker.ts'

export interface SubmitOptions {
  readonly signal?: AbortSignal
  /** Longest wait for inclusion in a block (default 120 s: ten 12-second blocks). */
  readonly timeoutMs?: number
  readonly log?: Logger
  /** What the error mapping names: the netuid of a subnet error, the IP of an address error. */
  readonly netuid?: number
  readonly ip?: string
}

export interface Included {
  readonly blockHash: string
  readonly result: ISubmittableResult
}

const BALANCE_ERRORS = new Set([
  'NotEnoughBalanceToStake', 'BalanceWithdrawalError', 'ZeroBalanceAfterWithdrawn', 'NotEnoughBalanceToPaySwapHotKey',
  'InsufficientBalance', 'NoBalanceToTransfer', 'Expendability'
])
const SUBNET_ERRORS = new Set(['SubNetworkDoesNotExist', 'MechanismDoesNotExist', 'SubnetNotExists'])
const TOO_SOON_ERRORS = new Set(['SettingWeightsTooFast', 'CommittingWeightsTooFast', 'RevealTooEarly', 'TxRateLimitExceeded'])

/** The typed error of a runtime module error, by its name (section.name for the rest). */
export function mapModuleError (section: string, name: string, docs: string, context: { netuid?: number, ip?: string } = {}): ChainError {
  const full = `${section}.${name}`
  if (BALANCE_ERRORS.has(name)) return new InsufficientBalanceError(`the account cannot pay for this operation (${full})`)
  if (name === 'HotKeyAlreadyRegisteredInSubNet') return new AlreadyRegisteredError()
  if (SUBNET_ERRORS.has(name)) return context.netuid != null ? new SubnetNotFoundError(context.netuid) : new ChainExtrinsicError(full, docs)
  if (name === 'IncorrectWeightVersionKey') return new WeightVersionKeyError()
  if (name === 'InvalidIpAddress' && context.ip != null) return new LoopbackAddressError(context.ip)
  if (TOO_SOON_ERRORS.has(name)) return new WeightsTooSoonError(full, docs)
  return new ChainExtrinsicError(full, docs)
}

/** The typed error of a pool rejection (RPC error 1010 and kin) that is not a stale nonce. */
export function mapPoolError (err: unknown): ChainError {
  const msg = String((err as Error)?.message ?? err)
  if (/Inability to pay some fees|balance too low/i.test(msg)) return new InsufficientBalanceError(`the account cannot pay the fee (${msg})`, { cause: err })
  return new ChainExtrinsicError(`rejected by the transaction pool: ${msg}`, '', { cause: err })
}

function dispatchErrorOf (api: ApiPromise, result: ISubmittableResult, context: SubmitOptions): ChainError | undefined {
  const de = result.dispatchError
  if (de == null) return undefined
  if (de.isModule) {
    const meta = api.registry.findMetaError(de.asModule)
    return mapModuleError(meta.section, meta.name, meta.docs.join(' '), context)
  }
  return new ChainExtrinsicError(de.type, de.toString())
}

/**
 * Signs `tx` with `signer` under its local nonce, sends it and resolves once it is in a block and
 * succeeded; throws the typed error of its dispatch error otherwise. A stale-nonce answer from the
 * pool resyncs the nonce from the chain and tries once more.
 */
export async function submitSigned (api: ApiPromise, nonces: NonceTracker, tx: SubmittableExtrinsic<'promise'>, signer: KeyringPair,
  options: SubmitOptions = {}): Promise<Included> {
  const log = options.log ?? silentLogger
  const label = `${tx.method.section}.${tx.method.method}`
  for (let attempt = 0; ; attempt++) {
    try {
      return await submitOnce(api, nonces, tx, signer, options, label, log)
    } catch (err) {
      if (err instanceof ChainError || err instanceof AbortError || attempt > 0 || !isStaleNonceError(err)) {
        throw err instanceof ChainError || err instanceof AbortError ? err : mapPoolError(err)
      }
      log.debug('stale nonce; resyncing and retrying', { call: label, signer: signer.address, error: String((err as Error)?.message ?? err) })
      nonces.resync(signer.address)
    }
  }
}

async function submitOnce (api: ApiPromise, nonces: NonceTracker, tx: SubmittableExtrinsic<'promise'>, signer: KeyringPair,
  options: SubmitOptions, label: string, log: Logger): Promise<Included> {
  if (options.signal?.aborted === true) throw new AbortError()
  let settle!: { resolve: (v: Included) => void, reject: (e: unknown) => void }
  const included = new Promise<Included>((resolve, reject) => { settle = { resolve, reject } })
  // the outcome may arrive before it is awaited below; it is awaited there
  included.catch(() => {})
  // pool acceptance inside the nonce lock; inclusion outside it, so other submissions of this signer can follow
  const unsubscribe = await nonces.withNonce(signer.address, async nonce => {
    log.debug('submitting', { call: label, signer: signer.address, nonce })
    return await tx.signAndSend(signer, { nonce }, (result: ISubmittableResult) => {
      const s = result.status
      if (s.isInBlock || s.isFinalized) {
        const err = dispatchErrorOf(api, result, options)
        if (err != null) settle.reject(err)
        else settle.resolve({ blockHash: (s.isInBlock ? s.asInBlock : s.asFinalized).toHex(), result })
      } else if (s.isInvalid || s.isDropped || s.isUsurped) {
        nonces.resync(signer.address)
        settle.reject(new ChainExtrinsicError(`${label} ${s.type.toLowerCase()} in the transaction pool`))
      }
    })
  })
  const d = deadline(options.timeoutMs ?? 120_000, options.signal)
  const onAbort = (): void => {
    settle.reject(options.signal?.aborted === true
      ? new AbortError(`${label} aborted while waiting for inclusion`)
      : new ChainExtrinsicError(`${label} not in a block within ${options.timeoutMs ?? 120_000} ms`))
  }
  d.signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await included
  } finally {
    d.signal.removeEventListener('abort', onAbort)
    d.clear()
    unsubscribe()
  }
}
