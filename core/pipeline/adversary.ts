// Byzantine behaviours of a stage server, for the verification tests and `layerswarm bench verify`
// (docs/verification.md): what a cheating peer does to the outputs it sends. A cheater still signs
// what it sends (a hop without a valid commitment is refused on arrival), so each of these is
// caught only by a check that recomputes the hop. Never set outside tests and benchmarks.
//
//   random     forward outputs replaced by random values of the same shape and scale
//   lazy       forward: the first output computed, returned again for every later input
//   scaled     backward: input gradients multiplied by 10
//   signflip   backward: input gradients negated
//   withhold   honest outputs, but nothing is revealed to a checker
//   poison     honest hops; in the stage's averaging rounds its contribution to every shard is
//              sign-flipped and scaled by 20 (what it sends no longer matches the stats it
//              declared, and its norm is far above the group's median: the shard owners exclude it)
import type { FaultInjection } from '../averaging/all-reduce-round.ts'
import { ConfigError } from '../errors.ts'

export type AdversaryKind = 'random' | 'lazy' | 'scaled' | 'signflip' | 'withhold' | 'poison' | 'slow'
export const ADVERSARY_KINDS: readonly AdversaryKind[] = ['random', 'lazy', 'scaled', 'signflip', 'withhold', 'poison', 'slow']
/** How long the 'slow' behaviour holds each training hop (ms). */
export const SLOW_HOP_DELAY_MS = 150

export class Adversary {
  private cached: Float32Array | undefined
  private seed = 0x9e3779b9

  constructor (readonly kind: AdversaryKind) {
    if (!ADVERSARY_KINDS.includes(kind)) throw new ConfigError(`unknown adversary ${String(kind)} (one of ${ADVERSARY_KINDS.join(', ')})`)
  }

  /** The forward output it sends instead of `out`. */
  forward (out: Float32Array): Float32Array {
    if (this.kind === 'lazy') {
      if (this.cached == null || this.cached.length !== out.length) this.cached = out.slice()
      return this.cached.slice()
    }
    if (this.kind !== 'random') return out
    let scale = 0
    for (let i = 0; i < out.length; i++) scale += out[i] * out[i]
    scale = Math.sqrt(scale / Math.max(1, out.length))
    const r = new Float32Array(out.length)
    for (let i = 0; i < r.length; i++) r[i] = scale * (2 * this.next() - 1) * Math.sqrt(3)
    return r
  }

  /** The input gradient it sends instead of `dinput`. */
  backward (dinput: Float32Array): Float32Array {
    if (this.kind === 'scaled') return dinput.map(x => 10 * x)
    if (this.kind === 'signflip') return dinput.map(x => -x)
    return dinput
  }

  /** What it does to its averaging contributions (the averager's fault injection), if anything. */
  get averagingFaults (): FaultInjection | undefined {
    return this.kind === 'poison' ? { contribution: (_shard, data) => data.map(x => -20 * x) } : undefined
  }

  /** How long it holds a training hop before computing it (ms). */
  get hopDelayMs (): number {
    return this.kind === 'slow' ? SLOW_HOP_DELAY_MS : 0
  }

  /** Whether it refuses to reveal its hops. */
  get withholds (): boolean {
    return this.kind === 'withhold'
  }

  // mulberry32: the attack needs no quality, only values an honest computation would not give
  private next (): number {
    let t = (this.seed += 0x6d2b79f5)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
