// A byzantine swarm in one process, for the attack tests (test/verify-swarm*.test.ts) and `layerswarm
// bench verify` (bench/verify.ts): real nodes on loopback (createNode: TCP, noise, yamux, gossipsub,
// the run's membership; startTrainingRuntime: the stage host, commitments, verification), a tiny
// model, a few dozen steps. Internal: not exported from core/testing/index.ts.
//
//   s0            stage 0 (originates the microbatches, runs the held-out eval at the end)
//   s1a, s1b      stage 1, honest
//   s1x           stage 1, the cheater: TrainingOptions.adversary (random, lazy, scaled, signflip,
//                 withhold), or an averaging member with a poisoned contribution (poison)
//   s2            stage 2, so the checked stage has neighbours on both sides (receipts of its forward
//                 hops at s2, of its backward hops at s0)
//   val           roles ['validator']: serves no stage, samples and re-checks hops
//   liar          (false-accuser) no stage, no validator: gossips an accusation of an honest s1 hop
//                 with a bogus bundle; every node must verify it, penalise the liar and convict nobody
//
// `verify: false` runs the same swarm without identity keys on the hops (no commitments, nothing to
// check), without a validator and with averaging's plain mean: the unverified baseline of the bench. Every node is stopped and the
// temporary directory removed however the run ends.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ComputeBackend } from '../contracts/backend.ts'
import type { Logger } from '../contracts/logger.ts'
import type { Membership } from '../contracts/membership.ts'
import { Tokens } from '../contracts/tokens.ts'
import { silentLogger } from '../logger.ts'
import { modelPreset, validateModelConfig, type ModelConfig } from '../model/config.ts'
import { numel, stageParamSpecs } from '../model/params.ts'
import { stageLayouts } from '../model/stage-split.ts'
import { createNode, type LayerswarmNode } from '../node/create-node.ts'
import type { PenaltyStatus, PeerJudge } from '../peer-judge.ts'
import type { AdversaryKind } from '../pipeline/adversary.ts'
import type { HostStatus } from '../pipeline/training-status.ts'
import { defaultManifest, runId as runIdOf, type RunManifest } from '../run/manifest.ts'
import { NodeVerification } from '../runtime/node-verification.ts'
import { parseTrainingOptions, startTrainingRuntime, type TrainingRuntime } from '../runtime/training-runtime.ts'
import { LayerswarmError } from '../errors.ts'
import { deadline, pause } from '../timers.ts'
import { requestReceipts, requestReveal, type RevealedHop } from '../verify/index.ts'

export type SwarmAttack = 'none' | AdversaryKind | 'poison' | 'false-accuser'
/** Every attack of issue 13, in the bench's order. */
export const SWARM_ATTACKS: readonly SwarmAttack[] = ['random', 'scaled', 'signflip', 'lazy', 'poison', 'withhold', 'false-accuser']

export type SwarmBackend = 'cpu' | 'webgpu'
export type SwarmNodeName = 's0' | 's1a' | 's1b' | 's1x' | 's2' | 'val' | 'liar'

export interface ByzantineSwarmOptions {
  readonly attack: SwarmAttack
  /** Optimizer steps of the run. Default 30. */
  readonly steps?: number
  /** Commitments on every hop and a validator (default true); false: neither (the unverified baseline). */
  readonly verify?: boolean
  /** With `verify`: run the validator node (default true); false measures the commitments alone, the cost every node pays. */
  readonly validator?: boolean
  /** The validator's check period (ms) and checks per period; default the Validator's (2000 ms, 1). */
  readonly checkInterval?: number
  readonly checksPerInterval?: number
  /** Stage-1 nodes besides the cheater (default 2). With `attack: 'none'` no cheater is started. */
  readonly honestStage1?: number
  /** Backend per node; default cpu (1 thread). WebGPU runs with allowSoftwareGpu (lavapipe). */
  readonly backends?: Partial<Record<SwarmNodeName, SwarmBackend>>
  /** Averaging period in steps (default: the poison attack 4, else none within the run). */
  readonly averagingPeriod?: number
  /** After the run, how long to wait at most for the detection to reach every honest node (ms). Default 60000. */
  readonly detectTimeoutMs?: number
  /** After the run, keep the validator checking the honest swarm this long (ms; the honest-only test). Default 0. */
  readonly checkAfterMs?: number
  /** The whole run's bound (ms). Default 240000. */
  readonly timeoutMs?: number
  readonly batch?: number
  readonly seqLen?: number
  readonly model?: ModelConfig
  readonly log?: Logger
}

export interface ByzantineSwarmResult {
  readonly attack: SwarmAttack
  /** The cheater's peer id (the liar for false-accuser), null without one. */
  readonly cheater: string | null
  /** Peer ids of the honest nodes (the validator included). */
  readonly honest: readonly string[]
  /**
   * Every honest node caught the cheater: convicted it (adversaries), penalised it for a false
   * accusation (false-accuser), or left it out of averaging and banned it (poison).
   */
  readonly detected: boolean
  /**
   * Checks until detection: the validator's checks (all peers) when the cheater was first convicted;
   * poison: the averaging rounds run by then; false-accuser: 1 (the accusation). Null: not detected.
   */
  readonly checks: number | null
  /** Honest nodes that convicted (penalised, for false-accuser) the cheater. */
  readonly caughtBy: number
  /** Honest nodes whose membership view no longer lists the cheater. */
  readonly excludedBy: number
  /** Convictions of honest peers, summed over honest nodes (the liar's own, self-made one excluded). */
  readonly falseConvictions: number
  /** Accusations honest nodes found false, besides the liar's. */
  readonly falseAccusations: number
  /** Per node, the penalties it counted against peers. */
  readonly penalties: Readonly<Record<string, PenaltyStatus>>
  /** The validator's status (null without one). */
  readonly validator: Readonly<Record<string, unknown>> | null
  /** poison: averaging status of the honest stage-1 nodes. */
  readonly averaging: ReadonlyArray<Readonly<Record<string, unknown>> | null>
  /** Held-out loss at the end (stage 0's eval; else the last stage's). */
  readonly evalLoss: number | null
  readonly steps: number
  /** From the start of training to stage 0's end of run (s). */
  readonly trainSeconds: number
  /** Tokens per second through the swarm (stage 0's completed tokens / trainSeconds). */
  readonly tokensPerSecond: number
  /** CPU seconds the whole process spent (all nodes and threads) per token trained, over the same window. */
  readonly cpuSecondsPerToken: number
  /** Training payload bytes sent by all nodes (forward and backward). */
  readonly trainingBytes: number
  /** Verification bytes, from counts (see verificationBytes()). */
  readonly verificationBytes: number
  readonly hops: number
}

/** The bench's and tests' default model: 3 blocks so each of the 3 stages holds one. */
export function swarmModel (): ModelConfig {
  return { ...modelPreset('tiny'), nLayer: 3, nHead: 2, dModel: 64, blockSize: 32 }
}

/** Bytes of an Ed25519-signed commitment (commitment.ts: 148 fixed + 38 peer id + 1 + 64 signature). */
const COMMITMENT_BYTES = 148 + 38 + 1 + 64
/** Receipts a validator asks for per check (Validator's receiptsMax default). */
const RECEIPTS_PER_CHECK = 8

interface Member {
  readonly name: SwarmNodeName
  readonly node: LayerswarmNode
  runtime?: TrainingRuntime
  verification?: NodeVerification
  readonly honest: boolean
}

/** Runs one swarm (see the top of this file) and reports what happened; every node stopped, the directory removed. */
export async function runByzantineSwarm (o: ByzantineSwarmOptions): Promise<ByzantineSwarmResult> {
  const timeout = deadline(o.timeoutMs ?? 240_000)
  const dir = await mkdtemp(join(tmpdir(), 'lsw-byz-'))
  const members: Member[] = []
  try {
    return await run(o, dir, members, timeout.signal)
  } finally {
    timeout.clear()
    for (const m of members) await m.runtime?.stop().catch(() => {})
    for (const m of members) await m.verification?.stop().catch(() => {})
    // last started first: a node stopping before the ones that bootstrapped from it is redialed
    for (const m of [...members].reverse()) await m.node.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

async function run (o: ByzantineSwarmOptions, dir: string, members: Member[], signal: AbortSignal): Promise<ByzantineSwarmResult> {
  const verify = o.verify ?? true
  const attack = o.attack
  const steps = o.steps ?? 30
  const manifest = swarmManifest(o, steps)
  const manifestFile = join(dir, 'manifest.json')
  await writeFile(manifestFile, JSON.stringify(manifest))
  const id = runIdOf(manifest)
  const log = o.log ?? silentLogger

  const start = async (name: SwarmNodeName, honest: boolean): Promise<Member> => {
    const backend = o.backends?.[name] ?? 'cpu'
    const node = await createNode({
      dataDir: join(dir, name),
      network: 'local',
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: members.length > 0 ? [members[0].node.addresses()[0]] : [],
      controlEndpoint: false,
      plugins: [backend === 'webgpu' ? 'backend-webgpu' : 'backend-cpu'],
      pluginOptions: backend === 'webgpu' ? { 'backend-webgpu': { allowSoftwareGpu: true } } : { 'backend-cpu': { threads: 1 } },
      runtime: { runId: id, stages: manifest.stages.count, membership: { ttlMs: 15_000 } },
      logger: log
    })
    const m: Member = { name, node, honest }
    members.push(m)
    await node.start()
    for (const other of members.slice(0, -1)) await node.libp2p.dial(other.node.libp2p.getMultiaddrs()[0], { signal }).catch(() => {})
    return m
  }
  const train = async (m: Member, flags: Record<string, unknown>, extra: { adversary?: AdversaryKind } = {}): Promise<void> => {
    const options = { ...(verify ? {} : { robustAveraging: false }), ...parseTrainingOptions({ runManifest: manifestFile, maxInflight: 4, evalBatches: 8, sampleNodeId: 'byzantine-swarm', peerWait: 60_000, ...flags }), ...extra }
    // the unverified baseline: a node without its identity key signs nothing and asks for no commitments
    const node = verify ? m.node : new Proxy(m.node, { get: (t, k) => k === 'privateKey' ? undefined : Reflect.get(t, k) })
    m.runtime = await startTrainingRuntime(node, options, log)
  }

  // nodes first (they find each other), then the runtimes, stage 2 first so stage 0 finds a full pipeline
  const s0 = await start('s0', true)
  const s2 = await start('s2', true)
  const s1: Member[] = []
  for (let i = 0; i < (o.honestStage1 ?? 2); i++) s1.push(await start(i === 0 ? 's1a' : 's1b', true))
  const cheaterKind = attack === 'none' || attack === 'false-accuser' ? undefined : attack
  const cheater = cheaterKind != null ? await start('s1x', false) : undefined
  const val = verify && o.validator !== false ? await start('val', true) : undefined
  const liar = attack === 'false-accuser' ? await start('liar', false) : undefined
  const honest = members.filter(m => m.honest)

  if (val != null) await train(val, { role: 'validator', ...(o.checkInterval != null ? { checkInterval: o.checkInterval } : {}), ...(o.checksPerInterval != null ? { checksPerInterval: o.checksPerInterval } : {}) })
  if (liar != null) liar.verification = await liarVerification(liar.node, manifest, log)
  await train(s2, { stage: 2 })
  for (const m of s1) await train(m, { stage: 1 })
  if (cheater != null && cheaterKind != null) await train(cheater, { stage: 1 }, { adversary: cheaterKind })
  const t0 = Date.now()
  // CPU time of this process (every node, the validator and their worker threads): the cost of the run
  const cpu0 = process.cpuUsage()
  await train(s0, { stage: 0 })

  const cheaterId = (cheater ?? liar)?.node.peerId ?? null
  const judges = attack === 'poison' ? s1 : honest
  const validatorChecks = (): number => Number((val?.runtime?.status().verification?.validator as { checks?: number } | undefined)?.checks ?? 0)
  const averagingRounds = (): number => Math.max(0, ...s1.map(m => m.runtime?.status().averaging?.rounds ?? 0))
  const firstCaught = (): boolean => cheaterId != null && judges.some(m => caught(m, cheaterId, attack))
  // checks until detection: the validator's count when the cheater is first caught by anyone
  // (false-accuser: the one accusation each node verifies)
  let checks: number | null = null
  let over = false
  const watch = (async () => {
    if (cheaterId == null) return
    await poll(() => over || firstCaught(), signal)
    if (firstCaught()) checks = attack === 'false-accuser' ? 1 : attack === 'poison' ? averagingRounds() : validatorChecks()
  })()

  const accused = liar != null ? falseAccusation(liar, s2, s1[0], id, signal) : undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    const fail = (): void => { reject(new SwarmDeadlineError(`the byzantine swarm (${attack}) ran past its deadline`)) }
    if (signal.aborted) fail()
    else signal.addEventListener('abort', fail, { once: true })
  })
  aborted.catch(() => {})
  await Promise.race([s0.runtime?.done, aborted])
  const trainSeconds = (Date.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  await Promise.race([accused, aborted])
  // unverified, nothing will catch the cheater: no wait
  if (cheaterId != null && verify) await poll(() => judges.every(m => caught(m, cheaterId, attack)), signal, o.detectTimeoutMs ?? 60_000)
  if ((o.checkAfterMs ?? 0) > 0) await pause(o.checkAfterMs ?? 0, signal)
  over = true
  await watch

  const st = (m: Member): HostStatus | undefined => m.runtime?.status()
  const s0st = st(s0)
  const caughtBy = cheaterId == null ? 0 : judges.filter(m => caught(m, cheaterId, attack)).length
  const honestIds = new Set(honest.map(m => m.node.peerId))
  let falseConvictions = 0
  let falseAccusations = 0
  for (const m of honest) {
    falseConvictions += viewOf(m).convictions.filter(c => honestIds.has(c.peer)).length
    falseAccusations += falseAccusationsOf(m, liar?.node.peerId)
  }
  const stagesSt = members.filter(m => m.runtime != null).map(m => st(m) as HostStatus)
  const trainingBytes = stagesSt.reduce((a, s) => a + s.bytesForward + s.bytesBackward, 0)
  const hops = stagesSt.reduce((a, s) => a + Number((s.verification?.ledger as { totals?: { microbatches?: number } } | undefined)?.totals?.microbatches ?? 0), 0)
  const validatorStatus = (st(val ?? s0)?.verification?.validator as Record<string, unknown> | undefined) ?? null
  return {
    attack,
    cheater: cheaterId,
    honest: [...honestIds],
    detected: cheaterId != null && caughtBy === judges.length,
    checks: cheaterId != null && caughtBy === judges.length ? (checks ?? validatorChecks()) : null,
    caughtBy,
    excludedBy: cheaterId == null || attack === 'false-accuser' ? 0 : honest.filter(m => !listed(m, cheaterId)).length,
    falseConvictions,
    falseAccusations,
    penalties: Object.fromEntries(members.map(m => [m.name, judgeOf(m).penalties()])),
    validator: validatorStatus,
    averaging: s1.map(m => (st(m)?.averaging as Record<string, unknown> | null | undefined) ?? null),
    evalLoss: s0st?.evalLoss ?? st(s2)?.evalLoss ?? null,
    steps: s0st?.step ?? 0,
    trainSeconds,
    tokensPerSecond: trainSeconds > 0 ? (s0st?.tokens ?? 0) / trainSeconds : 0,
    cpuSecondsPerToken: (cpu.user + cpu.system) / 1e6 / Math.max(1, s0st?.tokens ?? 0),
    trainingBytes,
    verificationBytes: verify ? verificationBytes(manifest, Number(validatorStatus?.checks ?? 0), hops) : 0,
    hops
  }
}

/** The swarm did not finish in time. */
export class SwarmDeadlineError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_SWARM_DEADLINE', message)
  }
}

/** Waits until `cond` holds, the signal aborts or `timeoutMs` passed; polled every 50 ms. */
async function poll (cond: () => boolean, signal: AbortSignal, timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
  const until = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() >= until || !await pause(50, signal)) return cond()
  }
  return true
}

function judgeOf (m: Member): PeerJudge {
  return m.node.container.resolve<PeerJudge>(Tokens.PeerJudge)
}

interface VerificationView {
  convictions: Array<{ peer: string }>
  ledger: { peers?: Record<string, { accusations?: { false?: number } }> }
}

function viewOf (m: Member): VerificationView {
  const v = (m.runtime?.status().verification ?? m.verification?.status() ?? {}) as Partial<VerificationView>
  return { convictions: v.convictions ?? [], ledger: v.ledger ?? {} }
}

/** Accusations `m` found false, by accusers other than `except`. */
function falseAccusationsOf (m: Member, except: string | undefined): number {
  return Object.entries(viewOf(m).ledger.peers ?? {}).filter(([p]) => p !== except).reduce((a, [, l]) => a + (l.accusations?.false ?? 0), 0)
}

/** Whether `m` caught `cheater`: see ByzantineSwarmResult.detected. */
function caught (m: Member, cheater: string, attack: SwarmAttack): boolean {
  if (attack === 'false-accuser') return (viewOf(m).ledger.peers?.[cheater]?.accusations?.false ?? 0) >= 1
  if (attack === 'poison') {
    const avg = m.runtime?.status().averaging
    return avg != null && avg.excluded > 0 && judgeOf(m).penaltiesOf(cheater) > 0
  }
  return viewOf(m).convictions.some(c => c.peer === cheater)
}

/** Whether `m`'s membership view still lists `peer`. */
function listed (m: Member, peer: string): boolean {
  return m.node.container.resolve<Membership>(Tokens.Membership).member(peer) != null
}

/** The liar's verification: what every node runs, without a stage or a validator; it accuses by hand. */
async function liarVerification (node: LayerswarmNode, manifest: RunManifest, log: Logger): Promise<NodeVerification> {
  const c = node.container
  const v = new NodeVerification({
    libp2p: node.libp2p as never,
    privateKey: node.privateKey,
    container: c,
    manifest,
    backend: c.resolve<ComputeBackend>(Tokens.ComputeBackend),
    membership: c.resolve<Membership>(Tokens.Membership),
    judge: judgeOf({ node } as Member),
    pipeline: () => undefined,
    log
  })
  await v.start()
  return v
}

/**
 * Attack (g): the liar takes a valid commitment of `victim`'s forward hop (a receipt `receiver`
 * holds), has the victim reveal it, and accuses it of a mismatch with a bundle whose output is
 * zeroed: not the committed hop, so every node that verifies it finds the accusation false.
 */
async function falseAccusation (liar: Member, receiver: Member, victim: Member, runId: string, signal: AbortSignal): Promise<void> {
  const libp2p = liar.node.libp2p
  const producer = victim.node.peerId
  let hop: RevealedHop | undefined
  while (hop == null) {
    if (!await pause(200, signal)) return
    try {
      const [r] = await requestReceipts(libp2p as never, receiver.node.peerId, { producer, kind: 'forward', max: 1 }, { runId, timeoutMs: 5000, signal })
      if (r != null) hop = await requestReveal(libp2p as never, producer, r.commitment, { runId, timeoutMs: 10_000, signal })
    } catch {
      // not yet: no receipts, or the hop left the retention window; try a newer one
    }
  }
  const evidence = liar.verification?.evidence
  if (evidence == null) return
  // every other node subscribed, so the accusation reaches them all
  const others = (): number => (libp2p.services as { pubsub?: { getSubscribers: (t: string) => unknown[] } }).pubsub?.getSubscribers(evidence.topic).length ?? 0
  await poll(() => others() >= 5, signal, 30_000)
  const output = { ...hop.record.output, bytes: new Uint8Array(hop.record.output.bytes.length) }
  await evidence.accuse('mismatch', hop.record.commitment, { record: { ...hop.record, output }, params: hop.params }, 'bogus: a zeroed output')
}

/** The swarm's manifest: 3 stages, the tiny model, raw codecs, averaging (pseudo-grad) only where asked (or for poison). */
function swarmManifest (o: ByzantineSwarmOptions, steps: number): RunManifest {
  const period = o.averagingPeriod ?? (o.attack === 'poison' ? 4 : steps + 1)
  return defaultManifest({
    name: 'byzantine-swarm',
    model: { ...(o.model ?? swarmModel()) },
    stages: { count: 3, split: null },
    data: { corpus: 'builtin:kjv', seed: 1, tokenizer: 'byte', batchSize: o.batch ?? 4, seqLen: o.seqLen ?? 32 },
    optimizer: { lr: 3e-3, warmup: 2, steps, weightDecay: 0.1, clip: 1 },
    codecs: { activation: 'none', 'activation-grad': 'none', parameter: 'none', 'parameter-grad': 'none' },
    averaging: { period, mode: 'pseudo-grad' },
    bottleneck: null
  }, { validateModel: validateModelConfig })
}

/**
 * Verification's bytes, from counts (libp2p has no per-protocol byte counter here): every hop's
 * signed commitment, and per check a receipts exchange (RECEIPTS_PER_CHECK commitments) and a reveal
 * (two [B, T, C] f32 inputs and one output, and the largest stage's weights: the validator refetches
 * them for each new digest, i.e. after every optimizer step). An upper bound per check.
 */
function verificationBytes (m: RunManifest, checks: number, hops: number): number {
  const model = validateModelConfig(m.model)
  const weights = Math.max(...stageLayouts(model, m.stages.count, 0).map(l => stageParamSpecs(l).reduce((a, p) => a + numel(p.shape), 0))) * 4
  const tensor = m.data.batchSize * m.data.seqLen * model.dModel * 4
  return hops * COMMITMENT_BYTES + checks * (RECEIPTS_PER_CHECK * COMMITMENT_BYTES + 3 * tensor + weights)
}
