// Autoregressive sampling, forward only. The context is the last blockSize tokens (a sliding
// window); each forward runs at the full T = blockSize with the tail padded, which causal
// attention makes harmless (positions < L never see the padding) and which keeps one set of
// activation buffers for the whole generation.
import { ModelConfigError } from './config.ts'
import type { GptModel } from './gpt.ts'
import { Prng } from './prng.ts'

export interface GenerateOptions {
  /** New tokens to produce. */
  readonly tokens: number
  /** Softmax temperature; 0 = greedy (argmax). Default 1. */
  readonly temperature?: number
  /** Sample only among the k most likely tokens (0 = all). Default 0. */
  readonly topK?: number
  readonly seed?: number
  /** Called with each new token as it is produced (streaming output). */
  readonly onToken?: (id: number) => void
}

/** Continues `prompt` (at least one token) by `opts.tokens` tokens; returns the new tokens only. */
export async function generate (model: GptModel, prompt: ArrayLike<number>, opts: GenerateOptions): Promise<Int32Array> {
  const { blockSize: T, vocabSize: V } = model.config
  const temperature = opts.temperature ?? 1
  const topK = opts.topK ?? 0
  if (prompt.length < 1) throw new ModelConfigError('generate needs a prompt of at least one token')
  if (!Number.isSafeInteger(opts.tokens) || opts.tokens < 0) throw new ModelConfigError(`token count must be a non-negative integer, got ${opts.tokens}`)
  if (!(temperature >= 0 && Number.isFinite(temperature))) throw new ModelConfigError(`temperature must be a non-negative number, got ${temperature}`)
  if (!Number.isSafeInteger(topK) || topK < 0) throw new ModelConfigError(`top-k must be a non-negative integer, got ${topK}`)
  const rng = new Prng(opts.seed ?? 0)
  const seq = Array.from(prompt)
  const out = new Int32Array(opts.tokens)
  const window = new Int32Array(T)
  for (let n = 0; n < opts.tokens; n++) {
    const ctx = seq.slice(-T)
    window.fill(0)
    window.set(ctx)
    await model.forward(window, 1, T)
    const logits = (await model.logits()).subarray((ctx.length - 1) * V, ctx.length * V)
    const id = pick(logits, temperature, topK, rng)
    seq.push(id)
    out[n] = id
    opts.onToken?.(id)
  }
  return out
}

/** Next token from one row of logits [V]. */
export function pick (logits: Float32Array, temperature: number, topK: number, rng: Prng): number {
  const V = logits.length
  let best = 0
  for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i
  if (temperature === 0) return best
  let cutoff = -Infinity
  if (topK > 0 && topK < V) cutoff = [...logits].sort((a, b) => b - a)[topK - 1]
  // softmax in float64, shifted by the max for stability
  const p = new Float64Array(V)
  let sum = 0
  for (let i = 0; i < V; i++) {
    if (logits[i] < cutoff) continue
    p[i] = Math.exp((logits[i] - logits[best]) / temperature)
    sum += p[i]
  }
  let r = rng.nextFloat() * sum
  for (let i = 0; i < V; i++) {
    r -= p[i]
    if (r < 0 && p[i] > 0) return i
  }
  return best
}
