// The scheduler plugin's options (plugins/scheduler/index.ts schedulerInit): plugin options over
// NodeConfig.runtime, bad values refused with ConfigError naming the option.
import assert from 'node:assert/strict'
import { schedulerInit } from '../plugins/scheduler/index.ts'
import { ConfigError } from '../core/errors.ts'

describe('scheduler plugin options', () => {
  it('reads run id, stage count and pin from NodeConfig.runtime, CLI strings included', () => {
    const init = schedulerInit({ heartbeatMs: 1000 }, { runId: 'abc', stages: '4', stage: '2' })
    assert.equal(init.runId, 'abc')
    assert.equal(init.stages, 4)
    assert.equal(init.pinnedStage, 2)
    assert.equal(init.heartbeatMs, 1000)
    assert.equal(schedulerInit({ runId: 'abc', stages: 3 }).pinnedStage, undefined)
  })

  it('refuses a missing run id, a bad stage count, a pin out of range and bad numbers with ConfigError', () => {
    assert.throws(() => schedulerInit({ stages: 2 }), ConfigError)
    assert.throws(() => schedulerInit({ runId: 'a', stages: 0 }), ConfigError)
    assert.throws(() => schedulerInit({ runId: 'a', stages: 2, stage: 2 }), ConfigError)
    assert.throws(() => schedulerInit({ runId: 'a', stages: 2, hysteresis: 'high' }), ConfigError)
    assert.throws(() => schedulerInit({ runId: 'a', stages: 2, stageCosts: [1] }), ConfigError)
  })
})
