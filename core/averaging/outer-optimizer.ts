// The DiLoCo outer optimizer of 'pseudo-grad' averaging. Per stage it keeps theta_start (the
// parameters every member agreed on at the last round) and a momentum buffer. A round averages the
// pseudo-gradient g = theta_start - theta_local; the outer step is Nesterov SGD:
//   m = mu m + g;  theta = theta_start - lr (g + mu m);  theta_start = theta
// The first round of a stage averages the parameters themselves, to agree on theta_start.
import { AveragingConfigError } from './errors.ts'

export interface OuterOptimizerOptions {
  /** Outer learning rate (DiLoCo: 0.7). */
  readonly lr: number
  /** Nesterov momentum (DiLoCo: 0.9). */
  readonly momentum: number
}

export interface OuterState {
  start: Float32Array
  momentum: Float32Array
}

export class OuterOptimizer {
  private readonly states = new Map<number, OuterState>()
  private readonly o: OuterOptimizerOptions

  constructor (options?: OuterOptimizerOptions) {
    this.o = options ?? { lr: 0.7, momentum: 0.9 }
  }

  /** Whether the stage has had its first (parameter-averaging) round. */
  has (stage: number): boolean {
    return this.states.has(stage)
  }

  /** After the first round: the averaged parameters become theta_start, momentum zero. */
  begin (stage: number, averaged: Float32Array): void {
    this.states.set(stage, { start: averaged.slice(), momentum: new Float32Array(averaged.length) })
  }

  /** theta_start - params, the vector the round averages. */
  pseudoGradient (stage: number, params: Float32Array): Float32Array {
    const state = this.require(stage)
    if (state.start.length !== params.length) throw new AveragingConfigError(`stage ${stage} has ${params.length} parameters, its last round had ${state.start.length}`)
    const delta = new Float32Array(params.length)
    for (let i = 0; i < delta.length; i++) delta[i] = state.start[i] - params[i]
    return delta
  }

  /** The outer step on the averaged pseudo-gradient `g`: the new parameters (also the next theta_start). */
  step (stage: number, g: Float32Array): Float32Array {
    const state = this.require(stage)
    const { lr, momentum: mu } = this.o
    const m = state.momentum
    const theta = new Float32Array(g.length)
    for (let i = 0; i < theta.length; i++) {
      m[i] = mu * m[i] + g[i]
      theta[i] = state.start[i] - lr * (g[i] + mu * m[i])
    }
    state.start = theta.slice()
    return theta
  }

  stateOf (stage: number): OuterState | undefined {
    return this.states.get(stage)
  }

  /** A joiner's state, synced from peers. */
  setState (stage: number, start: Float32Array, momentum: Float32Array): void {
    if (start.length !== momentum.length) throw new AveragingConfigError('start and momentum differ in length')
    this.states.set(stage, { start: start.slice(), momentum: momentum.slice() })
  }

  private require (stage: number): OuterState {
    const s = this.states.get(stage)
    if (s == null) throw new AveragingConfigError(`stage ${stage} has no outer-optimizer state yet`)
    return s
  }
}
