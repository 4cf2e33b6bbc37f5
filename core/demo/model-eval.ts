// What the demo does with the assembled model, in its own process: the held-out loss (the same
// batches, in the same order, as `train --local`'s eval, so the figures compare) and a text sample.
import type { ComputeBackend } from '../contracts/backend.ts'
import type { DemoData } from './demo-data.ts'
import type { Tokenizer } from '../data/tokenizer.ts'
import { generate } from '../model/generate.ts'
import { GptModel } from '../model/gpt.ts'
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
  const model = new GptModel(backend, ck.config, { stages: ck.layout.stages, bottleneck: ck.layout.bottleneck, params: ck.params })
  try {
    const B = opts.batch
    const T = opts.seqLen ?? ck.config.blockSize
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
