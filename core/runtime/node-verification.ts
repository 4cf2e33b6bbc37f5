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
//   weights           a validator with --chain also turns the ledger into weights on chain (the
//                     WeightSetter, core/chain/weight-setter.ts), stage cost = blocks per stage
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
import { join } from 'node:path'
import type { ChainNode } from '../chain/chain-node.ts'
import type { WeightSetter } from '../chain/weight-setter.ts'
import { splitStages } from '../model/stage-split.ts'
import type { ModelConfig } from '../model/config.ts'
import { Tokens } from '../contracts/tokens.ts'
import type { NodeConfig } from '../node/create-node.ts'

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
  /** The node's chain service (--chain): a validator sets weights on chain through it. */
  readonly chain?: ChainNode
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
  private weights: WeightSetter | undefined

  constructor (private readonly init: NodeVerificationInit) {
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
    if (this.validator != null && this.init.chain != null) await this.startWeights(this.init.chain)
  }

  /** The validator's weight setter (see the top of this file); loaded only here, with --chain. */
  private async startWeights (chain: ChainNode): Promise<void> {
    const reader = chain.reader()
    const writer = chain.writer()
    if (reader == null || writer == null) {
      this.init.log?.forComponent('layerswarm:verify').warn('the chain is read through an injected reader: no weights are set')
      return
    }
    const { WeightSetter } = await import('../chain/weight-setter.ts')
    const { layerStageCost } = await import('../chain/weights.ts')
    const m = this.init.manifest
    const layers = m.stages.split ?? splitStages(m.model as unknown as ModelConfig, m.stages.count).map(r => r.endBlock - r.firstBlock)
    const dataDir = this.init.container.isRegistered(Tokens.NodeConfig, true) ? this.init.container.resolve<NodeConfig>(Tokens.NodeConfig).dataDir : undefined
    this.weights = new WeightSetter({
      reader,
      writer,
      netuid: chain.netuid,
      ledger: () => this.ledger.status(),
      hotkeyOf: p => chain.hotkeyOf(p),
      metagraph: () => chain.metagraph(),
      stageCost: layerStageCost(layers),
      ...(dataDir != null ? { pendingPath: join(dataDir, `weights-pending-${chain.netuid}.json`) } : {}),
      log: this.init.log
    })
    await this.weights.start()
    chain.attachWeightSetter(this.weights)
  }

  async stop (): Promise<void> {
    this.unsubscribe()
    this.init.chain?.attachWeightSetter(undefined)
    await this.weights?.stop()
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
      ...(this.validator != null ? { validator: this.validator.status() } : {}),
      ...(this.weights != null ? { weights: this.weights.status() } : {})
    }
  }
}
