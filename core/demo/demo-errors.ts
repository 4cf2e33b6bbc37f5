// Typed errors of the demo launcher. Bad flags are ConfigErrors (the CLI exits 2); a swarm that
// cannot start or stops making progress is a runtime failure (exit 1).
import { ConfigError, LayerswarmError } from '../errors.ts'

/** A demo flag is out of range or inconsistent with another (e.g. fewer nodes than stages). */
export class DemoConfigError extends ConfigError {}

/** A node process of the demo swarm failed to start (exited, or printed no listening line in time). */
export class NodeLaunchError extends LayerswarmError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_NODE_LAUNCH', message, options)
  }
}

/** The swarm stopped making progress, lost a whole stage, or a node reported a failed run. */
export class SwarmRunError extends LayerswarmError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_SWARM_RUN', message, options)
  }
}
