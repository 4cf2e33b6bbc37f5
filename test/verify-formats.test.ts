// The formats and bookkeeping of evidence (no sockets): accusations round-trip and verify from the
// accuser's peer id alone, and every tampering, forgery or non-canonical form is a typed
// AccusationMalformedError; Convictions are permanent and first-wins; the work ledger counts each
// receipt once (microbatches and tokens per stage and kind) and checks per source; cryptoRandom is
// in range and unbiased enough to pick every option.
import assert from 'node:assert/strict'
import { utf8ToBytes } from '@noble/hashes/utils.js'
import { AccusationMalformedError, Convictions, WorkLedger, cryptoRandom, signAccusation, verifyAccusation, verifyCommitment } from '../core/verify/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'
import { producer, runHops, verifyManifest, type HopSet, type Producer } from './verify-helpers.ts'

describe('verify: accusation format, convictions, work ledger', () => {
  let set: HopSet
  let accuser: Producer

  before(async () => {
    const be = await createCpuBackend({ threads: 0 })
    try {
      set = await runHops(verifyManifest(3), be)
    } finally {
      await be.dispose()
    }
    accuser = await producer()
  })

  it('an accusation round-trips and verifies from the accuser\'s peer id', async () => {
    const commitment = set.hops.get('forward:1')!.record.commitment
    const bytes = await signAccusation({ kind: 'mismatch', accuser: accuser.id, commitment, time: 1_760_000_000_000 }, accuser.key)
    assert.ok(bytes.length < 1024, `${bytes.length} bytes`)
    const a = await verifyAccusation(bytes)
    assert.equal(a.kind, 'mismatch')
    assert.equal(a.accuser, accuser.id)
    assert.deepEqual(a.commitment, commitment)
  })

  it('tampered, forged, non-canonical or malformed accusations are AccusationMalformedError', async () => {
    const commitment = set.hops.get('backward:2')!.record.commitment
    const good = await signAccusation({ kind: 'withhold', accuser: accuser.id, commitment, time: 5 }, accuser.key)
    const text = new TextDecoder().decode(good)
    const other = await producer()
    const cases: Array<[string, Uint8Array]> = [
      ['kind changed', utf8ToBytes(text.replace('"withhold"', '"mismatch"'))],
      ['time changed', utf8ToBytes(text.replace('"time":5', '"time":6'))],
      ['accuser changed', utf8ToBytes(text.replace(accuser.id, other.id))],
      ['whitespace', utf8ToBytes(text.replace('{"v":1', '{ "v":1'))],
      ['keys reordered', utf8ToBytes(text.replace('{"v":1,"kind":"withhold"', '{"kind":"withhold","v":1'))],
      ['not JSON', utf8ToBytes('nope')],
      ['an array', utf8ToBytes('[]')],
      ['oversized', new Uint8Array(4096).fill(32)],
      ['unknown kind', utf8ToBytes(text.replace('"withhold"', '"lazy"'))]
    ]
    for (const [what, bytes] of cases) await assert.rejects(verifyAccusation(bytes), AccusationMalformedError, what)
    await assert.rejects(signAccusation({ kind: 'withhold', accuser: other.id, commitment, time: 5 }, accuser.key), AccusationMalformedError)
  })

  it('Convictions: permanent, the first one stands, listeners hear each once', () => {
    const cs = new Convictions()
    const heard: string[] = []
    cs.onConviction(c => heard.push(c.peer))
    const c = { peer: 'p', kind: 'mismatch' as const, detail: 'x', commitment: 'id', stage: 1, hop: 'forward' as const, by: 'self', at: 1 }
    assert.equal(cs.add(c), true)
    assert.equal(cs.add({ ...c, kind: 'withhold' }), false)
    assert.equal(cs.get('p')?.kind, 'mismatch')
    assert.deepEqual(heard, ['p'])
    assert.equal(cs.size, 1)
  })

  it('the work ledger counts each verified receipt once, with tokens, per stage and kind, and checks per source', async () => {
    const convictions = new Convictions()
    const ledger = new WorkLedger({ convictions })
    for (const k of ['forward:1', 'backward:1', 'forward:0']) {
      const { commitment: c } = await verifyCommitment(set.hops.get(k)!.record.commitment)
      assert.equal(ledger.receipt(c, 32), true)
      assert.equal(ledger.receipt(c, 32), false, 'a commitment counts once')
    }
    const p1 = set.producers[1].id
    ledger.check(p1, 'passed')
    ledger.check(p1, 'failed', 'accusation')
    ledger.accusation(p1, false)
    convictions.add({ peer: p1, kind: 'mismatch', detail: '', commitment: '', stage: 1, hop: 'forward', by: 'self', at: 0 })
    const s = ledger.status()
    assert.deepEqual(s.peers[p1].work, { 1: { forward: { microbatches: 1, tokens: 32 }, backward: { microbatches: 1, tokens: 32 } } })
    assert.deepEqual(s.peers[p1].checks, { own: { passed: 1, failed: 0, withheld: 0 }, accusation: { passed: 0, failed: 1, withheld: 0 } })
    assert.deepEqual(s.peers[p1].accusations, { upheld: 0, false: 1 })
    assert.equal(s.peers[p1].convicted, true)
    assert.equal(s.peers[set.producers[0].id].convicted, false)
    assert.deepEqual(s.totals, { microbatches: 3, tokens: 96, checks: { passed: 1, failed: 1, withheld: 0 }, copies: 0, convicted: 1 })
    JSON.stringify(s)
  })

  it('cryptoRandom stays in range and reaches every option', () => {
    const seen = new Set<number>()
    for (let i = 0; i < 400; i++) {
      const v = cryptoRandom(5)
      assert.ok(Number.isInteger(v) && v >= 0 && v < 5)
      seen.add(v)
    }
    assert.equal(seen.size, 5)
    assert.throws(() => cryptoRandom(0), RangeError)
  })
})
