// One judge per node: verdicts carried by errors become one penalty count, reach every sink, and
// lower the gossipsub score (core/peer-judge.ts, core/errors.ts).
import assert from 'node:assert/strict'
import { AbortError, CodecError, NonFiniteError, ShapeError, verdictOf } from '../core/errors.ts'
import { ChecksumError, PeerResetError, RemoteError } from '../core/wire/errors.ts'
import { InvalidMicrobatchError, StageMismatchError } from '../core/pipeline/errors.ts'
import { ShardStatsMismatchError, RoundMismatchError } from '../core/averaging/errors.ts'
import { PeerJudge, type Judgement } from '../core/peer-judge.ts'

describe('verdicts and the peer judge', () => {
  it('each error class carries its verdict where it is declared', () => {
    for (const e of [new ChecksumError('payload', 1, 2), new NonFiniteError('x'), new CodecError('x'), new ShapeError('x'), new InvalidMicrobatchError('x'), new ShardStatsMismatchError('x')]) {
      assert.equal(verdictOf(e), 'reject', e.name)
    }
    for (const e of [new PeerResetError(), new RemoteError('ERR_X', 'x'), new StageMismatchError(1, 2), new RoundMismatchError('x')]) {
      assert.equal(verdictOf(e), 'ignore', e.name)
    }
    for (const e of [new AbortError(), new Error('plain'), 'a string', null]) assert.equal(verdictOf(e), 'none')
  })

  it('counts rejects once per judgement, tells every sink, and lowers the score within gossipsub bounds', () => {
    const judge = new PeerJudge()
    const seen: Judgement[] = []
    const off = judge.onJudgement(j => { seen.push(j) })
    assert.equal(judge.judge('a', new ChecksumError('payload', 1, 2), 'pipeline', 1), 'reject')
    assert.equal(judge.judge('a', new PeerResetError(), 'averaging'), 'ignore')
    assert.equal(judge.judge('b', new AbortError(), 'pipeline', 1), 'none')
    assert.deepEqual(judge.penalties(), { total: 1, byPeer: { a: 1 } })
    assert.deepEqual(seen.map(j => [j.peer, j.verdict, j.area, j.code, j.stage]), [
      ['a', 'reject', 'pipeline', 'ERR_WIRE_CHECKSUM', 1],
      ['a', 'ignore', 'averaging', 'ERR_WIRE_RESET', undefined]
    ])
    assert.equal(judge.score('a'), -0.5)
    assert.equal(judge.score('b'), 0)
    for (let i = 0; i < 100; i++) judge.record({ peer: 'c', verdict: 'reject', area: 'verification', code: 'ERR_X' })
    assert.equal(judge.penaltiesOf('c'), 100)
    assert.equal(judge.score('c'), -8, 'capped at the graylist threshold over the weight')
    off()
    judge.judge('a', new CodecError('x'), 'pipeline', 1)
    assert.equal(seen.length, 2 + 100, 'no judgements after unsubscribing')
  })
})
