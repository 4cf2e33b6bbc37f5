// The averaging service: what the training runtime calls every `averaging.period` steps.
//
//   averager.round({ round, stage, params, weight, signal })
//     1. group: Moshpit grid cell of (peer, round) -> DHT key -> members found (and greeted) before
//        a deadline (group.ts, and the `join` greetings here)
//     2. butterfly all-reduce of the flattened vector over the group: one AllReduceRound
//        (all-reduce-round.ts) with deadlines from the measured bandwidth plus slack: a member that
//        does not deliver in time is left out of that shard's average; a shard whose owner fails
//        keeps local values. The bandwidth estimate is refined from every round.
//     3. mode 'params': the result is the new parameters. Mode 'pseudo-grad' (DiLoCo): the vector
//        averaged is theta_start - theta_local, and the outer optimizer (outer-optimizer.ts) steps
//        on it (the first round of a stage averages parameters, to agree on theta_start).
//
// One protocol handler serves both greetings and reduce requests; a request for a round this node
// has not started yet waits (bounded) for it. Inbound shards are validated (protocol, size, codec,
// finite, declared stats), a shard owner leaves outliers out of its mean (robust-shard.ts), and
// results are checked against the bounds their inputs allow. Every such fault is judged by the
// node's PeerJudge (area 'averaging': one penalty counter for the node); a 'reject' puts the peer on
// the local ban list, which subscribes to the judge: later rounds refuse its contributions and
// ignore its results (it stays in the shard layout, so members that have not banned it still agree
// with this node on the group).
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, PeerId } from '@libp2p/interface'
import { timingFor } from '../net/peer-timing.ts'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { AbortError, verdictOf } from '../errors.ts'
import { sleep, withDeadline } from '../timers.ts'
import { assertFiniteF32, handleFramed, openFramed, RemoteError, requestFrame, type Frame, type FramedStream } from '../wire/index.ts'
import { shardCodecs, type AveragingRole, type TensorCodecs } from '../codecs/tensor-codecs.ts'
import { AVERAGING_PROTOCOL, DEFAULT_CHUNK_ELEMENTS, MAX_GROUP_SIZE, parseReduceRequest } from './butterfly.ts'
import { AllReduceRound, codeOf } from './all-reduce-round.ts'
import type { AllReduceResult, AveragingMode, FaultInjection, RoundArgs, RoundContext, RoundResult } from './round-types.ts'
export type { AllReduceResult, AveragingMode, ExcludedPeer, FaultInjection, LostShard, OwnShardReport, RoundArgs, RoundResult } from './round-types.ts'
import {
  AveragerStoppedError, AveragingConfigError, GroupViewMismatchError, PeerBannedError,
  RoundMismatchError, RoundOverError, AveragingProtocolError
} from './errors.ts'
import { TimedBans } from '../timed-bans.ts'
import { checkRobustOptions, type RobustAveragingOptions } from './robust-shard.ts'
import { CONVICTED_CODE, PeerJudge } from '../peer-judge.ts'
import { OuterOptimizer, type OuterOptimizerOptions, type OuterState } from './outer-optimizer.ts'
import { DhtGroupFinder, groupDigest, groupName, moshpitGrid, moshpitGroupIndex, selectGroup, type GroupFinder } from './group.ts'

export { OuterOptimizer, type OuterOptimizerOptions, type OuterState, type RobustAveragingOptions }

export interface AveragerInit {
  /** The run id (32 hex chars): every frame carries it; groups are per run. */
  readonly runId: string
  /** The manifest's averaging.mode. Default 'params'. */
  readonly mode?: AveragingMode
  /** Codecs per role (shardCodecs(manifest.codecs, registered codecs)). Default: raw f32 for both. */
  readonly codecs?: TensorCodecs<AveragingRole>
  /** Who is in a group. Default: the DHT (provide + findProviders). */
  readonly finder?: GroupFinder
  /** Target group size: a larger stage splits into Moshpit groups of about this many. Default 8. */
  readonly groupSize?: number
  /** Most members one group takes. Default 16 (protocol ceiling 64). */
  readonly maxGroupSize?: number
  /** How long members look for each other through the DHT (ms). Default 3000. */
  readonly joinMs?: number
  /** Fixed slack added to every transfer deadline (ms). Default 2000. */
  readonly slackMs?: number
  /** First estimate of this node's link bandwidth (bytes/s), refined from every round. Default 20e6. */
  readonly bandwidth?: number
  /** A fixed deadline per phase (ms) instead of the bandwidth rule. */
  readonly phaseTimeoutMs?: number
  /** Elements per data frame. Default 2^18. */
  readonly chunkElements?: number
  /** Credit window (frames) per stream. Default 4. */
  readonly window?: number
  /** How long a peer stays banned (ms). Default 10 min. */
  readonly banMs?: number
  /** DiLoCo outer optimizer. Default lr 0.7, momentum 0.9. */
  readonly outer?: OuterOptimizerOptions
  /** How a shard owner combines contributions (bounded weights, outliers excluded): robust-shard.ts. */
  readonly robust?: RobustAveragingOptions
  /** The node's judge (Tokens.PeerJudge): averaging's verdicts count there, and its averaging rejects ban. Default: one of its own. */
  readonly judge?: PeerJudge
  /**
   * A peer greeted us (or asked for our shard) for a round of `stage` this node has not started: it
   * heard of the round first. The request waits for the round (bounded); a caller that runs rounds
   * on a trigger of its own may start it now (StageAveraging: a member that got no microbatch of the
   * boundary step learnt the step seconds later from a heartbeat, after its partners' join window).
   */
  readonly onAsked?: (stage: number, round: number, peer: string) => void
  readonly log?: Logger
  readonly faults?: FaultInjection
}

/** One round on this node: the group search, then its all-reduce. */
class RoundState {
  /** Discovery: candidates (DHT records, greetings), greetings sent, peers confirmed by a greeting either way. */
  readonly found = new Set<string>()
  readonly greeted = new Set<string>()
  readonly confirmed = new Set<string>()
  /** Peers that answered our greeting that this round was over there. */
  readonly over = new Set<string>()
  /** Peers that did not serve the averaging protocol when greeted (not started yet: a joiner syncing). */
  readonly notReady = new Set<string>()
  discovering = true
  groupName = ''
  joinDeadline = 0
  onFound: () => void = () => {}

  constructor (readonly reduce: AllReduceRound) {}
  get stage (): number { return this.reduce.stage }
  get round (): number { return this.reduce.round }
}

const key = (stage: number, round: number): string => `${stage}/${round}`

type AveragerLibp2p = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'contentRouting' | 'peerId' | 'addEventListener' | 'removeEventListener'>

export class Averager {
  readonly bans: TimedBans
  readonly judge: PeerJudge
  readonly mode: AveragingMode
  /** Bytes/s, refined after every round. */
  bandwidth: number
  private readonly log: Logger
  private readonly codecs: TensorCodecs<AveragingRole>
  private readonly finder: GroupFinder
  private readonly me: string
  private readonly groupSize: number
  private readonly maxGroupSize: number
  private readonly joinMs: number
  private readonly slackMs: number
  private readonly chunkElements: number
  private readonly window: number
  private readonly outer: OuterOptimizer
  private readonly sessions = new Map<string, RoundState>()
  private readonly done: string[] = []
  private readonly waiters = new Map<string, Array<(s: RoundState) => void>>()
  private started = false
  private stopped = false
  private unjudge: () => void = () => {}
  // a member whose last connection closed will not contribute: stop waiting for it at once
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    for (const session of this.sessions.values()) session.reduce.peerGone(peer)
  }

  constructor (private readonly libp2p: AveragerLibp2p, private readonly init: AveragerInit) {
    if (!/^[0-9a-f]{32}$/.test(init.runId)) throw new AveragingConfigError('runId must be 32 lowercase hex chars')
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:averaging')
    this.mode = init.mode ?? 'params'
    this.codecs = init.codecs ?? shardCodecs({ parameter: 'none', 'parameter-grad': 'none' })
    this.finder = init.finder ?? new DhtGroupFinder(libp2p, { log: init.log })
    this.me = libp2p.peerId.toString()
    this.maxGroupSize = init.maxGroupSize ?? 16
    this.groupSize = Math.min(init.groupSize ?? 8, this.maxGroupSize)
    if (!(this.maxGroupSize >= 2 && this.maxGroupSize <= MAX_GROUP_SIZE)) throw new AveragingConfigError(`maxGroupSize must be in 2..${MAX_GROUP_SIZE}`)
    if (!(this.groupSize >= 2)) throw new AveragingConfigError('groupSize must be >= 2')
    this.joinMs = Math.ceil(init.joinMs ?? 3000)
    this.slackMs = Math.ceil(init.slackMs ?? 2000)
    this.bandwidth = init.bandwidth ?? 20e6
    this.chunkElements = init.chunkElements ?? DEFAULT_CHUNK_ELEMENTS
    this.window = init.window ?? 4
    this.outer = new OuterOptimizer(init.outer)
    checkRobustOptions(init.robust)
    this.bans = new TimedBans({ banMs: init.banMs ?? 10 * 60_000 })
    this.judge = init.judge ?? new PeerJudge()
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    // the ban list follows the judge: a 'reject' in averaging bans, whoever judged it
    this.unjudge = this.judge.onJudgement(j => {
      // a peer convicted of cheating anywhere (verification) is out of averaging for good
      if (j.verdict === 'reject' && j.code === CONVICTED_CODE) this.bans.ban(j.peer, j.code, true)
      else if (j.area === 'averaging' && j.verdict === 'reject' && !this.bans.isBanned(j.peer)) this.bans.ban(j.peer, j.code)
    })
    this.libp2p.addEventListener('peer:disconnect', this.onDisconnect)
    await handleFramed(this.libp2p, AVERAGING_PROTOCOL, async (fs, conn, signal) => {
      await this.serve(fs, conn.remotePeer.toString(), signal)
    }, {
      runId: this.init.runId,
      window: this.window,
      log: this.init.log,
      onError: (err, peer) => { this.penalize(peer, err) },
      admit: async (peer, signal) => { await this.judge.admit(peer, signal, 'averaging') },
      streamOptions: { maxInboundStreams: 2 * MAX_GROUP_SIZE }
    })
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.unjudge()
    this.libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    for (const s of this.sessions.values()) s.reduce.abort.abort(new AveragerStoppedError())
    for (const list of this.waiters.values()) list.splice(0)
    await this.libp2p.unhandle(AVERAGING_PROTOCOL).catch(() => {})
  }

  /** One averaging round of a stage (see the top of this file). */
  async round (args: RoundArgs): Promise<RoundResult> {
    const { stage, params } = args
    if (this.mode === 'params' || !this.outer.has(stage)) {
      const r = await this.allReduce({ ...args, role: 'parameter', data: params })
      if (this.mode === 'pseudo-grad') this.outer.begin(stage, r.averaged)
      return { ...r, round: args.round, stage, mode: 'params' }
    }
    const start = this.outer.stateOf(stage)?.start
    const r = await this.allReduce({ ...args, role: 'parameter-grad', data: this.outer.pseudoGradient(stage, params), reference: start })
    return { ...r, averaged: this.outer.step(stage, r.averaged), round: args.round, stage, mode: 'pseudo-grad' }
  }

  /** Outer-optimizer state of a stage (pseudo-grad mode), e.g. for state sync; undefined before its first round. */
  outerStateOf (stage: number): OuterState | undefined {
    return this.outer.stateOf(stage)
  }

  /** Sets the outer-optimizer state of a stage (a joiner that synced it from peers). */
  setOuterState (stage: number, start: Float32Array, momentum: Float32Array): void {
    this.outer.setState(stage, start, momentum)
  }

  /**
   * Butterfly all-reduce (robust weighted mean) of `data` over this round's group. `reference`: the
   * parameters whose norm floors the outlier scale (default `data`; theta_start for pseudo-gradients).
   */
  async allReduce (args: RoundArgs & { role: AveragingRole, data: Float32Array, reference?: Float32Array }): Promise<AllReduceResult> {
    const { round, stage, role, data, weight } = args
    if (!this.started || this.stopped) throw new AveragerStoppedError(this.stopped ? undefined : 'call start() first')
    if (!Number.isSafeInteger(round) || round < 0) throw new AveragingConfigError(`round must be a non-negative integer, got ${round}`)
    if (!Number.isSafeInteger(stage) || stage < 0 || stage > 0xffff) throw new AveragingConfigError(`bad stage ${stage}`)
    if (!(Number.isFinite(weight) && weight > 0)) throw new AveragingConfigError(`weight must be > 0, got ${weight}`)
    // this node's own NaN/Inf is its own failure: refused here, before any peer could be blamed for it
    assertFiniteF32(data, `this node's ${role} vector`)
    const k = key(stage, round)
    if (this.sessions.has(k) || this.done.includes(k)) throw new AveragingConfigError(`round ${round} of stage ${stage} already ran here`)
    const t0 = Date.now()
    if (args.reference != null && args.reference.length !== data.length) throw new AveragingConfigError(`reference has ${args.reference.length} values, data ${data.length}`)
    const reduce = new AllReduceRound(this.roundContext(), stage, round, role, data, weight, args.reference)
    const session = new RoundState(reduce)
    session.found.add(this.me)
    const onAbort = (): void => { reduce.abort.abort(args.signal?.reason ?? new AbortError()) }
    args.signal?.addEventListener('abort', onAbort, { once: true })
    this.sessions.set(k, session)
    for (const w of this.waiters.get(k) ?? []) w(session)
    this.waiters.delete(k)
    try {
      // 1. group
      const grid = moshpitGrid(args.stageSize ?? 0, this.groupSize)
      const groupIndex = moshpitGroupIndex(this.me, round, grid)
      const name = groupName(this.init.runId, stage, round, groupIndex)
      session.groupName = name
      const expected = args.stageSize != null && grid.dims === 0 ? Math.min(args.stageSize, this.maxGroupSize) : Infinity
      const complete = new AbortController()
      // only peers that answered (or sent) a greeting count: a DHT record may outlive its peer
      // a peer that answered that the round is over there will not join: it no longer holds the window open
      session.onFound = () => { if (session.confirmed.size + session.over.size + 1 >= expected) complete.abort() }
      session.onFound()
      session.joinDeadline = t0 + this.joinMs
      await this.finder.find({
        name,
        self: this.me,
        deadline: session.joinDeadline,
        found: session.found,
        onFound: peer => { this.greet(session, peer) },
        stop: complete.signal,
        signal: reduce.abort.signal,
        inGroup: peer => moshpitGroupIndex(peer, round, grid) === groupIndex
      })
      session.discovering = false
      const found = [this.me, ...session.confirmed]
      const members = selectGroup(found, this.maxGroupSize, round)
      const formMs = Date.now() - t0
      if (!members.includes(this.me) || members.length < 2) {
        reduce.alone()
        return { averaged: data.slice(), group: members.includes(this.me) ? members : [this.me], groupSize: 1, groupIndex, contributors: 1, lostShards: [], excluded: [], ownShard: null, bytesSent: 0, bytesReceived: 0, formMs, reduceMs: 0, over: [...session.over], notReady: [...session.notReady] }
      }
      reduce.begin(members, groupDigest(members))
      this.log.debug('group formed', { stage, round, groupIndex, members: members.length, me: reduce.me, formMs })

      // 2. scatter-reduce + all-gather, 3. assemble and check
      const r = await reduce.run()
      const sh = r.ownShard
      this.log.debug('own shard averaged', {
        stage, round, role, robust: sh.robust, medianNorm: sh.medianNorm, referenceNorm: sh.referenceNorm,
        kept: sh.kept.map(k => [k.peer, k.weight, k.norm, k.cosine]), excluded: r.excluded.map(x => [x.peer, x.reason, x.banned, x.detail])
      })
      if (r.reduceMs > 0 && r.bytesSent > 0 && r.lostShards.length === 0) {
        this.bandwidth = Math.max(1e6, 0.5 * this.bandwidth + 0.5 * r.bytesSent / (r.reduceMs / 1000))
      }
      return { ...r, group: members, groupSize: members.length, groupIndex, formMs, over: [...session.over], notReady: [...session.notReady] }
    } finally {
      args.signal?.removeEventListener('abort', onAbort)
      reduce.end(new RoundMismatchError(`round ${round} of stage ${stage} is over`))
      this.sessions.delete(k)
      this.done.push(k)
      if (this.done.length > 256) this.done.shift()
    }
  }

  /** What a round's all-reduce needs from this service (the bandwidth estimate as it is now). */
  private roundContext (): RoundContext {
    return {
      self: this.me,
      codecs: this.codecs,
      bans: this.bans,
      chunkElements: this.chunkElements,
      joinMs: this.joinMs,
      slackMs: this.slackMs,
      phaseTimeoutMs: this.init.phaseTimeoutMs,
      bandwidth: this.bandwidth,
      timing: timingFor(this.libp2p),
      faults: this.init.faults,
      robust: this.init.robust,
      log: this.log,
      dial: async (peer, signal) => await this.dial(peer, signal),
      penalize: (peer, err) => { this.penalize(peer, err) }
    }
  }

  /** A fault on `peer`'s data goes to the judge (once per ban: a banned peer's later faults are the same incident). */
  private penalize (peer: string, err: Error): void {
    if (verdictOf(err) !== 'reject' || this.bans.isBanned(peer)) return
    this.log.warn('peer banned from averaging', { peer, code: codeOf(err), error: err.message })
    this.judge.judge(peer, err, 'averaging')
  }

  private async waitSession (stage: number, round: number, peer: string, signal: AbortSignal): Promise<RoundState> {
    const k = key(stage, round)
    const s = this.sessions.get(k)
    if (s != null) return s
    if (this.done.includes(k)) throw new RoundOverError(round, stage)
    if (this.stopped) throw new AveragerStoppedError()
    const list = this.waiters.get(k) ?? []
    if (list.length >= 2 * MAX_GROUP_SIZE) throw new RoundMismatchError(`too many requests wait for round ${round} of stage ${stage}`)
    return await new Promise<RoundState>((resolve, reject) => {
      const t = setTimeout(() => { done(); reject(new RoundMismatchError(`round ${round} of stage ${stage} did not start here in time`)) }, this.joinMs + this.slackMs)
      const onAbort = (): void => { done(); reject(new AbortError()) }
      const entry = (sess: RoundState): void => { done(); resolve(sess) }
      const done = (): void => {
        clearTimeout(t)
        signal.removeEventListener('abort', onAbort)
        const l = this.waiters.get(k)
        const i = l?.indexOf(entry) ?? -1
        if (i >= 0) l?.splice(i, 1)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      list.push(entry)
      this.waiters.set(k, list)
      // after the entry: a round the listener starts finds this request waiting
      try {
        this.init.onAsked?.(stage, round, peer)
      } catch (err) {
        this.log.warn('onAsked listener failed', { error: (err as Error).message })
      }
    })
  }

  /** One inbound averaging stream: a greeting, or a contributor's request for our shard. */
  private async serve (fs: FramedStream, peer: string, handlerSignal: AbortSignal): Promise<void> {
    const first = await withDeadline(this.slackMs + this.joinMs, [handlerSignal], async signal => await fs.expect({ signal }))
    if ((first.header.metadata as { op?: unknown } | undefined)?.op === 'join') {
      await this.serveJoin(fs, first, peer, handlerSignal)
      return
    }
    const req = parseReduceRequest(first)
    if (this.bans.isBanned(peer)) throw new PeerBannedError(peer)
    const session = await this.waitSession(first.header.stage, req.round, peer, handlerSignal)
    await session.reduce.serve(fs, req, peer, handlerSignal)
  }

  /** Tells `peer` we are in the group and learns whom it found; every peer it names is greeted in turn. */
  private greet (session: RoundState, peer: string): void {
    if (peer === this.me || session.greeted.has(peer) || !session.discovering || this.stopped) return
    if (session.greeted.size >= 4 * this.maxGroupSize) return
    session.greeted.add(peer)
    const timeoutMs = Math.max(1, session.joinDeadline - Date.now())
    let target
    try {
      target = peerIdFromString(peer)
    } catch {
      return
    }
    requestFrame(this.libp2p, target, AVERAGING_PROTOCOL, {
      kind: 'request', stage: session.stage, microbatchId: session.round,
      metadata: { op: 'join', round: session.round, name: session.groupName, members: [this.me, ...session.confirmed] }
    }, undefined, { runId: this.init.runId, timeoutMs, signal: session.reduce.abort.signal, log: this.init.log })
      .then(resp => {
        const members = parseMembers(resp, 'members', 4 * this.maxGroupSize)
        this.addFound(session, peer)
        for (const m of members) this.greet(session, m)
      })
      .catch(err => {
        this.log.debug('greeting failed', { peer, code: codeOf(err), error: (err as Error).message })
        if (err instanceof RemoteError && err.remoteCode === 'ERR_AVG_ROUND_OVER' && session.discovering && !session.confirmed.has(peer)) {
          session.over.add(peer)
          session.onFound()
        } else if ((err as Error)?.name === 'UnsupportedProtocolError' && session.discovering) {
          session.notReady.add(peer)
        }
      })
  }

  private addFound (session: RoundState, peer: string): void {
    if (!session.discovering || session.confirmed.has(peer)) return
    session.confirmed.add(peer)
    session.found.add(peer)
    session.onFound()
  }

  /** A member greets us: it is in (our view of) the group; we answer with whom we found. */
  private async serveJoin (fs: FramedStream, first: Frame, peer: string, handlerSignal: AbortSignal): Promise<void> {
    const m = first.header.metadata as { round?: unknown, name?: unknown }
    if (!Number.isSafeInteger(m.round) || typeof m.name !== 'string') throw new AveragingProtocolError('bad join request')
    parseMembers(first, 'join', 4 * this.maxGroupSize)
    if (this.bans.isBanned(peer)) throw new PeerBannedError(peer)
    const session = await this.waitSession(first.header.stage, m.round as number, peer, handlerSignal)
    if (m.name !== session.groupName && session.groupName !== '') throw new GroupViewMismatchError(`join for ${m.name}, this node is in ${session.groupName}`)
    this.addFound(session, peer)
    const members = session.discovering ? [this.me, ...session.confirmed] : session.reduce.members
    await fs.send({ kind: 'response', stage: session.stage, microbatchId: session.round, metadata: { op: 'members', members } }, undefined, { signal: handlerSignal })
  }

  /**
   * Opens an averaging stream; a failed dial is retried (3 tries in all, within the deadline): a
   * peer's record may list an address it no longer listens on, and libp2p then fails the first dial.
   */
  private async dial (peer: string, signal: AbortSignal): Promise<FramedStream> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await openFramed(this.libp2p, peerIdFromString(peer), AVERAGING_PROTOCOL, { runId: this.init.runId, signal, window: this.window, log: this.init.log })
      } catch (err) {
        if (attempt >= 3 || signal.aborted) throw err
        this.log.debug('dial failed, retrying', { peer, attempt, error: (err as Error).message })
        await sleep(200 * attempt, signal)
      }
    }
  }
}

const PEER_ID_RE = /^[A-Za-z0-9]{1,128}$/

/** The member list of a join request or answer: peer-id strings, bounded. */
function parseMembers (frame: Frame, op: string, max: number): string[] {
  const m = frame.header.metadata as { op?: unknown, members?: unknown } | undefined
  if (m?.op !== op || !Array.isArray(m.members) || m.members.length > max || !m.members.every(x => typeof x === 'string' && PEER_ID_RE.test(x))) {
    throw new AveragingProtocolError(`bad ${op} member list`)
  }
  return m.members as string[]
}
