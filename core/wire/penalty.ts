// What an error seen while taking a peer's frames says about that peer (Lodestar style: typed
// errors map to ACCEPT / IGNORE / REJECT). The pipeline and all-reduce feed `verdict` into peer
// scores and bans. Apply it only to errors raised while validating or receiving the peer's data:
// a NonFiniteError from this node's own math is not the peer's fault.

/**
 * - 'reject': the peer sent bytes an honest, up-to-date peer never sends (malformed, oversized,
 *   bad checksum under an authenticated channel, non-finite values, credit overrun): penalize and
 *   ban for a while.
 * - 'ignore': the exchange failed in a way honest peers also cause (crash, reset, slowness, other
 *   run or version, the peer's own failure report): drop the work, retry elsewhere, back off mildly.
 * - 'none': a local condition (our abort, our bug); the peer is not at fault.
 */
export type WireVerdict = 'reject' | 'ignore' | 'none'

const REJECT = new Set([
  'ERR_WIRE_MAGIC', 'ERR_WIRE_TOO_LARGE', 'ERR_WIRE_TRAILING', 'ERR_WIRE_FORMAT', 'ERR_WIRE_SHAPE',
  'ERR_WIRE_CHECKSUM', 'ERR_WIRE_CREDIT', 'ERR_WIRE_UNEXPECTED', 'ERR_NON_FINITE', 'ERR_CODEC'
])
const IGNORE = new Set([
  'ERR_WIRE_VERSION', 'ERR_WIRE_RUN', 'ERR_WIRE_TRUNCATED', 'ERR_WIRE_ENDED', 'ERR_WIRE_RESET',
  'ERR_WIRE_TIMEOUT', 'ERR_WIRE_REMOTE'
])

export function wireVerdict (err: unknown): WireVerdict {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return 'none'
  if (REJECT.has(code)) return 'reject'
  if (IGNORE.has(code)) return 'ignore'
  return 'none'
}
