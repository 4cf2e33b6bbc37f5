// Typed errors of the scheduler, one class per condition. (Refused heartbeats are the membership
// view's errors: core/membership/errors.ts.)
import { LayerswarmError } from '../../core/contracts/index.ts'

/** A scheduler method was called in the wrong lifecycle state. */
export class SchedulerStateError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_SCHED_STATE', message)
  }
}

/** Moving to another stage failed in a runtime hook (beforeMove or fetchStageState). */
export class StageMoveError extends LayerswarmError {
  constructor (readonly from: number | undefined, readonly to: number, options?: { cause?: unknown }) {
    super('ERR_SCHED_MOVE', `moving from stage ${from ?? 'none'} to stage ${to} failed: ${(options?.cause as Error)?.message ?? 'unknown error'}`, options)
  }
}
