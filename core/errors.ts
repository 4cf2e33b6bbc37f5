// Typed errors. One class per condition, each with a stable `code` and a clear default message.
// Areas define their own subclasses next to their code (e.g. core/node/plugin-errors.ts) and
// extend LayerswarmError so callers can branch on `code` and CLIs can map to exit codes.

export class LayerswarmError extends Error {
  readonly code: string
  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** Bad user input: flags, config files, multiaddrs, manifests. The CLI exits 2 on these. */
export class ConfigError extends LayerswarmError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', message, options)
  }
}

/** A tensor of the wrong shape, size or dtype was given to a kernel or a layer. */
export class ShapeError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_SHAPE', message)
  }
}

/** Non-finite values (NaN/Inf) where finite values are required. */
export class NonFiniteError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_NON_FINITE', message)
  }
}

/** Encoded bytes that cannot be decoded (truncated, corrupted, unknown codec id). */
export class CodecError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_CODEC', message)
  }
}

/** The operation was aborted through an AbortSignal. */
export class AbortError extends LayerswarmError {
  constructor (message = 'The operation was aborted') {
    super('ERR_ABORTED', message)
  }
}
