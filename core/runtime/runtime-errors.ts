// Typed errors of the training runtime's stage life cycle (core/runtime/stage-host.ts).
import { LayerswarmError } from '../errors.ts'

/** The scheduler asked this node to leave its stage after the run ended for it: it stays. */
export class MoveAfterRunError extends LayerswarmError {
  constructor (from: number, to: number, state: string) {
    super('ERR_MOVE_AFTER_RUN', `not moving from stage ${from} to ${to}: the run is ${state} here`)
  }
}

/** A stage state fetched from a peer does not fit this node's stage layout. */
export class StageStateMismatchError extends LayerswarmError {
  constructor (stage: number, peer: string, reason: string) {
    super('ERR_STAGE_STATE_MISMATCH', `state of stage ${stage} from ${peer} does not fit this stage: ${reason}`)
  }
}
