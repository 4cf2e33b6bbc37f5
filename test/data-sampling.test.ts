// Token shards: reproducible microbatch sampling from (seed, node, step, micro), eval batches.
import assert from 'node:assert/strict'
import {
  batchSeed, below, CorpusTooSmallError, DataArgumentError, fnv1a64, splitmix64, TokenShard, type BatchKey
} from '../core/data/index.ts'

// Tokens 0..1009 (value = position) make every row's start visible.
const ramp = new TokenShard('train', Int32Array.from({ length: 1010 }, (_, i) => i), 1010)
const key: BatchKey = { seed: 42, nodeId: 'node-a', step: 3, micro: 1 }

describe('data: sampling', () => {
  it('implements the documented algorithms exactly (values computed independently in Python)', () => {
    assert.equal(fnv1a64(new TextEncoder().encode('')), 0xcbf29ce484222325n)
    assert.equal(fnv1a64(new TextEncoder().encode('a')), 0xaf63dc4c8601ec8cn)
    assert.equal(splitmix64(0n)(), 0xe220a8397b1dcdafn)
    assert.equal(batchSeed(key), 0x1900706326acc035n)
    const rng = splitmix64(batchSeed(key))
    assert.deepEqual([below(rng(), 1000), below(rng(), 1000), below(rng(), 1000)], [580, 778, 543])
    const batch = ramp.sampleBatch(key, 3, 10)
    assert.deepEqual([batch.inputs[0], batch.inputs[10], batch.inputs[20]], [580, 778, 543])
  })

  it('gives the same batch for the same key, and targets are inputs shifted by one', () => {
    const a = ramp.sampleBatch(key, 4, 16)
    const b = ramp.sampleBatch({ ...key }, 4, 16)
    assert.deepEqual(a, b)
    assert.equal(a.inputs.length, 4 * 16)
    for (let row = 0; row < 4; row++) {
      const start = a.inputs[row * 16]
      for (let t = 0; t < 16; t++) {
        assert.equal(a.inputs[row * 16 + t], start + t)
        assert.equal(a.targets[row * 16 + t], start + t + 1)
      }
    }
  })

  it('gives a different batch when any part of the key changes', () => {
    const base = ramp.sampleBatch(key, 4, 16).inputs
    for (const changed of [{ seed: 43 }, { seed: '42x' }, { nodeId: 'node-b' }, { step: 4 }, { micro: 0 }]) {
      assert.notDeepEqual(ramp.sampleBatch({ ...key, ...changed }, 4, 16).inputs, base, JSON.stringify(changed))
    }
  })

  it('covers the valid start positions, including the last window', () => {
    const small = new TokenShard('train', Uint8Array.from([5, 6, 7, 8, 9]), 256)
    const starts = new Set<number>()
    for (let step = 0; step < 200; step++) starts.add(small.sampleBatch({ ...key, step }, 1, 3).inputs[0])
    assert.deepEqual([...starts].sort(), [5, 6], 'length 5, T 3: windows start at 0 and 1 only')
  })

  it('reads held-out evaluation batches as consecutive non-overlapping windows', () => {
    const shard = new TokenShard('held-out', Uint16Array.from({ length: 101 }, (_, i) => i), 65536)
    assert.equal(shard.evalBatchCount(2, 10), 5)
    const b = shard.evalBatch(1, 2, 10)
    assert.deepEqual([...b.inputs], Array.from({ length: 20 }, (_, i) => 20 + i))
    assert.deepEqual([...b.targets], Array.from({ length: 20 }, (_, i) => 21 + i))
    assert.deepEqual([...shard.window(90, 10)], Array.from({ length: 11 }, (_, i) => 90 + i))
    assert.throws(() => shard.evalBatch(5, 2, 10), DataArgumentError)
    assert.throws(() => shard.window(91, 10), DataArgumentError)
  })

  it('rejects a split shorter than one window and bad arguments with typed errors', () => {
    const tiny = new TokenShard('held-out', Uint8Array.from([1, 2, 3]), 256)
    assert.throws(() => tiny.sampleBatch(key, 1, 3), (err: unknown) =>
      err instanceof CorpusTooSmallError && /held-out split has 3 tokens, fewer than the 4 needed/.test(err.message))
    assert.throws(() => tiny.evalBatch(0, 1, 3), CorpusTooSmallError)
    assert.throws(() => ramp.sampleBatch(key, 0, 8), DataArgumentError)
    assert.throws(() => ramp.sampleBatch(key, 2, 1.5), DataArgumentError)
    assert.throws(() => ramp.sampleBatch({ ...key, step: -1 }, 2, 8), DataArgumentError)
    assert.throws(() => ramp.sampleBatch({ ...key, micro: 0.5 }, 2, 8), DataArgumentError)
  })
})
