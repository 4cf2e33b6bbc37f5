// The end of a run (docs/pipeline.md, "Ending a run"), read from the membership view:
//
//   stage 0      after its last step and eval it reports done, then lingers (at most lingerMs)
//                until every known peer reports done, so late listeners see it done
//   stage >= 1   ends when every live stage-0 peer reports done (and one was seen done) and no
//                microbatch is in flight here: the last partial step is applied, then it reports
//                done and lingers the same way
import type { Logger } from '../contracts/logger.ts'
import { pause } from '../timers.ts'
import type { TrainingState } from './training-status.ts'

/** The part of the membership view the end of a run reads. */
export interface RunEndView {
  live(): ReadonlyArray<{ readonly stage: number, readonly state: TrainingState }>
  /** Push this node's heartbeat now. */
  publish(): void
}

export interface RunEndInit {
  readonly view: RunEndView
  readonly heartbeatMs: number
  readonly lingerMs: number
  readonly signal: AbortSignal
  readonly log: Logger
}

export class RunEnd {
  private seenStage0Done = false

  constructor (private readonly init: RunEndInit) {}

  /**
   * Stage >= 1: whether the run is over for this node now (`inFlight` microbatches still here
   * keep it going). Call periodically while training.
   */
  downstreamDone (inFlight: number): boolean {
    const origins = this.init.view.live().filter(e => e.stage === 0)
    if (origins.some(e => e.state === 'done')) this.seenStage0Done = true
    return this.seenStage0Done && inFlight === 0 && origins.every(e => e.state === 'done' || e.state === 'failed')
  }

  /** After this node is done: tell the swarm, and wait until every known peer reports done (they saw our state), at most lingerMs. */
  async linger (): Promise<void> {
    const { view, signal } = this.init
    view.publish()
    const until = Date.now() + this.init.lingerMs
    while (Date.now() < until && !signal.aborted) {
      if (view.live().every(e => e.state === 'done' || e.state === 'failed')) {
        // one more heartbeat so late listeners see us done
        view.publish()
        await pause(Math.min(1000, this.init.heartbeatMs), signal)
        return
      }
      await pause(100, signal)
    }
  }
}
