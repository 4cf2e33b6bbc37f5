// A pipeline hop's round trip, split: the reply carries the downstream's own time (`computeMs`: from
// its request fully read to its reply sent, i.e. its compute and the hops behind it), so the sender
// can tell that service time from the network's share. The router keeps the service time per peer
// and the hop deadline adds the network's share from core/net/peer-timing.ts once, instead of
// counting the network twice (in the round trip and again in the network term). A peer that reports
// nothing (an older version) or a value that cannot be (not a number, negative, longer than the whole
// round trip) keeps the old rule: the whole round trip is its service time. A peer that under-reports
// only shortens its own deadline; over-reporting is capped at the round trip (the old rule).
//
// Pure arithmetic: no timers, no I/O.

/** The metadata field of a reply that carries the downstream's time (ms). */
export const COMPUTE_MS_FIELD = 'computeMs'

export interface HopSplit {
  /** What the downstream spent on the microbatch (ms). */
  readonly serviceMs: number
  /** The rest of the round trip: opening the stream, the bytes both ways, the links' delay (ms). */
  readonly networkMs: number
}

/** Splits a hop that took `totalMs` by the reply's reported `computeMs`; undefined when the report is absent or impossible. */
export function splitHop (totalMs: number, reported: unknown): HopSplit | undefined {
  if (!(Number.isFinite(totalMs) && totalMs >= 0)) return undefined
  if (typeof reported !== 'number' || !Number.isFinite(reported) || reported < 0 || reported > totalMs) return undefined
  return { serviceMs: reported, networkMs: totalMs - reported }
}

/**
 * A round-trip sample from a hop's network share: less the time its `bytes` (both ways) take at
 * `throughput` bytes/s; undefined when nothing is left (the transfer estimate ate it all).
 */
export function hopRttSample (split: HopSplit, bytes: number, throughput: number): number | undefined {
  const transferMs = throughput > 0 && Number.isFinite(throughput) ? Math.max(0, bytes) * 1000 / throughput : Infinity
  const rtt = split.networkMs - transferMs
  return Number.isFinite(rtt) && rtt > 0 ? rtt : undefined
}
