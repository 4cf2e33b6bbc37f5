// A training node's part in verification (docs/verification.md), assembled once per node:
//
//   reveal, receipts  serve the hops this node sent (to a checker) and the commitments it received
//                     (to a validator sampling its neighbours' work), from the serving pipeline
//   evidence          accusations gossiped on the run's evidence topic, each verified here by
//                     recomputing it; a verified one convicts the producer, a false one the accuser
//   convictions       a convicted peer leaves this node's membership view for good (routing,
//                     averaging, the scheduler and the run end stop seeing it), the judge puts its
//                     gossip score at the floor and the stage server refuses its work
//   ledger            per peer, the work this node holds signed receipts for, and check outcomes
//   validator         the validator role (`--role validator`): samples and re-checks peers' hops
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import type { ComputeBackend } from '../contracts/backend.ts'
import type { Logger } from '../contracts/logger.ts'
import type { Membership } from '../contracts/membership.ts'
import type { DependencyContainer } from 'tsyringe'
import { boundaryCodecs } from '../codecs/tensor-codecs.ts'
import type { PeerJudge } from '../peer-judge.ts'
import type { PipelineNode } from '../pipeline/pipeline-node.ts'
import { runId as runIdOf, type RunManifest } from '../run/manifest.ts'
import { Convictions, EvidenceService, ReceiptServer, RevealServer, Validator, WorkLedger } from '../verify/index.ts'
import type { HopCommitment } from '../verify/commitment.ts'

export interface NodeVerificationInit {
  readonly libp2p: Libp2p
  readonly privateKey: PrivateKey
  readonly container: DependencyContainer
  readonly manifest: RunManifest
  readonly backend: ComputeBackend
  readonly membership: Membership
  readonly judge: PeerJudge
  /** The pipeline serving now, if any (its hop records and receipts are served). */
  readonly pipeline: () => PipelineNode | undefined
  /** Run the validator role. */
  readonly validator?: { readonly intervalMs?: number, readonly checksPerInterval?: number, readonly stages?: readonly number[] }
  readonly log?: Logger
}

export class NodeVerification {
  readonly convictions = new Convictions()
  readonly ledger: WorkLedger
  readonly evidence: EvidenceService
  readonly validator: Validator | undefined
  private readonly reveal: RevealServer
  private readonly receipts: ReceiptServer
  private readonly unsubscribe: () => void

  constructor (init: NodeVerificationInit) {
    const m = init.manifest
    const runId = runIdOf(m)
    const codecs = boundaryCodecs({ activation: m.codecs.activation, 'activation-grad': m.codecs['activation-grad'] }, init.container)
    this.ledger = new WorkLedger({ convictions: this.convictions })
    this.evidence = new EvidenceService({
      libp2p: init.libp2p as never, privateKey: init.privateKey, judge: init.judge, convictions: this.convictions, ledger: this.ledger,
      manifest: m, backend: init.backend, codecs, isLive: p => init.membership.member(p) != null, log: init.log
    })
    const admit = async (peer: string, signal: AbortSignal): Promise<void> => { await init.judge.admit(peer, signal, 'verification') }
    this.reveal = new RevealServer(init.libp2p as never, { runId, source: () => init.pipeline()?.hopRecords(), log: init.log, admit })
    this.receipts = new ReceiptServer(init.libp2p, { runId, source: () => init.pipeline()?.receipts(), log: init.log, admit })
    this.validator = init.validator == null
      ? undefined
      : new Validator({
        ...init.validator,
        libp2p: init.libp2p,
        evidence: this.evidence,
        ledger: this.ledger,
        manifest: m,
        backend: init.backend,
        codecs,
        peersOfStage: s => init.membership.peersForStage(s),
        receipts: () => init.pipeline()?.receipts(),
        paramsOf: d => init.pipeline()?.hopRecords()?.params(d),
        log: init.log
      })
    this.unsubscribe = this.convictions.onConviction(c => { init.membership.exclude(c.peer) })
  }

  /** Counts a commitment this node's pipeline accepted (the ledger's signed records). */
  receipt (c: HopCommitment, tokens: number): void {
    this.ledger.receipt(c, tokens)
  }

  async start (): Promise<void> {
    await this.evidence.start()
    await this.reveal.start()
    await this.receipts.start()
    await this.validator?.start()
  }

  async stop (): Promise<void> {
    this.unsubscribe()
    await this.validator?.stop()
    await this.receipts.stop()
    await this.reveal.stop()
    await this.evidence.stop()
  }

  status (): Record<string, unknown> {
    return {
      ledger: this.ledger.status(),
      convictions: this.convictions.list(),
      evidence: this.evidence.status(),
      ...(this.validator != null ? { validator: this.validator.status() } : {})
    }
  }
}
