// What the demo does with the assembled model, in its own process: the held-out loss (the same
// batches, in the same order, as `train --local`'s eval, so the figures compare) and a text sample.
import type { ComputeBackend } from '../contracts/backend.ts'
import type { DemoData } from './demo-data.ts'
import type { Tokenizer } from '../data/tokenizer.ts'
import { generate } from '../model/generate.ts'
import { GptModel } from '../model/gpt.ts'
import { isLlama, type ModelConfig } from '../model/config.ts'
import { edgeParamNames } from '../model/params.ts'
import type { Checkpoint } from '../train/checkpoint.ts'

export interface ModelEvalOptions {
  /** Held-out batches of B x T tokens (capped by what the split holds). */
  readonly evalBatches: number
  readonly batch: number
  /** T of the eval batches (default: the model's context). */
  readonly seqLen?: number
  readonly sample: { readonly prompt: string, readonly tokens: number, readonly temperature: number, readonly seed: number }
}

export interface ModelEvalResult {
  /** null when the held-out split is shorter than one batch. */
  readonly evalLoss: number | null
  readonly evalBatches: number
  /** The prompt followed by the generated text. */
  readonly sample: string
}

export async function evaluateModel (backend: ComputeBackend, ck: Checkpoint, corpus: Pick<DemoData, 'heldOut' | 'tokenizer'>, opts: ModelEvalOptions): Promise<ModelEvalResult> {
  const T = opts.seqLen ?? ck.config.blockSize
  const { config, params } = atContext(ck, T)
  const model = new GptModel(backend, config, { stages: ck.layout.stages, bottleneck: ck.layout.bottleneck, params })
  try {
    const B = opts.batch
    const n = Math.min(opts.evalBatches, corpus.heldOut.evalBatchCount(B, T))
    let sum = 0
    for (let i = 0; i < n; i++) {
      const b = await corpus.heldOut.evalBatch(i, B, T)
      sum += await model.forward(b.inputs, B, T, b.targets) as number
    }
    const tok = corpus.tokenizer
    const prompt = opts.sample.prompt.length > 0 ? Array.from(tok.encode(opts.sample.prompt)) : [tok.eot]
    const ids = await generate(model, prompt, { tokens: opts.sample.tokens, temperature: opts.sample.temperature, seed: opts.sample.seed })
    return { evalLoss: n > 0 ? sum / n : null, evalBatches: n, sample: opts.sample.prompt + decodeText(tok, ids) }
  } finally {
    model.dispose()
  }
}

/**
 * The model at the run's context T: generation's window is the config's context, and at a BPE
 * vocabulary a [1, 1024, V] head (logits, probabilities, their gradient) is 600 MB more than the run's
 * T ever needed (llama-125m's sample ran the CPU backend's 4 GiB heap out). llama has no position
 * table, so only the config changes; gpt2 keeps the first T rows of wpe.
 */
export function atContext (ck: Checkpoint, T: number): { config: ModelConfig, params: ReadonlyMap<string, Float32Array> } {
  if (T >= ck.config.blockSize) return { config: ck.config, params: ck.params }
  const config = { ...ck.config, blockSize: T }
  const pos = edgeParamNames(isLlama(ck.config)).pos
  const wpe = pos != null ? ck.params.get(pos) : undefined
  if (pos == null || wpe == null) return { config, params: ck.params }
  const params = new Map(ck.params)
  params.set(pos, wpe.slice(0, T * ck.config.dModel))
  return { config, params }
}

/** Text of generated ids: ids past the tokenizer's vocabulary are dropped, end-of-text shows as a newline. */
export function decodeText (tok: Tokenizer, ids: ArrayLike<number>): string {
  const kept = Array.from(ids).filter(id => id < tok.vocabSize)
  const parts: string[] = []
  let run: number[] = []
  for (const id of kept) {
    if (id === tok.eot) {
      parts.push(tok.decode(run), '\n')
      run = []
    } else {
      run.push(id)
    }
  }
  parts.push(tok.decode(run))
  return parts.join('')
}
