// The unigram baseline: the cross-entropy a model gets from token frequencies alone. A trained
// model should beat it quickly; reports compare against it.
import { DataArgumentError } from './data-errors.ts'

/**
 * Held-out cross-entropy in nats/token of a unigram model fit on `train` with Laplace (add-one)
 * smoothing: p(v) = (count(v) + 1) / (N + V). Always finite, and at most ln(V) plus the cost of
 * a train/held-out mismatch.
 */
export function unigramCrossEntropy (train: ArrayLike<number>, heldOut: ArrayLike<number>, vocabSize: number): number {
  if (!Number.isSafeInteger(vocabSize) || vocabSize < 1) throw new DataArgumentError(`vocabSize must be a positive integer, got ${vocabSize}`)
  if (heldOut.length === 0) throw new DataArgumentError('the held-out split is empty: raise heldOutFraction or add data')
  const counts = new Float64Array(vocabSize)
  for (let i = 0; i < train.length; i++) counts[checkId(train[i], vocabSize)]++
  const logDenominator = Math.log(train.length + vocabSize)
  let sum = 0
  for (let i = 0; i < heldOut.length; i++) sum += logDenominator - Math.log(counts[checkId(heldOut[i], vocabSize)] + 1)
  return sum / heldOut.length
}

function checkId (id: number, vocabSize: number): number {
  if (!(Number.isInteger(id) && id >= 0 && id < vocabSize)) throw new DataArgumentError(`token id ${id} is outside [0, ${vocabSize})`)
  return id
}
