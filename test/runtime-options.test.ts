// Training options that shape the roles and the retry policy: `--role`, `--max-attempts`,
// `--peer-wait` (core/runtime/training-runtime.ts, core/pipeline/dispatch.ts).
import assert from 'node:assert/strict'
import { ConfigError } from '../core/errors.ts'
import { parseTrainingOptions } from '../core/runtime/training-runtime.ts'
import { DEFAULT_RETRY_POLICY, retryPolicy } from '../core/pipeline/dispatch.ts'

describe('runtime options: roles and the retry policy', () => {
  it('defaults to the stage role and the default retry policy', () => {
    const o = parseTrainingOptions({ stages: '2' })
    assert.deepEqual(o.roles, ['stage'])
    assert.equal(o.maxAttempts, DEFAULT_RETRY_POLICY.maxAttempts)
    assert.equal(o.peerWait, DEFAULT_RETRY_POLICY.peerWaitMs)
  })

  it('--role data pins stage 0 and implies the stage role; a list or a JSON array both work', () => {
    const o = parseTrainingOptions({ role: 'data' })
    assert.deepEqual(o.roles, ['stage', 'data'])
    assert.equal(o.stage, 0)
    assert.deepEqual(parseTrainingOptions({ role: ['stage', 'data', 'stage'] }).roles, ['stage', 'data'])
    assert.deepEqual(parseTrainingOptions({ role: ' stage , ' }).roles, ['stage'])
    assert.deepEqual(parseTrainingOptions({ role: 'validator' }).roles, ['validator'], 'a validator alone serves no stage')
    assert.deepEqual(parseTrainingOptions({ role: 'stage,validator' }).roles, ['stage', 'validator'])
  })

  it('refuses unknown roles, an empty list, and data with another stage, naming the flag', () => {
    assert.throws(() => parseTrainingOptions({ role: 'miner' }), (e: Error) => e instanceof ConfigError && /unknown role miner \(roles: stage, data, validator\)/.test(e.message))
    assert.throws(() => parseTrainingOptions({ role: '' }), (e: Error) => e instanceof ConfigError && /--role/.test(e.message))
    assert.throws(() => parseTrainingOptions({ role: 42 }), (e: Error) => e instanceof ConfigError && /--role/.test(e.message))
    assert.throws(() => parseTrainingOptions({ role: 'data', stage: '1' }), (e: Error) => e instanceof ConfigError && /only stage 0/.test(e.message))
  })

  it('--max-attempts and --peer-wait are checked integers', () => {
    const o = parseTrainingOptions({ maxAttempts: '5', peerWait: '250' })
    assert.equal(o.maxAttempts, 5)
    assert.equal(o.peerWait, 250)
    assert.throws(() => parseTrainingOptions({ maxAttempts: '0' }), /--max-attempts must be an integer >= 1/)
    assert.throws(() => parseTrainingOptions({ peerWait: '-1' }), /--peer-wait must be an integer >= 0/)
  })

  it('retryPolicy fills defaults and refuses impossible values', () => {
    assert.deepEqual(retryPolicy(), DEFAULT_RETRY_POLICY)
    assert.equal(retryPolicy({ maxAttempts: 7 }).maxAttempts, 7)
    assert.throws(() => retryPolicy({ maxAttempts: 1.5 }), ConfigError)
    assert.throws(() => retryPolicy({ peerWaitMs: Number.NaN }), ConfigError)
    assert.throws(() => retryPolicy({ pollMs: -1 }), ConfigError)
  })
})
