// The peers this node has convicted: their work failed a check any node can repeat (a recomputation
// that does not match what they signed, or a hop they committed to and could not reveal). Permanent
// for the run: a conviction is never lifted, and an accusation about a convicted peer is not checked
// again. The lead's router, averaging and membership read `has()` to exclude convicted peers; the
// ledger and `status --json` read `list()`.
import type { HopKind } from './commitment.ts'

export interface Conviction {
  readonly peer: string
  /** Why: 'mismatch' (a recomputation differed) or 'withhold' (committed work not revealed). */
  readonly kind: 'mismatch' | 'withhold'
  /** The check's reason and detail, for logs and status. */
  readonly detail: string
  /** The commitment id (reveal.ts commitmentId) of the hop that convicted it. */
  readonly commitment: string
  readonly stage: number
  readonly hop: HopKind
  /** Who accused it ('self' when this node's own check convicted it). */
  readonly by: string
  /** When (ms since the epoch, this node's clock). */
  readonly at: number
}

export type ConvictionListener = (c: Conviction) => void

export class Convictions {
  private readonly entries = new Map<string, Conviction>()
  private readonly listeners = new Set<ConvictionListener>()

  has (peer: string): boolean {
    return this.entries.has(peer)
  }

  get (peer: string): Conviction | undefined {
    return this.entries.get(peer)
  }

  /** Adds a conviction; false when the peer was convicted already (the first one stands). */
  add (c: Conviction): boolean {
    if (this.entries.has(c.peer)) return false
    this.entries.set(c.peer, c)
    for (const l of this.listeners) {
      try { l(c) } catch {}
    }
    return true
  }

  list (): Conviction[] {
    return [...this.entries.values()]
  }

  get size (): number {
    return this.entries.size
  }

  /** Calls `listener` on every new conviction; returns the unsubscribe function. */
  onConviction (listener: ConvictionListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }
}
