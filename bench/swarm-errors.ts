// The one error of `layerswarm bench swarm`'s runs: a process failed, stalled or answered nonsense.
import { LayerswarmError } from '../core/errors.ts'

export class SwarmBenchError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_BENCH_SWARM', message)
    this.name = 'SwarmBenchError'
  }
}
