// The work ledger: per peer, the work this node can vouch for from signed records it holds, never
// from what a peer says of itself. Two sources:
//   receipts   every commitment this node received and verified (the pipeline calls `receipt()`):
//              microbatches and tokens (B*T of the hop's tensor) per stage and kind; a commitment
//              is counted once (its id) however often it arrives
//   checks     outcomes of this node's own checks (validator.ts) and of accusations it verified
//              (evidence.ts): passed, failed, withheld; accusations a peer made that held or were false;
//              convictions
//   copies     a commitment whose output hash (with stage and kind) another producer committed to
//              first: one peer signing another's work as its own. It earns no work and counts in the
//              copier's `copies`, which core/chain/weights.ts counts against it like a failed check.
//              First seen wins: an honest producer whose output a copier got to this ledger first is
//              the one charged, so copies only lower reliability, never convict.
// `status()` is what `status --json` shows as `ledger` (the chain issue turns it into weights).
// Counts are of what this node saw: a ledger is one witness, and the chain issue combines them.
import type { HopCommitment, HopKind } from './commitment.ts'
import type { Convictions } from './convictions.ts'

export type CheckOutcome = 'passed' | 'failed' | 'withheld'
/** Whose check: this node's own, or an accusation this node verified. */
export type CheckSource = 'own' | 'accusation'

export interface WorkCount {
  microbatches: number
  tokens: number
}

export interface PeerLedger {
  /** work[stage][kind]: hops received from this peer, by verified commitment. */
  work: Record<string, Partial<Record<HopKind, WorkCount>>>
  /** Checks of this peer's hops: this node's own, and the accusations about it this node verified. */
  checks: Record<CheckSource, Record<CheckOutcome, number>>
  /** Accusations by this peer that this node verified: upheld, or false (it was penalised). */
  accusations: { upheld: number, false: number }
  /** Commitments of outputs another producer committed to first (see the top of this file): no work earned. */
  copies: number
  convicted: boolean
  /** ms since the epoch of the newest record about this peer. */
  last: number
}

export interface LedgerStatus {
  peers: Record<string, PeerLedger>
  totals: { microbatches: number, tokens: number, checks: Record<CheckOutcome, number>, copies: number, convicted: number }
}

export interface WorkLedgerOptions {
  /** Read for `convicted` (the node's one set). */
  readonly convictions?: Convictions
  /** Commitment ids remembered to count each once, and output hashes remembered with their first producer (oldest forgotten first). Default 65536. */
  readonly dedupe?: number
  readonly now?: () => number
}

export class WorkLedger {
  private readonly peers = new Map<string, PeerLedger>()
  private readonly seen = new Set<string>()
  /** `${outputHash}|${stage}|${kind}` -> the first producer seen committing to it. */
  private readonly producers = new Map<string, string>()
  private readonly dedupe: number
  private readonly now: () => number

  constructor (private readonly opts: WorkLedgerOptions = {}) {
    this.dedupe = opts.dedupe ?? 65_536
    this.now = opts.now ?? Date.now
  }

  /**
   * A commitment this node received and verified; `tokens` is B*T of its tensor (from the frame's
   * shape). Returns false when that commitment was counted already, or when it is a copy of another
   * producer's output (counted in the producer's `copies`, no work).
   */
  receipt (c: HopCommitment, tokens = 0): boolean {
    const key = `${c.producer}|${c.kind}|${c.stage}|${c.microbatchId}|${c.outputHash}`
    if (this.seen.has(key)) return false
    this.seen.add(key)
    if (this.seen.size > this.dedupe) this.seen.delete(this.seen.values().next().value as string)
    const output = `${c.outputHash}|${c.stage}|${c.kind}`
    const first = this.producers.get(output)
    if (first == null) {
      this.producers.set(output, c.producer)
      if (this.producers.size > this.dedupe) this.producers.delete(this.producers.keys().next().value as string)
    } else if (first !== c.producer) {
      this.entry(c.producer).copies++
      return false
    }
    const p = this.entry(c.producer)
    const byStage = p.work[String(c.stage)] ??= {}
    const w = byStage[c.kind] ??= { microbatches: 0, tokens: 0 }
    w.microbatches++
    w.tokens += Number.isSafeInteger(tokens) && tokens > 0 ? tokens : 0
    return true
  }

  /** The outcome of a check of `peer`'s work. */
  check (peer: string, outcome: CheckOutcome, source: CheckSource = 'own'): void {
    this.entry(peer).checks[source][outcome]++
  }

  /** An accusation by `accuser` that this node verified: upheld or false. */
  accusation (accuser: string, upheld: boolean): void {
    this.entry(accuser).accusations[upheld ? 'upheld' : 'false']++
  }

  peer (id: string): Readonly<PeerLedger> | undefined {
    const p = this.peers.get(id)
    return p == null ? undefined : { ...p, convicted: this.opts.convictions?.has(id) ?? false }
  }

  status (): LedgerStatus {
    const totals = { microbatches: 0, tokens: 0, checks: outcomes(), copies: 0, convicted: 0 }
    const peers: Record<string, PeerLedger> = {}
    for (const [id] of this.peers) {
      const p = this.peer(id) as PeerLedger
      peers[id] = structuredClone(p)
      for (const byKind of Object.values(p.work)) {
        for (const w of Object.values(byKind)) { totals.microbatches += w.microbatches; totals.tokens += w.tokens }
      }
      for (const k of ['passed', 'failed', 'withheld'] as const) totals.checks[k] += p.checks.own[k] + p.checks.accusation[k]
      totals.copies += p.copies
    }
    totals.convicted = this.opts.convictions?.size ?? 0
    return { peers, totals }
  }

  private entry (peer: string): PeerLedger {
    let p = this.peers.get(peer)
    if (p == null) {
      p = { work: {}, checks: { own: outcomes(), accusation: outcomes() }, accusations: { upheld: 0, false: 0 }, copies: 0, convicted: false, last: 0 }
      this.peers.set(peer, p)
    }
    p.last = this.now()
    return p
  }
}

function outcomes (): Record<CheckOutcome, number> {
  return { passed: 0, failed: 0, withheld: 0 }
}
