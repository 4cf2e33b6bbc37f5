// Compression in the demo: the default setting of stage-boundary compression, and the figures the
// report gives about it (encoded bytes per token per boundary crossing, the ratio to float32).
import type { SwarmSnapshot } from './swarm-view.ts'

/** Stage-boundary compression of a demo run: codecs per role (`none` = raw f32) and the bottleneck k. */
export interface DemoCompression {
  /** Codec of activations (forward). */
  readonly codec: string
  /** Codec of activation gradients (backward). */
  readonly gradCodec: string
  /** k of the learned bottleneck at every boundary, or null for none. */
  readonly bottleneck: number | null
}

/**
 * The demo's default compression. It must be the best (fewest bytes) setting that meets the quality
 * goal measured by `layerswarm bench compression-quality`: held-out loss at most 3% above the
 * uncompressed run at 32x less boundary traffic, at most 5% at 64x. Measured (tiny preset, 3 stages,
 * 200 steps, docs/compression.md): k=15 + int8 at 33.5x cost +1.0%, k=7 + int8 at 71.5x +1.9%, k=3
 * at 165x +4.7% (thinnest margin, so not chosen). On the tiny model's d=128 with 64-value blocks,
 * k=7 gives about 69x fewer bytes per boundary than float32.
 */
export const DEMO_DEFAULT_COMPRESSION: DemoCompression = Object.freeze({ codec: 'int8-block', gradCodec: 'int8-block', bottleneck: 7 })

/** Encoded bytes per token per boundary crossing. */
export interface BytesPerToken {
  /** Activations sent forward. */
  readonly forward: number | null
  /** Activation gradients sent back. */
  readonly backward: number | null
  /** forward + backward: what one trained token costs at one boundary. */
  readonly total: number | null
}

/**
 * The report's boundary figures from the swarm's counters: bytes per token from every node's encoded
 * boundary bytes and the tokens they carried (summed over nodes, so every crossing of every boundary
 * counts once), and the ratio to raw float32 of the full residual stream, 4·C bytes per token and
 * direction (so a bottleneck's C/k counts in the ratio as well as the codec's).
 */
export function boundaryFigures (snap: SwarmSnapshot, dModel: number): { bytesPerToken: BytesPerToken, compressionRatio: BytesPerToken } {
  const per = (bytes: number, tokens: number): number | null => tokens > 0 ? bytes / tokens : null
  const forward = per(snap.boundaryBytesForward, snap.boundaryTokensForward)
  const backward = per(snap.boundaryBytesBackward, snap.boundaryTokensBackward)
  const total = forward != null && backward != null ? forward + backward : null
  const f32 = 4 * dModel
  const ratio = (x: number | null, ref: number): number | null => x != null && x > 0 ? ref / x : null
  return {
    bytesPerToken: { forward, backward, total },
    compressionRatio: { forward: ratio(forward, f32), backward: ratio(backward, f32), total: ratio(total, 2 * f32) }
  }
}
