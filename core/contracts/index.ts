// The contracts plugins depend on: types, the token constants and definePlugin, plus what the
// contracts tell implementers to use: the error classes they throw (ShapeError from kernels, CodecError
// from decoders, ...) and the shared kernel argument checks, so a third-party backend rejects bad
// arguments exactly as the built-in ones do.
export * from './plugin.ts'
export * from './logger.ts'
export * from './tokens.ts'
export * from './backend.ts'
export * from './codec.ts'
export * from './scheduler.ts'
export * from './membership.ts'
export * from './role.ts'
export * from './admission.ts'
export { LayerswarmError, ConfigError, ShapeError, NonFiniteError, CodecError, AbortError, verdictOf } from '../errors.ts'
export type { Verdict } from '../errors.ts'
export * as kernelChecks from '../kernel-checks.ts'
