// Error feedback (EF-SGD, Seide et al. 2014; Karimireddy et al. 2019) for lossy codecs on tensors
// that recur step after step (parameter gradients, pseudo-gradients, averaging shards): what the
// codec lost this step is added to the same tensor next step, so nothing is lost for good. Over T
// steps, sum(decoded) = sum(inputs) - residual_T exactly in real arithmetic, and the residual stays
// bounded, so the running sums converge relative to their size.
//
// Who owns the state: the sender. One ErrorFeedback per outbound stream of recurring tensors (e.g.
// the averaging round's shard sender), keyed by a stable tensor key (parameter name, shard id). The
// state never crosses the wire and receivers keep none. It lives in memory only: a restart starts
// from zero residuals (a one-step bias, harmless). Call reset(key) when a key's meaning changes
// (stage reassignment); a length change resets that key's residual automatically.
import type { Codec, TensorRole } from '../../core/contracts/codec.ts'

export class ErrorFeedback {
  readonly codec: Codec
  private readonly residuals = new Map<string, Float32Array>()

  constructor (codec: Codec) {
    this.codec = codec
  }

  /**
   * Encodes data + residual[key] and keeps the new residual (what decoding will miss). `data` is
   * not modified. If encode throws (NonFiniteError), the key's residual is dropped and the error
   * rethrown: a residual built from a bad step is worth nothing.
   */
  encode (key: string, data: Float32Array, shape: readonly number[], role: TensorRole): Uint8Array {
    let r = this.residuals.get(key)
    if (r == null || r.length !== data.length) {
      r = new Float32Array(data.length)
      this.residuals.set(key, r)
    }
    // r becomes the corrected input in place (one buffer per key), then the new residual.
    for (let i = 0; i < r.length; i++) r[i] += data[i]
    let bytes: Uint8Array
    let decoded: Float32Array
    try {
      bytes = this.codec.encode(r, shape, role)
      decoded = this.codec.decode(bytes).data
    } catch (err) {
      this.residuals.delete(key)
      throw err
    }
    for (let i = 0; i < r.length; i++) r[i] -= decoded[i]
    return bytes
  }

  /** The residual carried for `key` (a live view; do not modify), or undefined. */
  residual (key: string): Float32Array | undefined {
    return this.residuals.get(key)
  }

  /** Forgets one key's residual, or all of them. */
  reset (key?: string): void {
    if (key === undefined) this.residuals.clear()
    else this.residuals.delete(key)
  }

  get keys (): string[] {
    return [...this.residuals.keys()]
  }
}
