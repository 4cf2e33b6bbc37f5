// Typed errors. One class per condition, each with a stable `code` and a clear default message.
// Areas define their own subclasses next to their code (e.g. core/node/plugin-errors.ts) and
// extend LayerswarmError so callers can branch on `code` and CLIs can map to exit codes.
//
// Each class also says, where it is declared, whose fault the condition is when it is raised on a
// peer's data (Lodestar's GossipActionError style): its `verdict`. Callers apply a verdict only to
// errors raised while taking a peer's data (a NonFiniteError from this node's own math is nobody's
// verdict); core/peer-judge.ts turns verdicts into penalties, bans and scores in one place.

/**
 * - 'reject': the peer sent what an honest, up-to-date peer never sends (malformed, oversized, bad
 *   checksum, non-finite values, credit overrun, a failed check of its work): penalize and ban.
 * - 'ignore': the exchange failed in a way honest peers also cause (crash, reset, slowness, another
 *   run or version, the peer's own failure report): drop the work, retry elsewhere, back off mildly.
 * - 'none': a local condition (our abort, our bug, a drop behind the peer); the peer is not at fault.
 */
export type Verdict = 'reject' | 'ignore' | 'none'

export class LayerswarmError extends Error {
  readonly code: string
  /** What this error says about the peer whose data raised it (see Verdict). */
  readonly verdict: Verdict
  constructor (code: string, message: string, options?: { cause?: unknown, verdict?: Verdict }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
    this.verdict = options?.verdict ?? 'none'
  }
}

/** The verdict an error carries; anything that is not a LayerswarmError (our bug) is 'none'. */
export function verdictOf (err: unknown): Verdict {
  return err instanceof LayerswarmError ? err.verdict : 'none'
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
    // a kernel's own misuse is caught before any peer is judged: only inbound checks raise it on a peer's data
    super('ERR_SHAPE', message, { verdict: 'reject' })
  }
}

/** Non-finite values (NaN/Inf) where finite values are required. */
export class NonFiniteError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_NON_FINITE', message, { verdict: 'reject' })
  }
}

/** Encoded bytes that cannot be decoded (truncated, corrupted, unknown codec id). */
export class CodecError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_CODEC', message, { verdict: 'reject' })
  }
}

/** The operation was aborted through an AbortSignal. */
export class AbortError extends LayerswarmError {
  constructor (message = 'The operation was aborted') {
    super('ERR_ABORTED', message)
  }
}
