// Typed errors of the chain integration: the chain client, wallets, the peer-id <-> hotkey binding
// and admission. Local conditions (an unreachable endpoint, a wrong passphrase) carry verdict 'none';
// a peer's binding that does not verify, or a peer whose hotkey is not registered, carries 'reject'.
// Other chain modules append their own classes at the end of this file.
import { ConfigError, LayerswarmError } from '../errors.ts'

/** Base class of every chain condition (catch it to handle any of them). */
export class ChainError extends LayerswarmError {
  constructor (code: string, message: string, options?: { cause?: unknown, verdict?: 'reject' | 'ignore' | 'none' }) {
    super(code, message, { cause: options?.cause, verdict: options?.verdict ?? 'none' })
  }
}

/** The chain endpoint did not answer (after the caller's retries). */
export class ChainUnreachableError extends ChainError {
  readonly endpoint: string
  constructor (endpoint: string, cause?: unknown) {
    const why = describeCause(cause)
    super('ERR_CHAIN_UNREACHABLE', `chain endpoint ${endpoint} is unreachable (${why}); check the URL and that the node is up`, { cause })
    this.endpoint = endpoint
  }
}

/** Words for why a connection failed: WebSocket providers hand over error events, not Errors. */
function describeCause (cause: unknown): string {
  if (cause === undefined) return 'no answer'
  if (cause instanceof Error) return cause.message
  const c = cause as { message?: unknown, error?: { message?: unknown }, type?: unknown }
  if (typeof c?.message === 'string' && c.message !== '') return c.message
  if (typeof c?.error?.message === 'string') return c.error.message
  if (typeof c?.type === 'string') return `websocket ${c.type}`
  return typeof cause === 'string' ? cause : 'no answer'
}

/** The signing account cannot pay for the operation (burn, stake, fees). */
export class InsufficientBalanceError extends ChainError {
  constructor (message = 'the account does not hold enough balance for this operation; fund the coldkey and retry', options?: { cause?: unknown }) {
    super('ERR_CHAIN_INSUFFICIENT_BALANCE', message, options)
  }
}

/** The hotkey is already registered on the subnet. */
export class AlreadyRegisteredError extends ChainError {
  constructor (message = 'the hotkey is already registered on this subnet', options?: { cause?: unknown }) {
    super('ERR_CHAIN_ALREADY_REGISTERED', message, options)
  }
}

/** No subnet with this netuid exists on the chain. */
export class SubnetNotFoundError extends ChainError {
  readonly netuid: number
  constructor (netuid: number, options?: { cause?: unknown }) {
    super('ERR_CHAIN_SUBNET_NOT_FOUND', `subnet ${netuid} does not exist on this chain; check --netuid`, options)
    this.netuid = netuid
  }
}

/** set_weights/reveal_weights carried another version key than the subnet's. */
export class WeightVersionKeyError extends ChainError {
  constructor (message = 'the weights carry a version key the subnet does not accept (IncorrectWeightVersionKey); read the subnet\'s weights_version and retry', options?: { cause?: unknown }) {
    super('ERR_CHAIN_WEIGHT_VERSION_KEY', message, options)
  }
}

/** Any other dispatch error of an extrinsic: the runtime's module error name and its docs. */
export class ChainExtrinsicError extends ChainError {
  /** e.g. 'SubtensorModule.NotEnoughStakeToSetWeights', or the dispatch error's text when not a module error. */
  readonly errorName: string
  readonly docs: string
  constructor (errorName: string, docs = '', options?: { cause?: unknown }) {
    super('ERR_CHAIN_EXTRINSIC', `extrinsic failed: ${errorName}${docs !== '' ? ` (${docs})` : ''}`, options)
    this.errorName = errorName
    this.docs = docs
  }
}

/** serve_axon refused before sending: the runtime rejects loopback and unspecified addresses. */
export class LoopbackAddressError extends ChainError {
  readonly ip: string
  constructor (ip: string) {
    super('ERR_CHAIN_LOOPBACK_ADDRESS', `cannot serve ${ip}: the chain refuses loopback and unspecified addresses; ` +
      'pass the address others reach the node at (its public IP and the port it listens on)')
    this.ip = ip
  }
}

/** Base class of wallet conditions (files in the data dir's wallets/ folder). */
export class WalletError extends LayerswarmError {
  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}

/** The wallet, its coldkey or the named hotkey does not exist. */
export class WalletNotFoundError extends WalletError {
  readonly path: string
  constructor (what: string, path: string) {
    super('ERR_WALLET_NOT_FOUND', `${what} not found at ${path}; create it with \`layerswarm wallet create\``)
    this.path = path
  }
}

/** Creating or importing would overwrite an existing key. */
export class WalletExistsError extends WalletError {
  readonly path: string
  constructor (what: string, path: string) {
    super('ERR_WALLET_EXISTS', `${what} already exists at ${path}; refusing to overwrite it (move it away first)`)
    this.path = path
  }
}

/** The coldkey's passphrase does not decrypt it. */
export class WrongPassphraseError extends WalletError {
  constructor (path: string, options?: { cause?: unknown }) {
    super('ERR_WALLET_PASSPHRASE', `the passphrase does not unlock the coldkey at ${path}`, options)
  }
}

/** A mnemonic, seed or key JSON given to import does not decode, or a name/option is invalid. */
export class BadMnemonicError extends WalletError {
  constructor (reason: string, options?: { cause?: unknown }) {
    super('ERR_WALLET_BAD_KEY', reason, options)
  }
}

/** A wallet file exists but does not hold what it should (not key JSON, an encrypted hotkey). */
export class WalletCorruptError extends WalletError {
  readonly path: string
  constructor (path: string, reason: string, options?: { cause?: unknown }) {
    super('ERR_WALLET_CORRUPT', `wallet file ${path} cannot be used: ${reason}`, options)
    this.path = path
  }
}

/** A wallet or hotkey name that is not [A-Za-z0-9_-]{1,64} (it becomes a file name). User input: exit 2. */
export class WalletNameError extends ConfigError {
  readonly walletName: string
  constructor (kind: 'wallet' | 'hotkey', name: string) {
    super(`invalid ${kind} name ${JSON.stringify(name)}: use 1 to 64 letters, digits, '_' or '-'`)
    this.walletName = name
  }
}

/** A peer presented a peer-id <-> hotkey binding that does not verify. REJECT. */
export class BindingError extends ChainError {
  readonly reason: string
  constructor (reason: string, options?: { cause?: unknown }) {
    super('ERR_CHAIN_BINDING', `peer binding does not verify: ${reason}`, { cause: options?.cause, verdict: 'reject' })
    this.reason = reason
  }
}

/** A peer is not admitted: its bound hotkey is not registered on the netuid (or no binding). REJECT. */
export class NotAdmittedError extends ChainError {
  readonly peer: string
  readonly reason: string
  constructor (peer: string, reason: string) {
    super('ERR_CHAIN_NOT_ADMITTED', `peer ${peer} is not admitted: ${reason}`, { verdict: 'reject' })
    this.peer = peer
    this.reason = reason
  }
}

/** The peer could not be asked for its binding (unreachable, reset, timed out): no verdict yet. IGNORE. */
export class AdmissionPendingError extends ChainError {
  readonly peer: string
  constructor (peer: string, options?: { cause?: unknown }) {
    const why = options?.cause instanceof Error ? options.cause.message : 'no answer'
    super('ERR_CHAIN_ADMISSION_PENDING', `peer ${peer} could not be asked for its binding (${why}); it is not admitted yet`, { cause: options?.cause, verdict: 'ignore' })
    this.peer = peer
  }
}

/** A weights call came before the subnet allows it (SettingWeightsTooFast, CommittingWeightsTooFast, RevealTooEarly): retry later. */
export class WeightsTooSoonError extends ChainExtrinsicError {
  constructor (errorName: string, docs = '') {
    super(errorName, docs)
  }
}

/** The local dev chain (chopsticks in a child process) did not start or answer. */
export class DevChainError extends ChainError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_CHAIN_DEV', message, options)
  }
}

/** The ledger-to-weights mapping met a NaN, infinite or negative intermediate: a bug, never a peer's fault. */
export class WeightsInvariantError extends ChainError {
  constructor (detail: string) {
    super('ERR_CHAIN_WEIGHTS_INVARIANT', `weights computation invariant broken: ${detail}`)
  }
}
