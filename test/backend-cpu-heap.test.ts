// The CPU backend's allocator over shared wasm memory: aligned, non-overlapping blocks, reuse of
// freed blocks with coalescing, growth on demand, and a typed error past the wasm32 limit.
import assert from 'node:assert/strict'
import { Heap } from '../plugins/backend-cpu/heap.ts'
import { createSharedMemory } from '../plugins/backend-cpu/wasm.ts'

describe('cpu backend heap', function () {
  it('hands out 64-byte aligned, non-overlapping blocks, never offset 0', function () {
    const heap = new Heap(createSharedMemory(1))
    const blocks = [1, 64, 65, 1000, 3].map(n => ({ off: heap.alloc(n), n }))
    for (const b of blocks) {
      assert.ok(b.off > 0 && b.off % 64 === 0, `offset ${b.off}`)
    }
    const sorted = [...blocks].sort((a, b) => a.off - b.off)
    for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i - 1].off + sorted[i - 1].n <= sorted[i].off, 'blocks overlap')
  })

  it('reuses a freed block, and coalesces neighbours into one block', function () {
    const heap = new Heap(createSharedMemory(1))
    const a = heap.alloc(128); const b = heap.alloc(128); const c = heap.alloc(128); heap.alloc(64) // keeps c off the top
    heap.release(b, 128)
    assert.equal(heap.alloc(100), b, 'first fit reuses the freed block')
    heap.release(a, 128)
    heap.release(b, 128)
    heap.release(c, 128)
    assert.equal(heap.alloc(384), a, 'three adjacent freed blocks serve one allocation of their total size')
  })

  it('returns a freed block at the top to the bump region', function () {
    const heap = new Heap(createSharedMemory(1))
    heap.alloc(64)
    const top = heap.reserved
    const x = heap.alloc(4096)
    heap.release(x, 4096)
    assert.equal(heap.reserved, top)
  })

  it('grows the memory on demand, keeping earlier contents', function () {
    const memory = createSharedMemory(1)
    const heap = new Heap(memory)
    const a = heap.alloc(16)
    new Float32Array(memory.buffer, a, 4).set([1, 2, 3, 4])
    const before = memory.buffer.byteLength
    const big = heap.alloc(10 * 65536)
    assert.ok(memory.buffer.byteLength >= big + 10 * 65536 && memory.buffer.byteLength > before)
    assert.deepEqual([...new Float32Array(memory.buffer, a, 4)], [1, 2, 3, 4])
  })

  it('throws a RangeError past the wasm32 limit', function () {
    const heap = new Heap(createSharedMemory(1))
    assert.throws(() => heap.alloc(2 ** 32), RangeError)
  })
})
