// Types-only contracts (plus the token constants and definePlugin) that plugins depend on.
export * from './plugin.ts'
export * from './logger.ts'
export * from './tokens.ts'
export * from './backend.ts'
export * from './codec.ts'
export * from './scheduler.ts'
