// The chain as the rest of the node sees it: what is read from a subnet's metagraph, the subnet's
// weight rules, and the signed operations a node performs. core/chain/chain-client.ts implements them
// over @polkadot/api; the weight setter, admission and bootstrap code against these types, so unit
// tests can drive them with plain objects. Amounts are in rao (1 TAO = 1e9 rao) as bigint.

/** An axon a neuron served (subtensor's AxonInfo), decoded. */
export interface AxonInfo {
  /** Dotted IPv4 or RFC 5952 IPv6 text. */
  readonly ip: string
  readonly ipType: 4 | 6
  readonly port: number
  /** Subtensor's protocol field (0 TCP, 1 UDP, 4 in Bittensor's convention); layerswarm serves 0. */
  readonly protocol: number
  readonly version: number
  /** Block at which it was served. */
  readonly block: number
}

/** One registered neuron of a subnet. */
export interface Neuron {
  readonly uid: number
  /** ss58 addresses. */
  readonly hotkey: string
  readonly coldkey: string
  /** Stake on the hotkey in this subnet (rao). */
  readonly stake: bigint
  /** Normalised to [0, 1] from the runtime's u16 (0 where the runtime has no such value). */
  readonly trust: number
  readonly incentive: number
  readonly dividends: number
  /** Emission per tempo (rao). */
  readonly emission: bigint
  readonly validatorPermit: boolean
  /** Block of the hotkey's last weights update. */
  readonly lastUpdate: number
  /** Null when the neuron never served one. */
  readonly axon: AxonInfo | null
}

export interface Metagraph {
  readonly netuid: number
  /** Block the metagraph was read at. */
  readonly block: number
  readonly neurons: readonly Neuron[]
}

/** The subnet's rules for weights, read from its hyperparameters. */
export interface SubnetWeightRules {
  readonly tempo: number
  /** set_weights and reveal_weights must carry it, else IncorrectWeightVersionKey. */
  readonly versionKey: bigint
  /** Blocks between two weight updates of one hotkey. */
  readonly rateLimit: number
  readonly commitReveal: boolean
  /** Epochs (tempos) between a commit and its reveal, where the runtime has the setting (else 1). */
  readonly revealPeriodEpochs: number
  readonly minAllowedWeights: number
  /** Largest share of the total one weight may take, u16-normalised (65535 = no limit). */
  readonly maxWeightLimit: number
  /** Stake a hotkey needs to set weights (rao). */
  readonly minStake: bigint
}

export interface ChainCallOptions {
  readonly signal?: AbortSignal
}

/** Reads the chain; every method retries an unreachable endpoint within its own bound, then throws ChainUnreachableError. */
export interface ChainReader {
  /** Best block number. */
  head (options?: ChainCallOptions): Promise<number>
  subnetExists (netuid: number, options?: ChainCallOptions): Promise<boolean>
  weightRules (netuid: number, options?: ChainCallOptions): Promise<SubnetWeightRules>
  metagraph (netuid: number, options?: ChainCallOptions): Promise<Metagraph>
}

/** Weight operations signed by one hotkey; each resolves once the extrinsic is in a block and succeeded, else throws a typed ChainError. */
export interface WeightsWriter {
  readonly hotkey: string
  setWeights (netuid: number, uids: readonly number[], weights: readonly number[], versionKey: bigint, options?: ChainCallOptions): Promise<void>
  /** `hash`: 32 bytes, see commitHash in core/chain/weights-commit.ts. */
  commitWeights (netuid: number, hash: Uint8Array, options?: ChainCallOptions): Promise<void>
  revealWeights (netuid: number, uids: readonly number[], weights: readonly number[], salt: readonly number[], versionKey: bigint, options?: ChainCallOptions): Promise<void>
}

/**
 * A node's proof that its libp2p peer id and its hotkey belong together: both keys sign the same
 * statement (bindingMessage in core/chain/binding.ts). Peers verify it before they treat the node
 * as that hotkey.
 */
export interface PeerBinding {
  readonly v: 1
  readonly peer: string
  /** ss58. */
  readonly hotkey: string
  /** Hex signatures of bindingMessage(peer, hotkey): by the peer's libp2p key, by the hotkey (sr25519). */
  readonly peerSig: string
  readonly hotkeySig: string
}
