// The end of a run (docs/pipeline.md, "Ending a run"), read from the membership view:
//
//   stage 0      after its last step and eval it reports done, then lingers (at most lingerMs)
//                until every known peer reports done, so late listeners see it done
//   stage >= 1   ends when every live stage-0 peer reports done (and one was seen done) and no
//                microbatch is in flight here: the last partial step is applied, then it reports
//                done and lingers the same way; microbatches still here `graceMs` after the
//                last stage-0 peer reported done do not keep it going (a peer that holds an
//                inbound stream open must not keep a node from ever ending: the stage server
//                aborts what is left when the node stops)
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
  /** How long in-flight microbatches may keep a stage >= 1 node going once every stage-0 peer is done (ms). Default 20 s. */
  readonly graceMs?: number
}

export const DEFAULT_RUN_END_GRACE_MS = 20_000

export class RunEnd {
  private seenStage0Done = false
  /** When every stage-0 peer was first seen done with microbatches still here (ms since epoch). */
  private heldSince: number | undefined

  constructor (private readonly init: RunEndInit) {}

  /**
   * Stage >= 1: whether the run is over for this node now (`inFlight` microbatches still here
   * keep it going). Call periodically while training.
   */
  downstreamDone (inFlight: number): boolean {
    const origins = this.init.view.live().filter(e => e.stage === 0)
    if (origins.some(e => e.state === 'done')) this.seenStage0Done = true
    const over = this.seenStage0Done && origins.every(e => e.state === 'done' || e.state === 'failed')
    if (!over) {
      this.heldSince = undefined
      return false
    }
    if (inFlight === 0) return true
    const now = Date.now()
    this.heldSince ??= now
    if (now - this.heldSince < (this.init.graceMs ?? DEFAULT_RUN_END_GRACE_MS)) return false
    this.init.log.warn('run over with microbatches still in flight here: ending anyway', { inFlight, graceMs: this.init.graceMs ?? DEFAULT_RUN_END_GRACE_MS })
    return true
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
