// Membership heartbeats: what each node gossips on `/layerswarm/<runId>/members/1.0.0` every
// interval, the bytes (compact JSON, fixed key order, at most MAX_HEARTBEAT_BYTES), and the checks a
// received one must pass before it enters the view. Pure: no networking, the clock is a parameter.
//
// Authenticity: gossipsub's StrictSign policy signs every message with the publisher's libp2p key
// and verifies it (dropping bad signatures with a score penalty) before our validator runs; the
// validator then requires `from` == payload `peer`, which binds the payload to its signer. So no
// second signature is carried. A heartbeat stored or relayed outside gossipsub (DHT records) would
// need its own signature over encodeHeartbeat()'s canonical bytes: see docs/scheduler.md.
import type { Member } from '../contracts/membership.ts'
import {
  HeartbeatFromFutureError, HeartbeatMalformedError, HeartbeatReplayError, HeartbeatSenderMismatchError,
  HeartbeatStaleError, HeartbeatValueError, HeartbeatWrongRunError
} from './errors.ts'

export const HEARTBEAT_FORMAT = 1
/** Largest heartbeat accepted, bytes (a real one is ~330). */
export const MAX_HEARTBEAT_BYTES = 1024
/** Upper bounds of sane values; above them a heartbeat is REJECTed as absurd. */
export const MAX_THROUGHPUT = 1e6
export const MAX_QUEUE = 1_000_000
export const MAX_STEP = 2 ** 40
export const MAX_STAGES = 1024
/** Largest memory budget a heartbeat may claim (1 PiB, core/model/memory-estimate.ts MAX_MEMORY_BYTES). */
export const MAX_MEMORY = 2 ** 50

/** A member's record as published: the member without its receive time, plus format and run. */
export interface Heartbeat extends Omit<Member, 'seen'> {
  readonly v: typeof HEARTBEAT_FORMAT
  /** Run id (the manifest hash). */
  readonly run: string
}

/** The gossip topic of a run's membership. */
export function membersTopic (runId: string): string {
  return `/layerswarm/${runId}/members/1.0.0`
}

const KEYS = ['v', 'run', 'peer', 'stage', 'to', 'state', 'pinned', 'since', 'tput', 'mem', 'phase', 'step', 'throughput', 'queue', 'version', 'time', 'seq'] as const
const REQUIRED = new Set<string>(KEYS.filter(k => k !== 'to' && k !== 'mem'))
const STATES: ReadonlySet<string> = new Set(['joining', 'serving', 'leaving'])
const PHASES: ReadonlySet<string> = new Set(['starting', 'waiting-peers', 'training', 'done', 'failed'])
const PEER_RE = /^[A-Za-z0-9]{1,128}$/
const RUN_RE = /^[A-Za-z0-9._-]{1,64}$/
const VERSION_RE = /^[\x20-\x7e]{1,32}$/

/** Canonical bytes: fixed key order, no whitespace (also what an explicit signature would cover). */
export function encodeHeartbeat (hb: Heartbeat): Uint8Array {
  const o: Record<string, unknown> = {}
  for (const k of KEYS) if (hb[k] !== undefined) o[k] = hb[k]
  const bytes = new TextEncoder().encode(JSON.stringify(o))
  if (bytes.byteLength > MAX_HEARTBEAT_BYTES) throw new HeartbeatMalformedError(`encoded size ${bytes.byteLength} exceeds ${MAX_HEARTBEAT_BYTES} bytes`)
  return bytes
}

/**
 * Parse and range-check a heartbeat for a run of `stages` stages. Throws HeartbeatMalformedError
 * (not a heartbeat) or HeartbeatValueError (impossible values).
 */
export function decodeHeartbeat (data: Uint8Array, stages: number): Heartbeat {
  if (data.byteLength > MAX_HEARTBEAT_BYTES) throw new HeartbeatMalformedError(`${data.byteLength} bytes, more than ${MAX_HEARTBEAT_BYTES}`)
  let o: unknown
  try {
    o = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data))
  } catch {
    throw new HeartbeatMalformedError('not UTF-8 JSON')
  }
  if (o == null || typeof o !== 'object' || Array.isArray(o)) throw new HeartbeatMalformedError('not a JSON object')
  const h = o as Record<string, unknown>
  for (const k of Object.keys(h)) if (!(KEYS as readonly string[]).includes(k)) throw new HeartbeatMalformedError(`unknown field "${k}"`)
  for (const k of REQUIRED) if (!Object.hasOwn(h, k)) throw new HeartbeatMalformedError(`missing field "${k}"`)
  if (h.v !== HEARTBEAT_FORMAT) throw new HeartbeatMalformedError(`format version ${String(h.v)}, expected ${HEARTBEAT_FORMAT}`)
  const str = (k: string, re: RegExp): void => { if (typeof h[k] !== 'string' || !re.test(h[k])) throw new HeartbeatMalformedError(`field "${k}" is not a valid string`) }
  const int = (k: string): number => {
    const v = h[k]
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new HeartbeatMalformedError(`field "${k}" is not an integer`)
    return v
  }
  // JSON has no NaN/Infinity: a non-number here is malformed, a number out of range is absurd
  const rate = (k: string): void => {
    const v = h[k]
    if (typeof v !== 'number') throw new HeartbeatMalformedError(`field "${k}" is not a number`)
    if (!Number.isFinite(v) || v < 0 || v > MAX_THROUGHPUT) throw new HeartbeatValueError(k, `${v} is outside [0, ${MAX_THROUGHPUT}]`)
  }
  str('run', RUN_RE)
  str('peer', PEER_RE)
  str('version', VERSION_RE)
  if (typeof h.state !== 'string' || !STATES.has(h.state)) throw new HeartbeatMalformedError('field "state" is not joining, serving or leaving')
  if (typeof h.phase !== 'string' || !PHASES.has(h.phase)) throw new HeartbeatMalformedError(`field "phase" is not one of ${[...PHASES].join(', ')}`)
  if (typeof h.pinned !== 'boolean') throw new HeartbeatMalformedError('field "pinned" is not a boolean')
  if (typeof h.tput !== 'number' || typeof h.throughput !== 'number') throw new HeartbeatMalformedError(`field "${typeof h.tput !== 'number' ? 'tput' : 'throughput'}" is not a number`)
  const stage = int('stage')
  const step = int('step')
  const queue = int('queue')
  const time = int('time')
  const since = int('since')
  const seq = int('seq')

  rate('tput')
  rate('throughput')
  if (stage < -1 || stage >= stages) throw new HeartbeatValueError('stage', `${stage} is outside [-1, ${stages - 1}]`)
  if (stage === -1 && h.state !== 'joining') throw new HeartbeatValueError('stage', `-1 (unassigned) with state ${h.state as string}`)
  if (h.to !== undefined) {
    const to = int('to')
    if (h.state !== 'leaving') throw new HeartbeatValueError('to', 'a move target outside the leaving state')
    if (to < 0 || to >= stages || to === stage) throw new HeartbeatValueError('to', `${to} is not another stage in [0, ${stages - 1}]`)
  }
  if (step < 0 || step > MAX_STEP) throw new HeartbeatValueError('step', `${step} is outside [0, ${MAX_STEP}]`)
  if (queue < 0 || queue > MAX_QUEUE) throw new HeartbeatValueError('queue', `${queue} is outside [0, ${MAX_QUEUE}]`)
  if (time < 0) throw new HeartbeatValueError('time', 'negative')
  if (since < 0 || since > time) throw new HeartbeatValueError('since', `${since} is not in [0, time]`)
  if (seq < 0) throw new HeartbeatValueError('seq', 'negative')
  if (h.mem !== undefined) {
    const mem = int('mem')
    if (mem < 1 || mem > MAX_MEMORY) throw new HeartbeatValueError('mem', `${mem} is outside [1, ${MAX_MEMORY}]`)
  }
  if (h.pinned === true && stage === -1) throw new HeartbeatValueError('pinned', 'a pinned node without a stage')
  return h as unknown as Heartbeat
}

export interface HeartbeatCheck {
  readonly runId: string
  readonly stages: number
  /** Local clock, unix ms. */
  readonly now: number
  /** Heartbeats older than this are stale. */
  readonly ttlMs: number
  /** How far ahead of `now` a heartbeat's time may be. */
  readonly maxSkewMs: number
  /** The gossip message's verified signer. */
  readonly from: string
  /** The last seq accepted from that peer, if any. */
  readonly lastSeq?: number
}

/**
 * Every check of a received heartbeat, REJECT conditions first (a message that is both forged and
 * stale must still cost its sender). Returns the heartbeat or throws a HeartbeatError subclass.
 */
export function validateHeartbeat (data: Uint8Array, check: HeartbeatCheck): Heartbeat {
  const hb = decodeHeartbeat(data, check.stages)
  if (hb.peer !== check.from) throw new HeartbeatSenderMismatchError(check.from, hb.peer)
  if (hb.run !== check.runId) throw new HeartbeatWrongRunError(check.runId, hb.run)
  if (hb.time - check.now > check.maxSkewMs) throw new HeartbeatFromFutureError(hb.time - check.now)
  if (check.now - hb.time > check.ttlMs) throw new HeartbeatStaleError(check.now - hb.time)
  if (check.lastSeq !== undefined && hb.seq <= check.lastSeq) throw new HeartbeatReplayError(hb.seq, check.lastSeq)
  return hb
}
