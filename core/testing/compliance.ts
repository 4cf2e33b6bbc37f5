// Backend compliance suite. Registers mocha `describe`/`it` blocks that check a ComputeBackend against
// the float64 references in reference.ts, one group of tests per file:
//   - memory and utilities (compliance-memory.ts): alloc, upload/download, write, free, call order,
//     fill/copy/scale/accumulate/sumSquares;
//   - every kernel's forward and backward against the reference, on several shapes including odd
//     ones, gradients pre-filled so accumulation (+=) is checked (compliance-kernels.ts);
//   - wrong shapes and dtypes throw ShapeError (code ERR_SHAPE) and leave outputs untouched; a failure
//     says what was thrown instead (compliance-context.ts);
//   - NaN/Inf propagate without throwing, and sumSquares reports them (compliance-nonfinite.ts);
//   - the reference backward itself against finite differences (compliance-references.ts);
//   - kernels leave the event loop free (compliance-event-loop.ts; opt out with `eventLoop: false`).
//
// Usage, in a mocha test file of a backend plugin:
//   import { backendCompliance } from 'layerswarm/testing'
//   backendCompliance('my-backend', () => createMyBackend())
import assert from 'node:assert/strict'
import type { ComputeBackend } from '../contracts/index.ts'
import { suiteContext, type ComplianceOptions } from './compliance-context.ts'
import { eventLoopTests } from './compliance-event-loop.ts'
import { flashAttentionTests } from './compliance-flash.ts'
import { kernelTests } from './compliance-kernels.ts'
import { llamaKernelTests } from './compliance-llama.ts'
import { memoryTests } from './compliance-memory.ts'
import { nonFiniteTests } from './compliance-nonfinite.ts'
import { referenceTests } from './compliance-references.ts'

export type { ComplianceOptions } from './compliance-context.ts'

/** Registers the compliance suite for one backend under `describe('<name> backend compliance')`. */
export function backendCompliance (name: string, factory: () => Promise<ComputeBackend>, opts: ComplianceOptions = {}): void {
  describe(`${name} backend compliance`, function () {
    const ctx = suiteContext(opts)

    before(async function () { ctx.setUp(await factory()) })
    afterEach(function () { ctx.freeLive() })
    after(async function () { await ctx.backend()?.dispose() })

    it('reports info with a name', function () {
      assert.equal(typeof ctx.be.info.name, 'string')
      assert.ok(ctx.be.info.name.length > 0)
    })

    memoryTests(ctx)
    kernelTests(ctx)
    llamaKernelTests(ctx)
    flashAttentionTests(ctx)
    nonFiniteTests(ctx)
    referenceTests(ctx)
    if (opts.eventLoop !== false) eventLoopTests(ctx)
  })
}
