// Codec contract (hivemind style): every codec has a wire id and a declared error bound, and is
// chosen per tensor role by the run manifest.

export type TensorRole = 'activation' | 'activation-grad' | 'parameter' | 'parameter-grad'

export interface ErrorBound {
  /** Max |x - decode(encode(x))| / max|x| over a block (blockwise codecs) or the whole tensor. */
  readonly relMaxAbs: number
}

export interface DecodedTensor {
  readonly data: Float32Array
  readonly shape: readonly number[]
}

export interface Codec {
  /** Wire id, unique across codecs, 0..65535. */
  readonly id: number
  readonly name: string
  readonly errorBound: ErrorBound
  /** Nominal bytes(float32) / bytes(encoded) for large tensors. */
  readonly nominalRatio: number
  encode(data: Float32Array, shape: readonly number[], role: TensorRole): Uint8Array
  /** Throws a typed error (`CodecError`) on truncated or corrupted input. */
  decode(bytes: Uint8Array): DecodedTensor
}
