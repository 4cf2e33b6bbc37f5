// The validator role (`layerswarm start --role validator`): re-checks a random sample of other peers'
// recent hops. Every `intervalMs`, `checksPerInterval` times:
//
//   1. choose, with crypto randomness (the target cannot predict it), a stage of the configured ones,
//      a hop kind that stage sends (forward: all but the last stage; backward: all but stage 0), and
//      a peer serving it (`peersOfStage`, the membership view; never this node, never a convicted peer)
//   2. ask a neighbour of the target for its receipts of the target's recent hops of that kind (a peer
//      of stage s+1 for forward hops, s-1 for backward; this node's own ReceiptSource where it serves
//      that stage), verified; keep those inside the producers' retention window and pick one at random
//   3. ask the target to reveal that hop (two tries, `revealTimeoutMs` each), reusing weights already
//      fetched for the same digest
//   4. recompute it (recompute.ts): pass -> the ledger counts it; fail conclusively -> a 'mismatch'
//      accusation with the reveal as evidence, and a local conviction; no reveal, or a reveal that is
//      not what the commitment says -> a 'withhold' accusation and a local conviction (only while the
//      target is still listed: a peer that left is not accused); inconclusive -> counted, nothing else
//
// Work census (`censusIntervalMs`): besides the sampled checks, the validator periodically asks each
// serving peer's neighbours for the newest receipts they hold of its hops (up to MAX_RECEIPTS each) and
// counts every one that verifies in its ledger, once per commitment. The ledger's work figures, which
// the chain's weights read, then follow the hops a peer actually delivered, signed by that peer, rather
// than how often this validator happened to sample it.
//
// Cost: one reveal (the hop's inputs and output, plus the weights once per digest) and one forward (+
// backward) of one stage per check; docs/verification.md has the figures and the detection
// probability as a function of the rate. Same-stage peers can run it too (after an averaging round
// they hold identical weights, so params come from the cache): nothing here needs a stage of its own.
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import type { Role } from '../contracts/role.ts'
import { silentLogger } from '../logger.ts'
import { runId as manifestRunId } from '../run/manifest.ts'
import { pause } from '../timers.ts'
import { verifyCommitment, type HopKind, type VerifiedCommitment } from './commitment.ts'
import { DEFAULT_RETENTION_MS, revealWithRetries, type EvidenceService } from './evidence.ts'
import type { ReceiptSource } from './hop-records.ts'
import { recomputeHop, revealMismatch, stageSends, type RecomputeContext } from './recompute.ts'
import { MAX_RECEIPTS, requestReceipts } from './receipts.ts'
import type { WorkLedger } from './work-ledger.ts'

export interface ValidatorInit extends RecomputeContext {
  readonly libp2p: Pick<Libp2p, 'dialProtocol' | 'peerId'>
  readonly evidence: EvidenceService
  /** Peers serving `stage` (the membership view). */
  readonly peersOfStage: (stage: number) => readonly string[]
  /** Stages to check. Default all. */
  readonly stages?: readonly number[]
  /** Period (ms). Default 2000. */
  readonly intervalMs?: number
  /** Checks per period (the sample rate). Default 1. */
  readonly checksPerInterval?: number
  /** Deadline of one reveal try (ms). Default 10000. */
  readonly revealTimeoutMs?: number
  /** Deadline of a receipts request (ms). Default 5000. */
  readonly receiptsTimeoutMs?: number
  /** Receipts asked for per check (the most recent ones). Default 8. */
  readonly receiptsMax?: number
  /** Hops older than this are not sampled (the producers' retention, with a margin). Default DEFAULT_RETENTION_MS / 2. */
  readonly maxAgeMs?: number
  /** Weights this node holds by digest (its own HopRecordSource's `params`: a same-stage checker after averaging). */
  readonly paramsOf?: (digest: string) => ReadonlyMap<string, Float32Array> | undefined
  /** This node's own receipts, where it serves a neighbouring stage. */
  readonly receipts?: () => ReceiptSource | undefined
  readonly ledger?: WorkLedger
  /** Period of the work census (ms; see the top of this file). Default 5000 where a ledger is given; 0: off. */
  readonly censusIntervalMs?: number
  /** Uniform integer in [0, n); default crypto randomness. */
  readonly random?: (n: number) => number
  readonly log?: Logger
}

export type CheckResult = 'passed' | 'failed' | 'withheld' | 'inconclusive' | 'no-target' | 'no-receipts' | 'gone'

interface PeerCounts { checks: number, passed: number, failed: number, withheld: number, inconclusive: number }

export class Validator implements Role {
  readonly name = 'validator'
  private readonly me: string
  private readonly runId: string
  private readonly log: Logger
  private readonly random: (n: number) => number
  private readonly params = new Map<string, ReadonlyMap<string, Float32Array>>()
  private readonly perPeer = new Map<string, PeerCounts>()
  private readonly counts = { checks: 0, passed: 0, failed: 0, withheld: 0, inconclusive: 0, skipped: 0, accusations: 0, censuses: 0, receiptsCounted: 0 }
  private lastCensus = 0
  private abort: AbortController | undefined
  private loop: Promise<void> | undefined

  constructor (private readonly init: ValidatorInit) {
    this.me = init.libp2p.peerId.toString()
    this.runId = manifestRunId(init.manifest)
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:verify:validator')
    this.random = init.random ?? cryptoRandom
  }

  async start (): Promise<void> {
    if (this.loop != null) return
    const abort = new AbortController()
    this.abort = abort
    this.loop = (async () => {
      while (await pause(this.init.intervalMs ?? 2000, abort.signal)) {
        for (let i = 0; i < (this.init.checksPerInterval ?? 1) && !abort.signal.aborted; i++) {
          try {
            await this.checkOnce(abort.signal)
          } catch (err) {
            if (!abort.signal.aborted) this.log.warn('check failed to run', { error: (err as Error).message })
          }
        }
        const census = this.init.censusIntervalMs ?? (this.init.ledger != null ? 5000 : 0)
        if (census > 0 && Date.now() - this.lastCensus >= census && !abort.signal.aborted) {
          this.lastCensus = Date.now()
          await this.census(abort.signal).catch(err => { if (!abort.signal.aborted) this.log.warn('work census failed', { error: (err as Error).message }) })
        }
      }
    })()
  }

  async stop (): Promise<void> {
    this.abort?.abort()
    await this.loop
    this.loop = undefined
  }

  status (): Record<string, unknown> {
    return { ...this.counts, peers: Object.fromEntries([...this.perPeer].map(([p, c]) => [p, { ...c }])) }
  }

  /** One check (steps 1-4 at the top of this file); what came of it. */
  async checkOnce (signal?: AbortSignal): Promise<CheckResult> {
    const S = this.init.manifest.stages.count
    const stages = (this.init.stages ?? Array.from({ length: S }, (_, s) => s)).filter(s => s >= 0 && s < S)
    const options = stages.flatMap(s => (['forward', 'backward'] as HopKind[]).filter(k => stageSends(s, S, k)).map(k => ({ stage: s, kind: k })))
    const convictions = this.init.evidence.convictions
    // only (stage, kind) pairs with a target, so a stage nobody serves does not waste the check
    const live = options.map(o => ({ ...o, targets: this.init.peersOfStage(o.stage).filter(p => p !== this.me && !convictions.has(p)) })).filter(o => o.targets.length > 0)
    if (live.length === 0) return this.skip('no-target')
    const pick = live[this.random(live.length)]
    const target = pick.targets[this.random(pick.targets.length)]

    const receipts = await this.receiptsOf(target, pick.stage, pick.kind, signal)
    this.count(receipts)
    const maxAge = this.init.maxAgeMs ?? DEFAULT_RETENTION_MS / 2
    const fresh = receipts.filter(v => v.commitment.stage === pick.stage && Date.now() - v.commitment.time <= maxAge)
    if (fresh.length === 0) return this.skip('no-receipts')
    const chosen = fresh[this.random(fresh.length)]
    const c = chosen.commitment
    this.counts.checks++
    const peer = this.peer(target)
    peer.checks++

    const revealed = await revealWithRetries(this.init.libp2p, c, {
      runId: this.runId, timeoutMs: this.init.revealTimeoutMs ?? 10_000, tries: 2, signal, log: this.init.log,
      paramsCache: { get: d => this.init.paramsOf?.(d) ?? this.params.get(d) }
    })
    if (signal?.aborted === true) return 'inconclusive'
    const bytes = signedOf(chosen)
    if (revealed instanceof Error) {
      if (!this.init.peersOfStage(pick.stage).includes(target)) return this.skip('gone')
      return await this.withheld(target, bytes, `no reveal: ${revealed.message}`)
    }
    const r = await recomputeHop(revealed, this.init, { expected: c })
    if (r.ok) {
      this.remember(revealed.record.paramsDigest, revealed.params)
      this.counts.passed++
      peer.passed++
      this.init.ledger?.check(target, 'passed')
      return 'passed'
    }
    if (revealMismatch(r.reason)) return await this.withheld(target, bytes, `the reveal does not match the commitment (${r.reason}: ${r.detail})`)
    if (!r.conclusive) {
      this.counts.inconclusive++
      peer.inconclusive++
      this.log.warn('check inconclusive here', { peer: target, detail: r.detail })
      return 'inconclusive'
    }
    this.counts.failed++
    peer.failed++
    this.init.ledger?.check(target, 'failed')
    if (await this.init.evidence.accuse('mismatch', bytes, revealed, `${r.reason}: ${r.detail}`)) this.counts.accusations++
    return 'failed'
  }

  private async withheld (target: string, commitment: Uint8Array, detail: string): Promise<CheckResult> {
    this.counts.withheld++
    this.peer(target).withheld++
    this.init.ledger?.check(target, 'withheld')
    if (await this.init.evidence.accuse('withhold', commitment, undefined, detail)) this.counts.accusations++
    return 'withheld'
  }

  /** The work census (see the top of this file): every serving peer's newest receipts into the ledger. */
  async census (signal?: AbortSignal): Promise<number> {
    const S = this.init.manifest.stages.count
    const convictions = this.init.evidence.convictions
    let counted = 0
    for (let stage = 0; stage < S; stage++) {
      for (const kind of (['forward', 'backward'] as HopKind[]).filter(k => stageSends(stage, S, k))) {
        // every neighbour: each holds the receipts of the hops routed to it
        const neighbours = this.init.peersOfStage(kind === 'forward' ? stage + 1 : stage - 1).filter(p => p !== this.me)
        for (const target of this.init.peersOfStage(stage).filter(p => p !== this.me && !convictions.has(p))) {
          for (const peer of neighbours.filter(p => p !== target)) {
            if (signal?.aborted === true) return counted
            try {
              counted += this.count(await requestReceipts(this.init.libp2p, peer, { producer: target, kind, max: MAX_RECEIPTS }, { runId: this.runId, timeoutMs: this.init.receiptsTimeoutMs ?? 5000, signal, log: this.init.log }))
            } catch (err) {
              this.log.debug('census: no receipts from neighbour', { peer, target, error: (err as Error).message })
            }
          }
          const own = this.init.receipts?.()
          if (own != null) counted += this.count(await Promise.all(own.recent(target, kind, MAX_RECEIPTS).map(async b => await verifyCommitment(b, { producer: target }))))
        }
      }
    }
    this.counts.censuses++
    return counted
  }

  /** Counts verified receipts in the ledger (each commitment once); B*T tokens per hop, the run's microbatch shape. */
  private count (receipts: readonly VerifiedCommitment[]): number {
    const ledger = this.init.ledger
    if (ledger == null) return 0
    const tokens = this.init.manifest.data.batchSize * this.init.manifest.data.seqLen
    let n = 0
    for (const v of receipts) if (ledger.receipt(v.commitment, tokens)) n++
    this.counts.receiptsCounted += n
    return n
  }

  /** Receipts of `target`'s `kind` hops from a random neighbour (this node included where it holds some). */
  private async receiptsOf (target: string, stage: number, kind: HopKind, signal?: AbortSignal): Promise<VerifiedCommitment[]> {
    const neighbourStage = kind === 'forward' ? stage + 1 : stage - 1
    const own = this.init.receipts?.()
    const neighbours: string[] = this.init.peersOfStage(neighbourStage).filter(p => p !== target && p !== this.me)
    if (own != null) neighbours.push(this.me)
    const max = this.init.receiptsMax ?? 8
    while (neighbours.length > 0) {
      const [peer] = neighbours.splice(this.random(neighbours.length), 1)
      try {
        if (peer === this.me) {
          const list = (own as ReceiptSource).recent(target, kind, max)
          return await Promise.all(list.map(async b => await verifyCommitment(b, { producer: target })))
        }
        return await requestReceipts(this.init.libp2p, peer, { producer: target, kind, max }, { runId: this.runId, timeoutMs: this.init.receiptsTimeoutMs ?? 5000, signal, log: this.init.log })
      } catch (err) {
        if (signal?.aborted === true) return []
        this.log.debug('no receipts from neighbour', { peer, target, error: (err as Error).message })
      }
    }
    return []
  }

  private skip (why: CheckResult): CheckResult {
    this.counts.skipped++
    return why
  }

  private peer (id: string): PeerCounts {
    let p = this.perPeer.get(id)
    if (p == null) {
      p = { checks: 0, passed: 0, failed: 0, withheld: 0, inconclusive: 0 }
      this.perPeer.set(id, p)
    }
    return p
  }

  /** Weights of a digest that checked out, for later reveals of the same step (a few digests kept). */
  private remember (digest: string, params: ReadonlyMap<string, Float32Array>): void {
    this.params.delete(digest)
    this.params.set(digest, params)
    while (this.params.size > 4) this.params.delete(this.params.keys().next().value as string)
  }
}

function signedOf (v: VerifiedCommitment): Uint8Array {
  const out = new Uint8Array(v.body.length + 1 + v.signature.length)
  out.set(v.body, 0)
  out[v.body.length] = v.signature.length
  out.set(v.signature, v.body.length + 1)
  return out
}

/** Uniform integer in [0, n) from crypto randomness (rejection sampling: no modulo bias). */
export function cryptoRandom (n: number): number {
  if (!Number.isSafeInteger(n) || n < 1 || n > 0x1_0000_0000) throw new RangeError(`cryptoRandom: n must be in 1..2^32, got ${n}`)
  const limit = Math.floor(0x1_0000_0000 / n) * n
  const buf = new Uint32Array(1)
  for (;;) {
    globalThis.crypto.getRandomValues(buf)
    if (buf[0] < limit) return buf[0] % n
  }
}
