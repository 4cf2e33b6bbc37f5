// What a third-party plugin imports from `layerswarm/contracts`: the error classes the contracts tell
// implementers to throw and the shared kernel argument checks, as the built-in plugins use them.
import assert from 'node:assert/strict'
import * as contracts from '../core/contracts/index.ts'
import * as errors from '../core/errors.ts'

describe('contracts: what plugins get from layerswarm/contracts', function () {
  it('exports the error classes implementers throw, identical to core\'s', function () {
    for (const name of ['LayerswarmError', 'ConfigError', 'ShapeError', 'NonFiniteError', 'CodecError', 'AbortError'] as const) {
      assert.equal(contracts[name], errors[name], name)
    }
    const e = new contracts.ShapeError('bad')
    assert.ok(e instanceof contracts.LayerswarmError)
    assert.equal(e.code, 'ERR_SHAPE')
    assert.equal(new contracts.CodecError('x').code, 'ERR_CODEC')
  })

  it('exports the kernel argument checks, which throw ShapeError naming the problem', function () {
    assert.equal(contracts.kernelChecks.checkShapeArg([2, 3]), 6)
    assert.throws(() => contracts.kernelChecks.checkShapeArg([2, -1]), (err: unknown) => err instanceof contracts.ShapeError && /not a non-negative integer/.test((err as Error).message))
    assert.throws(() => contracts.kernelChecks.checkShapeArg([]), contracts.ShapeError)
  })
})
