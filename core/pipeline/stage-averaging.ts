// Averaging in the pipeline: every `manifest.averaging.period` optimizer steps, the nodes serving
// one stage average its parameters through the Averager (core/averaging: DHT group, butterfly
// all-reduce; `params` or DiLoCo `pseudo-grad` mode, as the manifest says).
//
//   trigger    the swarm's step, from whichever source tells this node first: its own step record
//              (StageAveraging.stepped), a stage-0 heartbeat or a microbatch header (observe()), or
//              a stage partner's greeting for the next round (asked()):
//              round = floor(step / period) (1-based swarm step), once per round number. A node of a
//              doubled stage that gets no microbatch of the boundary step (the router sent them all to
//              its partner; the run ended) used to reach the round only with its next microbatch, up
//              to several steps later, or never: its partner waited out the join deadline alone
//              (docs/averaging.md, "Why rounds ran alone"). Before the round, gradients of steps the
//              swarm has finished are applied (StageWorker.flushThrough).
//   round      queued on the worker's exclusive section (no microbatch runs meanwhile): flatten the
//              stage parameters in stageParamSpecs order, Averager.round(weight = samples since the
//              last round, stageSize = this node + its stage peers in the directory), write the
//              result back, measure the distance before and after (docs/averaging.md, "In the pipeline")
//   bounded    a stage served by this node alone skips at once; a round is bounded by the Averager's
//              deadlines (joinMs + 2 phases); a failure is logged and counted, training goes on
//
// Group members are found two ways at once: among the stage's peers the pipeline's PeerSource
// (the gossiped directory) lists, and through the DHT when the node has one (libp2p.services.dht).
// The directory alone suffices for a stage no larger than a group; the DHT still finds a member
// whose heartbeats have not reached this node yet.
import type { Libp2p } from '@libp2p/interface'
import type { DependencyContainer } from 'tsyringe'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { sleep } from '../timers.ts'
import { fnv1aBits as fnv1a } from '../hash.ts'
import { Averager, DhtGroupFinder, shardCodecs, type AveragingMode, type GroupFinder, type GroupQuery, type RobustAveragingOptions } from '../averaging/index.ts'
import type { FaultInjection } from '../averaging/all-reduce-round.ts'
import { CodecSet } from '../codec-set.ts'
import type { RunManifest } from '../run/manifest.ts'
import type { PeerSource } from './router.ts'
import type { StageWorker } from './stage-worker.ts'
import type { PeerJudge } from '../peer-judge.ts'

export interface StageAveragingOptions {
  /** How long members look for each other (ms). Default 3000. */
  readonly joinMs?: number
  /** A fixed per-phase deadline of the all-reduce (ms); default the Averager's bandwidth rule. */
  readonly phaseTimeoutMs?: number
  /** Who is in a group; default the peer source's stage peers, plus the DHT when libp2p has one. */
  readonly finder?: GroupFinder
  /** After a round with a group in which every shard arrived: its result, the same bits on every such member (state sync serves it). */
  readonly onAgreed?: (a: AgreedRound) => void
  /** How shard owners combine contributions; default robust (core/averaging/robust-shard.ts). */
  readonly robust?: RobustAveragingOptions
  /** Misbehave on purpose (a poisoning adversary: verification tests and bench only). */
  readonly faults?: FaultInjection
}

/** A round's result as every member that received every shard holds it (`params`: flat, stageParamSpecs order; copy to keep). */
export interface AgreedRound {
  readonly round: number
  /** The 1-based swarm step of the round. */
  readonly step: number
  readonly group: readonly string[]
  readonly mode: AveragingMode
  readonly params: Float32Array
}

export interface StageAveragingInit extends StageAveragingOptions {
  readonly libp2p: Libp2p
  readonly runId: string
  readonly manifest: RunManifest
  readonly stage: number
  readonly worker: StageWorker
  readonly source: PeerSource
  /** The swarm step this node starts at (rounds at or before it are not run). */
  readonly startStep?: number
  readonly container?: DependencyContainer
  /** The node's judge: averaging's verdicts on peers count there (the Averager's default: one of its own). */
  readonly judge?: PeerJudge
  readonly log?: Logger
}

/** `averaging` in the training status (docs/averaging.md, "In the pipeline"). */
export interface AveragingStatus {
  readonly period: number
  readonly mode: AveragingMode
  /** Rounds this node averaged in a group of two or more. */
  rounds: number
  /** Rounds skipped because no other node served the stage, or that found no partner in time. */
  alone: number
  /** Rounds that found no partner although the view listed peers of the stage, and were tried once more (a retry round key). */
  retried: number
  /** Rounds skipped because every partner had finished them (this node came late: a joiner's first round) or did not run averaging yet (a joiner syncing its state). */
  late: number
  /** Rounds that failed (error logged; the parameters were left as they were). */
  failed: number
  /** Round triggers dropped because the previous round was still queued or running. */
  busy: number
  /** The last round with a group (the one paramsDigest and the divergences belong to). */
  lastRound: number | null
  /** Group size of the last round tried (1: nobody found). */
  lastGroupSize: number | null
  /** Totals over all rounds: shards that kept local values, peers left out of a round. */
  lostShards: number
  excluded: number
  /** Last round with a group: L2 distance of this node's parameters to the round's result before writing it back. */
  divergenceBefore: number | null
  /** The same distance after writing back (parameters read back from the backend): 0 when the write-back took. */
  divergenceAfter: number | null
  /** L2 norm of the round's result, to put the distances in scale. */
  paramNorm: number | null
  /** FNV-1a of the stage parameters' bits right after the last round: equal on members holding identical values. */
  paramsDigest: string | null
  /** Milliseconds the last round held the stage (group formation + all-reduce + write-back). */
  lastMs: number | null
  /** Milliseconds every round tried so far held the stage, together (Prometheus: layerswarm_allreduce_seconds_total). */
  totalMs: number
  /** Per round with a group: [round, 1-based step, groupSize, divergenceBefore, divergenceAfter]. */
  history: Array<[number, number, number, number, number]>
  lastError: string | null
}

const MAX_HISTORY = 200

export class StageAveraging {
  readonly period: number
  private readonly averager: Averager
  private readonly log: Logger
  private readonly me: string
  private readonly abort = new AbortController()
  private lastRound: number
  private samples = 0
  private pending: Promise<void> | undefined
  /** The last round a partner's greeting started here (logged with the round). */
  private askedRound = -1
  private readonly s: AveragingStatus

  constructor (private readonly init: StageAveragingInit) {
    const m = init.manifest
    this.period = m.averaging.period
    this.me = init.libp2p.peerId.toString()
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:pipeline:averaging')
    this.lastRound = Math.floor((init.startStep ?? 0) / this.period)
    const services = (init.libp2p as unknown as { services?: { dht?: unknown } }).services
    const fromSource = new SourceGroupFinder(() => init.source.peersForStage(init.stage))
    // only peers the view lists at the stage are partners: Sybil provider records cannot fill a group (group.ts)
    const isPartner = (peer: string): boolean => init.source.peersForStage(init.stage).includes(peer)
    const finder = init.finder ?? (services?.dht != null ? new EitherGroupFinder([fromSource, new DhtGroupFinder(init.libp2p, { log: init.log, isPartner })]) : fromSource)
    this.averager = new Averager(init.libp2p as never, {
      runId: init.runId,
      mode: m.averaging.mode,
      codecs: shardCodecs(m.codecs, init.container != null ? CodecSet.fromContainer(init.container).codecs : undefined),
      finder,
      joinMs: init.joinMs,
      phaseTimeoutMs: init.phaseTimeoutMs,
      judge: init.judge,
      onAsked: (stage, round, peer) => { this.asked(stage, round, peer) },
      robust: init.robust,
      faults: init.faults,
      log: init.log
    })
    this.s = {
      period: this.period,
      mode: m.averaging.mode,
      rounds: 0,
      alone: 0,
      retried: 0,
      late: 0,
      failed: 0,
      busy: 0,
      lastRound: null,
      lastGroupSize: null,
      lostShards: 0,
      excluded: 0,
      divergenceBefore: null,
      divergenceAfter: null,
      paramNorm: null,
      paramsDigest: null,
      lastMs: null,
      totalMs: 0,
      history: [],
      lastError: null
    }
  }

  async start (): Promise<void> {
    await this.averager.start()
  }

  /** Aborts a round in progress (its deadlines would end it anyway) and waits for it; unregisters the protocol. */
  async stop (): Promise<void> {
    this.abort.abort()
    await this.averager.stop()
    await this.pending
  }

  status (): AveragingStatus {
    return { ...this.s, history: this.s.history.slice() }
  }

  /**
   * The worker applied a step (1-based `step`) over `samples` sequences. Called from the worker's
   * step record, i.e. inside its lock: the round is queued behind it, never awaited here.
   */
  stepped (step: number, samples: number): void {
    this.samples += samples
    this.observe(step)
  }

  /**
   * The swarm has completed `step` optimizer steps (1-based: a stage-0 node's count, or the step of a
   * microbatch seen here). Starts the round that step reaches, unless it ran or is past.
   */
  observe (step: number): void {
    if (!Number.isSafeInteger(step) || step < 0) return
    const round = Math.floor(step / this.period)
    if (round <= this.lastRound || this.abort.signal.aborted) return
    this.lastRound = round
    if (this.pending != null) {
      this.s.busy++
      this.log.warn('averaging round skipped: the previous one is still running', { round, step })
      return
    }
    this.pending = (async () => {
      // gradients of the steps the swarm finished belong in the parameters being averaged
      await this.init.worker.flushThrough(round * this.period - 1)
      const weight = Math.max(1, this.samples)
      this.samples = 0
      const step = round * this.period
      // the retry takes the stage again in a section of its own: microbatches that queued during the
      // first try run in between (a late joiner that missed its peers' group held a stage-0
      // microbatch past its deadline for both tries: docs/networks.md, "Across slow links")
      if (await this.init.worker.exclusive(async () => await this.run(round, step, weight, false))) {
        await this.init.worker.exclusive(async () => await this.run(round, step, weight, true))
      }
    })()
      .catch(err => { this.log.error('averaging round crashed', { round, error: (err as Error).message }) })
      .finally(() => { this.pending = undefined })
  }

  /**
   * A stage partner greeted us for a round we have not started: it learnt the boundary step first.
   * Started now, the round meets the partners' join window; otherwise a member that got no microbatch
   * of the boundary step (three nodes of a stage, two microbatches a step) learnt it from stage 0's
   * next heartbeat, ~1-2 s later across 400 ms round trips, and met nobody: its partners' 3 s window
   * had closed (docs/networks.md, "Across slow links"). Only the next round, only from a peer the view
   * lists at the stage, and not while a round runs: a hostile greeter can start one round early, never
   * make this node skip rounds or queue them.
   */
  private asked (stage: number, round: number, peer: string): void {
    if (stage !== this.init.stage || round !== this.lastRound + 1 || this.pending != null || this.abort.signal.aborted) return
    if (!this.init.source.peersForStage(stage).includes(peer)) return
    this.log.debug('averaging round started by a partner\'s greeting', { round, peer })
    this.askedRound = round
    this.observe(round * this.period)
  }

  /** A round tried since `t0` is over: how long it held the stage. */
  private held (t0: number): void {
    this.s.lastMs = performance.now() - t0
    this.s.totalMs += this.s.lastMs
  }

  /** One try of a round (`retry`: under the retry key); true when it found no partner while the view lists some, and a retry is due. */
  private async run (round: number, step: number, weight: number, retry: boolean): Promise<boolean> {
    const signal = this.abort.signal
    if (signal.aborted) return false
    const stageSize = new Set([this.me, ...this.init.source.peersForStage(this.init.stage)]).size
    if (stageSize < 2) {
      this.s.alone++
      this.log.debug('averaging round skipped: no other node serves the stage', { round, step })
      return false
    }
    const t0 = performance.now()
    const params = this.init.worker.stage.params
    try {
      const flat = flatten(await params.download(), params.specs.map(s => s.name))
      const r = await this.averager.round({ round: retry ? retryRound(round) : round, stage: this.init.stage, params: flat, weight, stageSize, signal })
      const others = this.init.source.peersForStage(this.init.stage).filter(p => p !== this.me)
      if (r.groupSize < 2 && others.length > 0 && others.every(p => r.over?.includes(p) === true || r.notReady?.includes(p) === true)) {
        // every partner the view lists answered that it had finished this round (we came late: a
        // joiner that synced round r-1's agreed state while its partners ran round r) or did not run
        // averaging yet (it came late: the view lists a joiner at its stage while it fetches the
        // stage's state). Explained, so no warning and no retry; the next round meets them. A lonely
        // round any partner did not explain stays a warning below (issue 15: Sybil records, a
        // partner gone quiet)
        this.s.late++
        this.held(t0)
        this.log.info('averaging round skipped: joined late (every partner had finished it or was still joining)', {
          round, step, finished: others.filter(p => r.over?.includes(p) === true).length, joining: others.filter(p => r.notReady?.includes(p) === true).length, formMs: r.formMs
        })
        return false
      }
      if (!retry && r.groupSize < 2 && others.length > 0 && !signal.aborted) {
        // alone while the view lists others at the stage: not expected (issue 15: Sybil records, a
        // partner that came late). Said loudly and tried once more under a retry key of its own, in
        // which a partner that was alone as well meets us; the view's peers are greeted first
        this.s.retried++
        this.held(t0)
        this.log.warn('averaging round found no partner although the view lists peers of the stage; retrying once', { round, step, stageSize, peers: others.slice(0, 4), formMs: r.formMs })
        return true
      }
      this.s.lastGroupSize = r.groupSize
      this.s.lostShards += r.lostShards.length
      this.s.excluded += r.excluded.length
      if (r.groupSize < 2) {
        this.s.alone++
        this.held(t0)
        if (others.length > 0) this.log.warn('averaging round alone after its retry', { round, step, stageSize, peers: others.slice(0, 4), formMs: r.formMs })
        return false
      }
      const before = l2Distance(flat, r.averaged)
      await params.load(unflatten(r.averaged, params.specs))
      const back = flatten(await params.download(), params.specs.map(s => s.name))
      const after = l2Distance(back, r.averaged)
      this.s.rounds++
      this.s.lastRound = round
      this.s.divergenceBefore = before
      this.s.divergenceAfter = after
      this.s.paramNorm = l2Distance(r.averaged, new Float32Array(0))
      this.s.paramsDigest = fnv1a(back)
      if (r.lostShards.length === 0) this.init.onAgreed?.({ round, step, group: r.group, mode: r.mode, params: r.averaged })
      this.held(t0)
      this.s.history.push([round, step, r.groupSize, before, after])
      if (this.s.history.length > MAX_HISTORY) this.s.history.splice(0, this.s.history.length - MAX_HISTORY)
      this.log.info('averaging round', {
        round, step, mode: r.mode, groupSize: r.groupSize, weight, lostShards: r.lostShards.length, excluded: r.excluded.length,
        divergenceBefore: before, divergenceAfter: after, formMs: r.formMs, reduceMs: r.reduceMs, byGreeting: round === this.askedRound
      })
    } catch (err) {
      if (signal.aborted) return false
      this.s.failed++
      this.s.lastError = (err as Error).message
      this.held(t0)
      this.log.warn('averaging round failed; training goes on', { round, step, code: (err as { code?: string }).code, error: (err as Error).message })
    }
    return false
  }
}

/** Round keys of retries: far above any real round number, the same on every member (a retry of round r meets the others' retry of r). */
const RETRY_ROUNDS = 2 ** 40

function retryRound (round: number): number {
  return RETRY_ROUNDS + round
}

/** Group members from the pipeline's peer source: offered until the join deadline, so late greetings still count. */
class SourceGroupFinder implements GroupFinder {
  constructor (private readonly peers: () => string[]) {}

  async find (q: GroupQuery): Promise<void> {
    while (Date.now() < q.deadline && q.stop?.aborted !== true) {
      q.signal?.throwIfAborted()
      for (const p of this.peers()) {
        if (!q.found.has(p) && (q.inGroup == null || q.inGroup(p))) {
          q.found.add(p)
          if (p !== q.self) q.onFound?.(p)
        }
      }
      await sleep(Math.min(100, q.deadline - Date.now()), q.signal)
    }
  }
}

/** Runs several finders at once on one query; done when all are (each stops at the deadline or on `stop`). */
class EitherGroupFinder implements GroupFinder {
  constructor (private readonly finders: readonly GroupFinder[]) {}

  async find (q: GroupQuery): Promise<void> {
    const results = await Promise.allSettled(this.finders.map(async f => { await f.find(q) }))
    q.signal?.throwIfAborted()
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed.length === results.length && failed.length > 0) throw failed[0].reason
  }
}

/** The stage's parameters as one vector, in `names` order (stageParamSpecs: the checkpoint order). */
export function flatten (values: ReadonlyMap<string, Float32Array>, names: readonly string[]): Float32Array {
  let n = 0
  for (const name of names) n += (values.get(name) as Float32Array).length
  const out = new Float32Array(n)
  let o = 0
  for (const name of names) {
    const v = values.get(name) as Float32Array
    out.set(v, o)
    o += v.length
  }
  return out
}

/** The inverse of flatten: views of `flat`, one per spec, in spec order. */
function unflatten (flat: Float32Array, specs: ReadonlyArray<{ name: string, shape: readonly number[] }>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  let o = 0
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1)
    out.set(s.name, flat.subarray(o, o + n))
    o += n
  }
  if (o !== flat.length) throw new Error(`averaged vector has ${flat.length} values, the stage ${o}`)
  return out
}

/** L2 distance (float64 accumulation); against an empty vector: the norm. */
export function l2Distance (a: Float32Array, b: Float32Array): number {
  let s = 0
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - (i < b.length ? b[i] : 0)
    s += d * d
  }
  return Math.sqrt(s)
}

/** FNV-1a of the values' bits (core/hash.ts), re-exported for the averaging status' paramsDigest. */
export { fnv1a }
