// `layerswarm/testing`: the backend compliance suite and the float64 reference kernels it checks
// against, and the training-parity suite (the backend trains to the CPU backend's loss curve). Plugin
// authors run `backendCompliance('my-backend', () => createMyBackend())` and
// `trainingParity('my-backend', () => createMyBackend())` in a mocha test.
export { backendCompliance } from './compliance.ts'
export { trainingParity, trainingLosses, type TrainingParityOptions } from './training-parity.ts'
export type { ComplianceOptions } from './compliance-context.ts'
export { assertEventLoopFree, measureEventLoop, type EventLoopReport, type EventLoopTry } from './compliance-event-loop.ts'
export * as reference from './reference.ts'
export { rng, randF32, randInts, assertClose, numericGrad } from './gradcheck.ts'
export { codecCompliance, assertWithinBound, type CodecComplianceOptions } from './codec-compliance.ts'
