// Evidence and convictions: a failed check becomes an accusation every node verifies by itself, and
// a verified one excludes the peer for good. One service per node (it owns the evidence topic's
// validator slot and the evidence protocol).
//
//   accuse     (the validator) keeps the evidence bundle (mismatch), gossips a signed accusation
//              (accusation.ts) and convicts locally
//   validate   the topic validator, Lodestar style: unsigned, malformed, a bad signature of the
//              accusation or of the commitment, an accuser publishing as someone else, a self
//              accusation -> REJECT; another run, a duplicate, a peer already convicted, an
//              accusation by this node, a full queue -> IGNORE; else ACCEPT and queue it
//   verify     one accusation at a time, off the gossip path:
//              mismatch  fetch the bundle from the accuser (EVIDENCE_PROTOCOL, deadline) and run the
//                        recompute check: it fails conclusively -> convict the producer; it passes,
//                        the bundle is not what the commitment says, or the accuser cannot serve it
//                        -> the accusation is false: penalise the accuser
//              withhold  ask the producer itself (revealTries tries, a generous deadline): no
//                        reveal, or one that does not match its commitment -> convict; a reveal that
//                        fails the check -> convict; one that passes -> penalise the accuser. Not
//                        asked when the hop is older than the retention the producers promise, or
//                        the producer left the swarm (`isLive`): nothing follows then
//   convict    judge.record(reject, 'verification', ERR_VERIFY_CONVICTED) and a permanent entry in
//              Convictions (which the router, averaging and membership read). Never this node itself;
//              a recomputation that fails here (inconclusive) convicts nobody and penalises nobody
import type { GossipSub, Message } from '@libp2p/gossipsub'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { scoreInvalidDeliveries } from '../membership/topic-score.ts'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import type { PeerJudge } from '../peer-judge.ts'
import { runId as runIdOf } from '../run/manifest.ts'
import { pause } from '../timers.ts'
import { evidenceTopic, signAccusation, verifyAccusation, type Accusation, type AccusationKind } from './accusation.ts'
import { verifyCommitment, type HopCommitment } from './commitment.ts'
import { Convictions } from './convictions.ts'
import { AccusationIgnoredError, AccusationMalformedError, ConvictedError, FalseAccusationError } from './errors.ts'
import { recomputeHop, revealMismatch, type RecomputeContext, type RecomputeResult, type RevealedHop } from './recompute.ts'
import { commitmentId, EvidenceServer, EvidenceStore, requestEvidence, requestReveal } from './reveal.ts'
import type { WorkLedger } from './work-ledger.ts'

import { DEFAULT_RETENTION_MS } from './hop-records.ts'
export { DEFAULT_RETENTION_MS }

type EvidenceLibp2p = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId'> & { readonly services: { readonly pubsub?: GossipSub } }

export interface EvidenceInit extends RecomputeContext {
  readonly libp2p: EvidenceLibp2p
  /** The node's libp2p key (signs its accusations). */
  readonly privateKey: PrivateKey
  readonly judge: PeerJudge
  /** The node's one set (the lead's router, averaging and membership read it); default a new one. */
  readonly convictions?: Convictions
  readonly ledger?: WorkLedger
  /** Whether a peer is still in the swarm (the membership view); default: always. */
  readonly isLive?: (peer: string) => boolean
  /** Deadline to fetch a bundle from an accuser (ms). Default 30000. */
  readonly evidenceTimeoutMs?: number
  /** Deadline of one reveal asked of an accused producer (ms). Default 20000. */
  readonly revealTimeoutMs?: number
  /** Reveal tries for a withhold accusation. Default 2. */
  readonly revealTries?: number
  /** What producers promise to retain (ms). Default DEFAULT_RETENTION_MS. */
  readonly retentionMs?: number
  /** Accusations waiting to be verified, at most. Default 32. */
  readonly maxQueue?: number
  readonly log?: Logger
}

export interface EvidenceStatus {
  published: number
  received: { accepted: number, rejected: Record<string, number>, ignored: Record<string, number> }
  verified: { upheld: number, false: number, inconclusive: number, stale: number }
  convicted: string[]
  queued: number
}

interface Queued { readonly accusation: Accusation, readonly commitment: HopCommitment, readonly id: string }

export class EvidenceService {
  readonly convictions: Convictions
  readonly store = new EvidenceStore()
  readonly topic: string
  private readonly me: string
  private readonly runId: string
  private readonly server: EvidenceServer
  private readonly log: Logger
  private readonly seen = new Set<string>()
  private readonly queue: Queued[] = []
  private readonly abort = new AbortController()
  private worker: Promise<void> | undefined
  private wake: (() => void) | undefined
  private started = false
  private readonly counts: EvidenceStatus = {
    published: 0,
    received: { accepted: 0, rejected: {}, ignored: {} },
    verified: { upheld: 0, false: 0, inconclusive: 0, stale: 0 },
    convicted: [],
    queued: 0
  }

  constructor (private readonly init: EvidenceInit) {
    this.me = init.libp2p.peerId.toString()
    this.runId = runIdOf(init.manifest)
    this.topic = evidenceTopic(this.runId)
    this.convictions = init.convictions ?? new Convictions()
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:verify:evidence')
    this.server = new EvidenceServer(init.libp2p, {
      runId: this.runId, store: this.store, log: init.log, admit: async (peer, signal) => { await init.judge.admit(peer, signal, 'verification') }
    })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.server.start()
    const pubsub = this.init.libp2p.services.pubsub
    if (pubsub != null) {
      scoreInvalidDeliveries(pubsub, this.topic, this.log, 'accusations')
      pubsub.topicValidators.set(this.topic, async (_peer, msg) => await this.validate(msg))
      pubsub.subscribe(this.topic)
    } else {
      this.log.warn('no gossipsub: accusations are neither sent nor received')
    }
    this.worker = this.work()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.abort.abort()
    this.wake?.()
    const pubsub = this.init.libp2p.services.pubsub
    if (pubsub != null) {
      try { pubsub.unsubscribe(this.topic) } catch {}
      pubsub.topicValidators.delete(this.topic)
    }
    await this.server.stop()
    await this.worker
  }

  status (): EvidenceStatus {
    return { ...structuredClone(this.counts), convicted: this.convictions.list().map(c => c.peer), queued: this.queue.length }
  }

  /**
   * This node's check of `hop` failed (`mismatch`, with the revealed hop as evidence) or the producer
   * did not reveal it (`withhold`, the signed commitment alone): convict locally, keep the bundle,
   * gossip the accusation. Returns false when the producer was convicted already or is this node.
   */
  async accuse (kind: AccusationKind, commitment: Uint8Array, evidence?: RevealedHop, detail: string = kind): Promise<boolean> {
    const c = (await verifyCommitment(commitment)).commitment
    if (c.producer === this.me || this.convictions.has(c.producer)) return false
    if (kind === 'mismatch') {
      if (evidence == null) throw new AccusationMalformedError('a mismatch accusation needs its evidence')
      this.store.put(evidence)
    }
    const id = commitmentId(commitment)
    this.seen.add(`${this.me}|${id}`)
    this.convict(c, kind, detail, 'self', id)
    const bytes = await signAccusation({ kind, accuser: this.me, commitment, time: Date.now() }, this.init.privateKey)
    try {
      await this.init.libp2p.services.pubsub?.publish(this.topic, bytes)
      this.counts.published++
    } catch (err) {
      this.log.warn('accusation not published', { producer: c.producer, error: (err as Error).message })
    }
    return true
  }

  /** Convicts the producer of `c` (never this node; once). */
  convict (c: HopCommitment, kind: AccusationKind, detail: string, by: string, id = ''): boolean {
    if (c.producer === this.me) return false
    const added = this.convictions.add({ peer: c.producer, kind, detail, commitment: id, stage: c.stage, hop: c.kind, by, at: Date.now() })
    if (!added) return false
    const err = new ConvictedError(c.producer, detail)
    this.init.judge.record({ peer: c.producer, verdict: 'reject', area: 'verification', code: err.code, stage: c.stage })
    this.log.warn('peer convicted', { peer: c.producer, kind, stage: c.stage, hop: c.kind, by, detail })
    return true
  }


  /** Gossipsub topic validator (see the top of this file). */
  private async validate (msg: Message): Promise<TopicValidatorResult> {
    try {
      if (msg.type !== 'signed') throw new AccusationMalformedError('unsigned gossip message')
      const a = await verifyAccusation(msg.data)
      if (msg.from.toString() !== a.accuser) throw new AccusationMalformedError(`published by ${msg.from.toString()}, not by its accuser`)
      // with --chain only admitted peers accuse (an unknown one is asked for its binding meanwhile)
      const admission = this.init.judge.admissionOf(a.accuser)
      if (admission === 'unknown') this.init.judge.admit(a.accuser).catch(() => {})
      if (admission !== 'admitted') throw new AccusationIgnoredError(`accuser ${a.accuser} is not admitted (${admission})`)
      let c: HopCommitment
      try {
        c = (await verifyCommitment(a.commitment)).commitment
      } catch (err) {
        throw new AccusationMalformedError(`its commitment: ${(err as Error).message}`)
      }
      if (c.producer === a.accuser) throw new AccusationMalformedError('an accuser accusing itself')
      if (c.runId !== this.runId) throw new AccusationIgnoredError(`an accusation of run ${c.runId}`)
      const id = commitmentId(a.commitment)
      const key = `${a.accuser}|${id}`
      if (this.seen.has(key)) throw new AccusationIgnoredError('a duplicate')
      if (a.accuser === this.me) throw new AccusationIgnoredError('an accusation by this node')
      if (this.convictions.has(c.producer)) throw new AccusationIgnoredError(`${c.producer} is convicted already`)
      if (this.queue.length >= (this.init.maxQueue ?? 32)) throw new AccusationIgnoredError('the verification queue is full')
      this.seen.add(key)
      if (this.seen.size > 65_536) this.seen.delete(this.seen.values().next().value as string)
      this.queue.push({ accusation: a, commitment: c, id })
      this.counts.received.accepted++
      this.wake?.()
      return TopicValidatorResult.Accept
    } catch (err) {
      const reject = err instanceof AccusationMalformedError
      const code = (err as { code?: string }).code ?? 'ERR_UNKNOWN'
      const tally = reject ? this.counts.received.rejected : this.counts.received.ignored
      tally[code] = (tally[code] ?? 0) + 1
      this.log.debug('accusation refused', { code, error: (err as Error).message })
      return reject ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
    }
  }

  private async work (): Promise<void> {
    const signal = this.abort.signal
    while (!signal.aborted) {
      const next = this.queue.shift()
      if (next == null) {
        await new Promise<void>(resolve => { this.wake = resolve })
        this.wake = undefined
        continue
      }
      try {
        await this.verify(next)
      } catch (err) {
        this.log.warn('accusation not verified', { accuser: next.accusation.accuser, error: (err as Error).message })
      }
    }
  }

  /** Verifies one accepted accusation (see the top of this file). */
  private async verify ({ accusation: a, commitment: c, id }: Queued): Promise<void> {
    if (this.convictions.has(c.producer)) return
    if (a.kind === 'mismatch') {
      let hop: RevealedHop
      try {
        hop = await requestEvidence(this.init.libp2p, a.accuser, id, { runId: this.runId, timeoutMs: this.init.evidenceTimeoutMs ?? 30_000, signal: this.abort.signal, log: this.init.log })
      } catch (err) {
        if (this.abort.signal.aborted) return
        this.falseAccusation(a, c, `no evidence served: ${(err as Error).message}`)
        return
      }
      const r = await recomputeHop(hop, this.init, { expected: c })
      if (r.ok || revealMismatch(r.reason)) {
        this.falseAccusation(a, c, r.ok ? 'the hop recomputes to what was sent' : `the evidence is not the committed hop (${r.reason})`)
      } else {
        this.outcome(a, c, id, r)
      }
      return
    }
    // withhold
    if (Date.now() - c.time > (this.init.retentionMs ?? DEFAULT_RETENTION_MS) || this.init.isLive?.(c.producer) === false) {
      this.counts.verified.stale++
      this.log.debug('withhold accusation not checked: the hop is past retention or its producer left', { producer: c.producer })
      return
    }
    if (c.producer === this.me) return
    const revealed = await revealWithRetries(this.init.libp2p, c, {
      runId: this.runId, timeoutMs: this.init.revealTimeoutMs ?? 20_000, tries: this.init.revealTries ?? 2, signal: this.abort.signal, log: this.init.log
    })
    if (this.abort.signal.aborted) return
    if (revealed instanceof Error) {
      this.upheld(a, c, id, 'withhold', `no reveal: ${revealed.message}`)
      return
    }
    const r = await recomputeHop(revealed, this.init, { expected: c })
    if (r.ok) this.falseAccusation(a, c, 'the producer revealed the hop and it checks out')
    else if (revealMismatch(r.reason)) this.upheld(a, c, id, 'withhold', `the reveal does not match the commitment (${r.reason})`)
    else this.outcome(a, c, id, r)
  }

  private outcome (a: Accusation, c: HopCommitment, id: string, r: Exclude<RecomputeResult, { ok: true }>): void {
    if (!r.conclusive) {
      this.counts.verified.inconclusive++
      this.log.warn('accusation inconclusive here', { producer: c.producer, detail: r.detail })
      return
    }
    this.upheld(a, c, id, 'mismatch', `${r.reason}: ${r.detail}`)
  }

  private upheld (a: Accusation, c: HopCommitment, id: string, kind: AccusationKind, detail: string): void {
    this.counts.verified.upheld++
    this.init.ledger?.accusation(a.accuser, true)
    this.init.ledger?.check(c.producer, kind === 'withhold' ? 'withheld' : 'failed', 'accusation')
    this.convict(c, kind, detail, a.accuser, id)
  }

  private falseAccusation (a: Accusation, c: HopCommitment, reason: string): void {
    this.counts.verified.false++
    this.init.ledger?.accusation(a.accuser, false)
    if (a.kind === 'mismatch') this.init.ledger?.check(c.producer, 'passed', 'accusation')
    const err = new FalseAccusationError(a.accuser, reason)
    this.init.judge.record({ peer: a.accuser, verdict: 'reject', area: 'verification', code: err.code })
    this.log.warn('false accusation', { accuser: a.accuser, producer: c.producer, kind: a.kind, reason })
  }
}

/** Asks the producer of `c` for its reveal up to `tries` times; the hop, or the last error. */
export async function revealWithRetries (libp2p: Pick<Libp2p, 'dialProtocol'>, c: HopCommitment, opts: {
  runId: string, timeoutMs: number, tries: number, signal?: AbortSignal, log?: Logger, paramsCache?: Parameters<typeof requestReveal>[3]['paramsCache']
}): Promise<RevealedHop | Error> {
  let last: Error = new Error('no try made')
  for (let i = 0; i < Math.max(1, opts.tries); i++) {
    if (i > 0 && !(await pause(500, opts.signal))) break
    try {
      return await requestReveal(libp2p, c.producer, c, opts)
    } catch (err) {
      last = err as Error
    }
  }
  return last
}
