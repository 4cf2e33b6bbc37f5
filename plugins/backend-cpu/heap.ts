// First-fit allocator over the backend's shared WasmMemory. Blocks are 64-byte aligned; the
import type { WasmMemory } from './wasm.ts'
// memory grows on demand (in place: shared memory never moves, so workers keep working while the main
// thread allocates). Offsets are in bytes; offset 0 is never handed out.

const ALIGN = 64
/** Bytes kept free past the last block: SIMD loads of a partial panel may read a little past a tensor. */
const SLACK = 256
const PAGE = 65536

interface Block { off: number, size: number }

export class Heap {
  private readonly free: Block[] = [] // sorted by offset, coalesced
  private top = ALIGN

  constructor (readonly memory: WasmMemory) {}

  /** Bytes currently reserved (in use or free below the top). */
  get reserved (): number { return this.top }

  alloc (bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN)
    for (let i = 0; i < this.free.length; i++) {
      const b = this.free[i]
      if (b.size >= size) {
        const off = b.off
        if (b.size === size) this.free.splice(i, 1)
        else { b.off += size; b.size -= size }
        return off
      }
    }
    const off = this.top
    this.ensure(off + size + SLACK)
    this.top = off + size
    return off
  }

  release (off: number, bytes: number): void {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN)
    let i = 0
    while (i < this.free.length && this.free[i].off < off) i++
    this.free.splice(i, 0, { off, size })
    // coalesce with the next, then with the previous block
    if (i + 1 < this.free.length && off + size === this.free[i + 1].off) {
      this.free[i].size += this.free[i + 1].size
      this.free.splice(i + 1, 1)
    }
    if (i > 0 && this.free[i - 1].off + this.free[i - 1].size === off) {
      this.free[i - 1].size += this.free[i].size
      this.free.splice(i, 1)
      i--
    }
    // a free block at the top goes back to the bump region
    const last = this.free[this.free.length - 1]
    if (last !== undefined && last.off + last.size === this.top) {
      this.top = last.off
      this.free.pop()
    }
  }

  private ensure (bytes: number): void {
    const have = this.memory.buffer.byteLength
    if (bytes <= have) return
    const needPages = Math.ceil((bytes - have) / PAGE)
    // grow by at least a quarter of the current size, so many small allocations do not grow one by one
    const pages = Math.max(needPages, Math.ceil(have / PAGE / 4))
    try {
      this.memory.grow(pages)
    } catch {
      try {
        this.memory.grow(needPages)
      } catch (err) {
        throw new RangeError(`cpu backend: out of memory growing to ${bytes} bytes (wasm32 limit 4 GiB)`, { cause: err })
      }
    }
  }
}
