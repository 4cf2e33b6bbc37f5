// Learning-rate schedule as a pure function of the step: linear warmup, then cosine decay to a
// floor. The step is an input (not internal state) so the swarm can drive it with its own count.
import { ModelConfigError } from './config.ts'

export interface LrSchedule {
  /** Peak learning rate, reached at the end of warmup. */
  readonly maxLr: number
  /** Floor reached at totalSteps and kept after. */
  readonly minLr: number
  readonly warmupSteps: number
  readonly totalSteps: number
}

export function validateLrSchedule (s: LrSchedule): LrSchedule {
  const bad = (msg: string): never => { throw new ModelConfigError(`learning-rate schedule: ${msg}`) }
  if (!(Number.isFinite(s.maxLr) && s.maxLr > 0)) bad(`maxLr must be a positive number, got ${s.maxLr}`)
  if (!(Number.isFinite(s.minLr) && s.minLr >= 0 && s.minLr <= s.maxLr)) bad(`minLr must be in [0, maxLr], got ${s.minLr}`)
  if (!(Number.isSafeInteger(s.warmupSteps) && s.warmupSteps >= 0)) bad(`warmupSteps must be a non-negative integer, got ${s.warmupSteps}`)
  if (!(Number.isSafeInteger(s.totalSteps) && s.totalSteps >= 1)) bad(`totalSteps must be a positive integer, got ${s.totalSteps}`)
  return s
}

/** Learning rate for 0-based `step`: (step+1)/warmup * maxLr during warmup, then cosine to minLr. */
export function learningRate (step: number, s: LrSchedule): number {
  if (step < s.warmupSteps) return s.maxLr * (step + 1) / s.warmupSteps
  const span = s.totalSteps - s.warmupSteps
  if (span <= 0 || step >= s.totalSteps) return s.minLr
  const ratio = (step - s.warmupSteps) / span
  return s.minLr + 0.5 * (1 + Math.cos(Math.PI * ratio)) * (s.maxLr - s.minLr)
}
