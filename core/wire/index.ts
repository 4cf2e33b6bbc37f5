// The wire layer shared by the pipeline, codecs and all-reduce: transfer header and frames,
// incremental decoding, framed libp2p streams with credit flow control, protocol helpers.
export * from './errors.ts'
export * from './checksum.ts'
export * from './header.ts'
export * from './decoder.ts'
export * from './finite.ts'
export * from './framed-stream.ts'
export * from './stream-options.ts'
export * from './protocol.ts'
export * from './budget.ts'
export * from './rate-limit.ts'
