// Averaging within a stage: DHT group formation (Moshpit grid), butterfly all-reduce, the round
// driver (parameter or DiLoCo pseudo-gradient averaging), and state sync for joiners.
export * from './errors.ts'
export * from './codecs.ts'
export * from './group.ts'
export * from './butterfly.ts'
export * from './averager.ts'
export * from './state-format.ts'
export * from './state-sync.ts'
