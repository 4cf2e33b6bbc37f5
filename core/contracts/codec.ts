// Codec contract (hivemind style): every codec has a wire id and a declared error bound, and is
// chosen per tensor role by the run manifest. Wire id 0 is the built-in raw codec
// (core/codecs/raw.ts, hivemind's NoCompression), always available.

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
  /** Other names a run manifest may use for this codec (the raw codec's `raw`). */
  readonly aliases?: readonly string[]
  /**
   * True for a format that stores no shape of its own (the raw codec): decode returns the flat
   * [n] and the frame header's shape is the tensor's. A codec that records dims leaves it out.
   */
  readonly shapeless?: boolean
  readonly errorBound: ErrorBound
  /** Nominal bytes(float32) / bytes(encoded) for large tensors. */
  readonly nominalRatio: number
  encode(data: Float32Array, shape: readonly number[], role: TensorRole): Uint8Array
  /** Throws a typed error (`CodecError`) on truncated or corrupted input. */
  decode(bytes: Uint8Array): DecodedTensor
}
