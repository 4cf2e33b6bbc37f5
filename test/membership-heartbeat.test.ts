// Membership heartbeat bytes and validation (core/membership/heartbeat.ts): each refusal is its own
// typed error with the gossip verdict it maps to.
import assert from 'node:assert/strict'
import {
  decodeHeartbeat, encodeHeartbeat, heartbeatVerdict, HeartbeatError, MAX_HEARTBEAT_BYTES, membersTopic, membershipInit, validateHeartbeat,
  type Heartbeat, type HeartbeatCheck
} from '../core/membership/index.ts'
import { ConfigError } from '../core/errors.ts'

const NOW = 1_750_000_000_000
const PEER = '12D3KooWGzh8nT5UCwF3s3HsqhQ3nJT6oG3N1nQ4G8sKZGxK6vwX'
const hb = (over: Partial<Record<keyof Heartbeat, unknown>> = {}): Heartbeat => ({
  v: 1, run: 'run1', peer: PEER, stage: 1, state: 'serving', pinned: false, since: NOW - 5000, tput: 2.5, phase: 'training', step: 17, throughput: 1.25, queue: 3, version: '0.1.0', time: NOW, seq: 42, ...over
} as unknown as Heartbeat)
const check: HeartbeatCheck = { runId: 'run1', stages: 4, now: NOW, ttlMs: 20_000, maxSkewMs: 30_000, from: PEER }
const json = (o: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(o))

function refused (bytes: Uint8Array, c: Partial<HeartbeatCheck> = {}): { code: string, verdict: string } {
  try {
    validateHeartbeat(bytes, { ...check, ...c })
  } catch (err) {
    assert.ok(err instanceof HeartbeatError, `not a HeartbeatError: ${String(err)}`)
    return { code: err.code, verdict: heartbeatVerdict(err) }
  }
  assert.fail('the heartbeat was accepted')
}

describe('membership heartbeats', () => {
  it('names the topic after the run', () => {
    assert.equal(membersTopic('abc'), '/layerswarm/abc/members/1.0.0')
  })

  it('round-trips through compact, bounded bytes', () => {
    const h = hb({ state: 'leaving', to: 3 })
    const bytes = encodeHeartbeat(h)
    assert.ok(bytes.byteLength < 400, `${bytes.byteLength} bytes`)
    assert.deepEqual(decodeHeartbeat(bytes, 4), h)
    assert.deepEqual(validateHeartbeat(encodeHeartbeat(hb()), check), hb())
    // the encoding is canonical: the same fields in any order give the same bytes
    const shuffled = Object.fromEntries(Object.entries(h).reverse()) as unknown as Heartbeat
    assert.deepEqual(encodeHeartbeat(shuffled), bytes)
  })

  const cases: Array<[string, Uint8Array, string, string, Partial<HeartbeatCheck>?]> = [
    ['not JSON', new TextEncoder().encode('{"v":1'), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['oversized', new Uint8Array(MAX_HEARTBEAT_BYTES + 1).fill(32), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['a JSON array', json([1, 2]), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['an unknown field', json({ ...hb(), x: 1 }), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['a missing field', json({ ...hb(), seq: undefined }), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['NaN throughput (null in JSON)', json(hb({ tput: NaN })), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['a fractional stage', json(hb({ stage: 1.5 })), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['an unknown state', json(hb({ state: 'dancing' })), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['an unknown run phase', json(hb({ phase: 'resting' })), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['a fractional step', json(hb({ step: 2.5 })), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['a string throughput', json(hb({ throughput: '3' })), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['another format version', json(hb({ v: 2 })), 'ERR_MEMBER_HB_MALFORMED', 'reject'],
    ['negative throughput', json(hb({ tput: -1 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['absurd throughput', json(hb({ tput: 1e9 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['a negative pipeline rate', json(hb({ throughput: -0.5 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['a negative step', json(hb({ step: -1 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['an absurd step', json(hb({ step: 2 ** 41 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['stage out of range', json(hb({ stage: 4 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['stage -1 while serving', json(hb({ stage: -1 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['a huge queue', json(hb({ queue: 5_000_000 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['a move target outside leaving', json(hb({ to: 2 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['a move target equal to the stage', json(hb({ state: 'leaving', to: 1 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['since after time', json(hb({ since: NOW + 1 })), 'ERR_MEMBER_HB_VALUE', 'reject'],
    ['a payload peer other than the signer', encodeHeartbeat(hb({ peer: 'QmOtherPeer' })), 'ERR_MEMBER_HB_SENDER', 'reject'],
    ['another run', encodeHeartbeat(hb({ run: 'run2' })), 'ERR_MEMBER_HB_RUN', 'reject'],
    ['a time beyond the clock skew', encodeHeartbeat(hb({ time: NOW + 31_000 })), 'ERR_MEMBER_HB_FUTURE', 'reject'],
    ['a time older than the TTL', encodeHeartbeat(hb({ time: NOW - 21_000, since: 0 })), 'ERR_MEMBER_HB_STALE', 'ignore'],
    ['a seq not above the last accepted', encodeHeartbeat(hb()), 'ERR_MEMBER_HB_REPLAY', 'ignore', { lastSeq: 42 }],
    ['forged and stale at once (REJECT wins)', encodeHeartbeat(hb({ peer: 'QmOtherPeer', time: NOW - 60_000, since: 0 })), 'ERR_MEMBER_HB_SENDER', 'reject']
  ]
  for (const [what, bytes, code, verdict, c] of cases) {
    it(`refuses ${what}: ${code} -> ${verdict.toUpperCase()}`, () => {
      assert.deepEqual(refused(bytes, c), { code, verdict })
    })
  }

  it('accepts skew within bounds and a joiner without a stage', () => {
    assert.equal(validateHeartbeat(encodeHeartbeat(hb({ time: NOW + 29_000 })), check).seq, 42)
    assert.equal(validateHeartbeat(encodeHeartbeat(hb({ stage: -1, state: 'joining' })), check).stage, -1)
    assert.equal(validateHeartbeat(encodeHeartbeat(hb({ seq: 43 })), { ...check, lastSeq: 42 }).seq, 43)
  })

  it('maps an unexpected error (our bug) to IGNORE, never blaming the peer', () => {
    assert.equal(heartbeatVerdict(new TypeError('oops')), 'ignore')
  })
})

describe('membership settings from NodeConfig.runtime', () => {
  it('reads run id, stage count (CLI strings included) and the membership object', () => {
    const init = membershipInit({ runId: 'abc', stages: '4', membership: { intervalMs: 150, ttlMs: 8000, invalidMessageWeight: -0.5 } })
    assert.deepEqual({ ...init, log: undefined }, { runId: 'abc', stages: 4, intervalMs: 150, ttlMs: 8000, invalidMessageWeight: -0.5, log: undefined })
    assert.equal(membershipInit({ runId: 'abc' }), undefined, 'a node without a run has no membership')
  })

  it('refuses a bad run id, stage count or setting with ConfigError', () => {
    assert.throws(() => membershipInit({ runId: 'a b', stages: 2 }), ConfigError)
    assert.throws(() => membershipInit({ runId: 'a', stages: 0 }), ConfigError)
    assert.throws(() => membershipInit({ runId: 'a', stages: 2, membership: { intervalMs: 0 } }), ConfigError)
    assert.throws(() => membershipInit({ runId: 'a', stages: 2, membership: { ttlMs: 'long' } }), ConfigError)
  })
})
