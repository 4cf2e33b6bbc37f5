// Training parity: passing the kernel compliance suite does not show that a backend trains. This
// suite trains a small GPT for a few steps on the backend under test and on the CPU reference
// backend (loaded by name through the plugin registry, inline, single-threaded), from the same seed
// on the same deterministic batches, and compares the per-step training losses. Plugin authors run
// `trainingParity('my-backend', () => createMyBackend())` beside `backendCompliance` in a mocha test.
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../contracts/backend.ts'
import { validateModelConfig, type ModelConfig } from '../model/config.ts'
import { withComputeBackend } from '../node/backend-choice.ts'
import { trainLocal } from '../train/trainer.ts'
import type { Batch, TrainData } from '../data/index.ts'

export interface TrainingParityOptions {
  /** Optimizer steps (default 12). */
  readonly steps?: number
  /** Largest allowed |loss - reference loss| / max(1, |reference loss|) at any step (default 0.02). */
  readonly tolerance?: number
  /** The model (default: 2 blocks, d=32, 2 heads, 64-token vocabulary, context 16). */
  readonly model?: ModelConfig
  readonly seed?: number
}

const DEFAULT_MODEL: ModelConfig = { vocabSize: 64, blockSize: 16, nLayer: 2, nHead: 2, dModel: 32 }

/** A deterministic, learnable token stream: a repeating pattern with a per-sequence offset. */
function patternData (vocab: number): TrainData {
  const batch = (key: number, B: number, T: number): Batch => {
    const inputs = new Int32Array(B * T)
    const targets = new Int32Array(B * T)
    for (let b = 0; b < B; b++) {
      const offset = (key * 7 + b * 13) % vocab
      for (let t = 0; t < T; t++) {
        inputs[b * T + t] = (offset + 3 * t) % vocab
        targets[b * T + t] = (offset + 3 * (t + 1)) % vocab
      }
    }
    return { inputs, targets }
  }
  return {
    trainBatch: (step, micro, B, T) => batch(step * 31 + micro, B, T),
    evalBatch: (index, B, T) => batch(100_000 + index, B, T),
    evalBatchCount: () => 4,
    description: { data: 'training-parity pattern' }
  }
}

/** The per-step training losses of `steps` steps of `model` on `backend`. */
export async function trainingLosses (backend: ComputeBackend, opts: TrainingParityOptions = {}): Promise<number[]> {
  const config = validateModelConfig(opts.model ?? DEFAULT_MODEL)
  const steps = opts.steps ?? 12
  const r = await trainLocal({
    backend,
    config,
    data: patternData(config.vocabSize),
    steps,
    batchSize: 4,
    seqLen: config.blockSize,
    schedule: { maxLr: 1e-2, minLr: 1e-3, warmupSteps: 2, totalSteps: steps },
    seed: opts.seed ?? 7,
    evalBatches: 1
  })
  return r.losses
}

/** Registers `describe('<name> training parity')`: the backend's loss curve matches the CPU backend's. */
export function trainingParity (name: string, factory: () => Promise<ComputeBackend>, opts: TrainingParityOptions = {}): void {
  const tol = opts.tolerance ?? 0.02
  describe(`${name} training parity`, function () {
    this.timeout(120_000)
    it(`trains to the CPU backend's loss curve (each step within ${tol} relative)`, async function () {
      const reference = await withComputeBackend('cpu', { options: { threads: 0 } }, async be => await trainingLosses(be, opts))
      const be = await factory()
      let losses: number[]
      try {
        losses = await trainingLosses(be, opts)
      } finally {
        await be.dispose()
      }
      assert.equal(losses.length, reference.length, 'one loss per step')
      const worst = losses.reduce((w, l, i) => {
        const err = Math.abs(l - reference[i]) / Math.max(1, Math.abs(reference[i]))
        return Number.isNaN(err) || err > w.err ? { err: Number.isNaN(err) ? Infinity : err, step: i + 1 } : w
      }, { err: 0, step: 0 })
      const show = (xs: number[]): string => xs.map(x => x.toFixed(4)).join(', ')
      assert.ok(worst.err <= tol, `step ${worst.step} differs by ${worst.err.toExponential(2)} (relative) from the CPU backend\n  ${name}: ${show(losses)}\n  cpu: ${show(reference)}`)
      assert.ok(reference.at(-1)! < reference[0], `the reference learns: ${show(reference)}`)
    })
  })
}
