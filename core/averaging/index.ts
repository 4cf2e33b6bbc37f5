// Averaging within a stage: DHT group formation (Moshpit grid), butterfly all-reduce (one round's
// runner and the messages), the averaging service (parameter or DiLoCo pseudo-gradient averaging),
// and state sync for joiners.
export * from './errors.ts'
export * from './group.ts'
export * from './butterfly.ts'
export * from './all-reduce-round.ts'
export * from './robust-shard.ts'
export * from './averager.ts'
export * from './state-format.ts'
export * from './state-sync.ts'
// the codecs adapter for the averaging roles (core/codecs/tensor-codecs.ts), for callers that import it from here
export { shardCodecs, type AveragingRole } from '../codecs/tensor-codecs.ts'
export * from './state-server.ts'
