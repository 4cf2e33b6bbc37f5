// Whose fault it was, and what follows: the one place where a verdict on a peer (core/errors.ts
// Verdict, carried by the error that was thrown on the peer's data) becomes consequences.
//
//   judge(peer, err, area)   the error's verdict; 'reject' adds one to the peer's penalty count
//                            (the node's only penalty counter: status, scores and bans read it)
//   sinks                    every judgement with a verdict goes to the subscribed sinks: the
//                            pipeline router bans the peer from routing for a while, averaging
//                            bans it from rounds (their own ban lengths; 'ignore' backs off mildly)
//   score(peer)              gossipsub's application-specific score (createNode wires it): each
//                            penalty costs 0.5, so 2 penalties reach gossipsub's default gossip
//                            threshold (-10 at weight 10), 10 its publish threshold (-50); capped
//                            at the graylist threshold (-80) so one peer's count cannot overflow;
//                            a peer convicted of cheating (CONVICTED_CODE) sits at the cap
//   admission                with `start --chain`, the policy of who may take part (useAdmission,
//                            core/contracts/admission.ts): admit(peer) before serving a peer's
//                            stream, admissionOf(peer) in gossip validators; a refusal is recorded
//                            once per refusal as a 'reject' (the router bans it, gossipsub scores it
//                            down). Without a policy everyone is admitted at once: nothing changes.
//
// One judge per node (createNode registers it under Tokens.PeerJudge); a part built without a node
// (tests, the pipeline on a bare libp2p) makes its own.
import { verdictOf, type Verdict } from './errors.ts'
import type { AdmissionState, PeerAdmission } from './contracts/admission.ts'

/** Which part of the node saw the peer's data. */
export type JudgeArea = 'pipeline' | 'averaging' | 'state-sync' | 'gossip' | 'verification'

export interface Judgement {
  readonly peer: string
  readonly verdict: Exclude<Verdict, 'none'>
  readonly area: JudgeArea
  /** The error's code (for logs and reports). */
  readonly code: string
  /** The stage the peer served in that exchange, where one applies (the router bans per stage). */
  readonly stage?: number
}

export type JudgementSink = (j: Judgement) => void

export interface PenaltyStatus {
  total: number
  byPeer: Record<string, number>
}

const SCORE_PER_PENALTY = 0.5
const MIN_SCORE = -8
/** The code of a conviction for cheating (core/verify's ConvictedError): the peer is out for good. */
export const CONVICTED_CODE = 'ERR_VERIFY_CONVICTED'

export class PeerJudge {
  private readonly counts = new Map<string, number>()
  private readonly convicted = new Set<string>()
  private readonly sinks = new Set<JudgementSink>()
  private admission: PeerAdmission | undefined
  /** Peers whose current refusal was already recorded (cleared when they are admitted). */
  private readonly refusalRecorded = new Set<string>()

  /** Sets the admission policy (the chain's, with --chain). */
  useAdmission (admission: PeerAdmission): void {
    this.admission = admission
  }

  /** The cached admission of `peer` (sync, for gossip validators): 'admitted' when there is no policy. */
  admissionOf (peer: string): AdmissionState {
    return this.admission?.state(peer) ?? 'admitted'
  }

  /** The hotkey bound to `peer`, where the policy verified one. */
  hotkeyOf (peer: string): string | undefined {
    return this.admission?.hotkeyOf(peer)
  }

  /**
   * Resolves when `peer` may take part (at once without a policy); else throws the policy's error
   * (NotAdmittedError is recorded as a 'reject' in `area`, once per refusal).
   */
  async admit (peer: string, signal?: AbortSignal, area: JudgeArea = 'gossip'): Promise<void> {
    const admission = this.admission
    if (admission == null) return
    try {
      await admission.admit(peer, signal)
      this.refusalRecorded.delete(peer)
    } catch (err) {
      if (verdictOf(err) === 'reject' && !this.refusalRecorded.has(peer)) {
        this.refusalRecorded.add(peer)
        this.judge(peer, err, area)
      }
      throw err
    }
  }

  /**
   * Judges `peer` by an error raised while taking its data in `area`; returns the verdict.
   * Apply only to errors raised on the peer's data: a local failure carries 'none' anyway.
   */
  judge (peer: string, err: unknown, area: JudgeArea, stage?: number): Verdict {
    const verdict = verdictOf(err)
    if (verdict === 'none') return verdict
    const code = (err as { code?: unknown }).code
    this.record({ peer, verdict, area, code: typeof code === 'string' ? code : 'ERR_UNKNOWN', ...(stage != null ? { stage } : {}) })
    return verdict
  }

  /** Records a judgement reached elsewhere (e.g. a verified accusation). */
  record (j: Judgement): void {
    if (j.verdict === 'reject') this.counts.set(j.peer, (this.counts.get(j.peer) ?? 0) + 1)
    if (j.verdict === 'reject' && j.code === CONVICTED_CODE) this.convicted.add(j.peer)
    for (const sink of this.sinks) sink(j)
  }

  /** Subscribes a sink to every judgement; returns the unsubscribe function. */
  onJudgement (sink: JudgementSink): () => void {
    this.sinks.add(sink)
    return () => { this.sinks.delete(sink) }
  }

  /** Whether `peer` was convicted of cheating (it gets no work and no say here). */
  isConvicted (peer: string): boolean {
    return this.convicted.has(peer)
  }

  penaltiesOf (peer: string): number {
    return this.counts.get(peer) ?? 0
  }

  penalties (): PenaltyStatus {
    let total = 0
    for (const n of this.counts.values()) total += n
    return { total, byPeer: Object.fromEntries(this.counts) }
  }

  /** gossipsub's appSpecificScore for `peer` (<= 0). */
  score (peer: string): number {
    if (this.convicted.has(peer)) return MIN_SCORE
    const n = this.penaltiesOf(peer)
    return n === 0 ? 0 : Math.max(MIN_SCORE, -SCORE_PER_PENALTY * n)
  }
}
