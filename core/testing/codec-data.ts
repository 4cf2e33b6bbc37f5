// Seeded float32 test data for codecs: the distributions a codec meets in training (normal,
// uniform, heavy-tailed, activation-like with outlier channels) and the adversarial ones that break
// naive quantizers (outliers, zeros, constants, denormals, alternating signs, f32 extremes).
import { rng } from './gradcheck.ts'

export type Rand = () => number

/** Standard normal by Box-Muller (float64; callers round to f32 by storing). */
export function gaussian (r: Rand): number {
  const u = 1 - r() // (0, 1]: log(0) never happens
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r())
}

/** Transformer activations, (rows, d) row-major: N(0, 1) with a few outlier channels 20-60x larger, as LLM residual streams have. */
export function activationLike (n: number, seed = 1, d = 1024): Float32Array {
  const r = rng(seed)
  const out = new Float32Array(n)
  const boost = new Float64Array(d).fill(1)
  for (let c = 0; c < d; c++) if (r() < 0.005) boost[c] = 20 + 40 * r()
  for (let i = 0; i < n; i++) out[i] = gaussian(r) * boost[i % d]
  return out
}

export interface CodecDataCase {
  readonly name: string
  /** n float32 values from the seeded generator. */
  make (n: number, r: Rand): Float32Array
}

const fill = (n: number, f: (i: number) => number): Float32Array => {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = f(i)
  return a
}
const sign = (r: Rand): number => r() < 0.5 ? -1 : 1

export const CODEC_DATA_CASES: readonly CodecDataCase[] = Object.freeze([
  { name: 'normal', make: (n, r) => fill(n, () => gaussian(r)) },
  { name: 'uniform', make: (n, r) => fill(n, () => r() * 2 - 1) },
  { name: 'log-normal magnitudes', make: (n, r) => fill(n, () => sign(r) * Math.exp(2.5 * gaussian(r))) },
  { name: 'magnitudes 1e-30..1e30', make: (n, r) => fill(n, () => sign(r) * 10 ** (60 * r() - 30)) },
  { name: 'activation-like', make: (n, r) => activationLike(n, Math.floor(r() * 2 ** 31), 96) },
  { name: 'one huge outlier per 61', make: (n, r) => fill(n, i => i % 61 === 17 ? sign(r) * 1e6 : gaussian(r) * 1e-3) },
  { name: 'all zeros', make: n => new Float32Array(n) },
  { name: 'negative zeros', make: n => new Float32Array(n).fill(-0) },
  { name: 'constant', make: n => new Float32Array(n).fill(0.3712) },
  { name: 'negative constant', make: n => new Float32Array(n).fill(-7.25e-3) },
  { name: 'alternating signs', make: (n, r) => fill(n, i => (i % 2 === 0 ? 1 : -1) * (0.5 + r())) },
  { name: 'sparse', make: (n, r) => fill(n, () => r() < 0.02 ? gaussian(r) : 0) },
  { name: 'denormals only', make: (n, r) => fill(n, () => sign(r) * r() * 1.1e-38) },
  { name: 'smallest denormals', make: (n, r) => fill(n, () => sign(r) * Math.floor(r() * 4) * 2 ** -149) },
  { name: 'denormals among normals', make: (n, r) => fill(n, i => i % 3 === 0 ? gaussian(r) : sign(r) * r() * 1e-39) },
  { name: 'near float32 max', make: (n, r) => fill(n, () => sign(r) * 3.4028234e38 * (0.5 + 0.5 * r())) },
  { name: 'exactly float32 max', make: (n, r) => fill(n, () => sign(r) * 3.4028234663852886e38) },
  { name: 'ramp', make: n => fill(n, i => i - n / 2) }
])
