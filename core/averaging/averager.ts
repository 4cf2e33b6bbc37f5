// The round driver: what the training runtime calls every `averaging.period` steps.
//
//   averager.round({ round, stage, params, weight, signal })
//     1. group: Moshpit grid cell of (peer, round) -> DHT key -> members found before a deadline
//     2. butterfly all-reduce of the flattened vector over the group (butterfly.ts), with
//        deadlines from the measured bandwidth plus slack: a member that does not deliver in time
//        is left out of that shard's average; a shard whose owner fails keeps local values
//     3. mode 'params': the result is the new parameters. Mode 'pseudo-grad' (DiLoCo): the vector
//        averaged is theta_start - theta_local, and an outer Nesterov SGD step on it gives the new
//        parameters (the first round of a stage averages parameters, to agree on theta_start).
//
// Inbound shards are validated (protocol, size, codec, finite, declared stats) and results are
// checked against the bounds their inputs allow; a peer that sends bad data or a dishonest average
// goes on a local ban list: later rounds refuse its contributions and ignore its results (it stays
// in the shard layout, so members that have not banned it still agree with this node on the group).
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { AbortError } from '../errors.ts'
import { deadline, sleep, withDeadline } from '../timers.ts'
import { handleFramed, openFramed, PeerResetError, RemoteError, requestFrame, type Frame, type FramedStream } from '../wire/index.ts'
import {
  AVERAGING_PROTOCOL, checkAverageBounds, checkDeclaredStats, DEFAULT_CHUNK_ELEMENTS, encodeParts, MAX_GROUP_SIZE,
  parseReduceRequest, parseReduceResponse, receiveParts, sendParts, shardRanges, shardStats, weightedMean,
  type ReduceRequest, type ShardStats
} from './butterfly.ts'
import { shardCodecs, type AveragingRole, type ShardCodecs } from './codecs.ts'
import {
  AveragerStoppedError, AveragingConfigError, averagingVerdict, ContributionLateError, GroupViewMismatchError,
  PeerBannedError, RoundMismatchError, AveragingProtocolError
} from './errors.ts'
import { BanList } from './ban-list.ts'
import { OuterOptimizer, type OuterOptimizerOptions, type OuterState } from './outer-optimizer.ts'
import { DhtGroupFinder, groupDigest, groupName, moshpitGrid, moshpitGroupIndex, selectGroup, type GroupFinder } from './group.ts'

export type AveragingMode = 'params' | 'pseudo-grad'
export { BanList, OuterOptimizer, type OuterOptimizerOptions, type OuterState }


/** Hooks that make this node misbehave on purpose: for fault-injection tests and drills only. */
export interface FaultInjection {
  /** Replaces the values this node sends as its contribution to shard `shard` (after declaring stats). */
  readonly contribution?: (shard: number, data: Float32Array) => Float32Array
  /** Replaces the average this node returns for the shard it owns. */
  readonly result?: (shard: number, avg: Float32Array) => Float32Array
  /** True: this node never opens a stream to shard `shard`'s owner (a silent member that stays connected). */
  readonly withhold?: (shard: number) => boolean
}

export interface AveragerInit {
  /** The run id (32 hex chars): every frame carries it; groups are per run. */
  readonly runId: string
  /** The manifest's averaging.mode. Default 'params'. */
  readonly mode?: AveragingMode
  /** Codecs per role (shardCodecs(manifest.codecs, registered codecs)). Default: raw f32 for both. */
  readonly codecs?: ShardCodecs
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
  readonly log?: Logger
  readonly faults?: FaultInjection
}

export interface RoundArgs {
  /** Round number, the same on every member (e.g. step / averaging.period). */
  readonly round: number
  readonly stage: number
  /** Flattened parameters of the stage (not modified). */
  readonly params: Float32Array
  /** Samples processed since the last round: the weight of this node's contribution, > 0. */
  readonly weight: number
  readonly signal?: AbortSignal
  /** Nodes serving the stage (from the gossiped view), this one included: sizes the Moshpit grid and lets group search stop early. */
  readonly stageSize?: number
}

export interface LostShard {
  readonly shard: number
  readonly owner: string
  readonly start: number
  readonly end: number
  /** Error code of why its average did not arrive or was refused. */
  readonly reason: string
}

export interface ExcludedPeer {
  readonly peer: string
  readonly reason: string
  /** Put on the ban list for this. */
  readonly banned: boolean
}

export interface AllReduceResult {
  readonly averaged: Float32Array
  /** Sorted member peer ids (this node included). */
  readonly group: readonly string[]
  readonly groupSize: number
  readonly groupIndex: number
  /** Contributions (this node's included) in the average of the shard this node owns. */
  readonly contributors: number
  /** Shards that kept this node's own values. */
  readonly lostShards: readonly LostShard[]
  /** Peers whose contribution or result this node left out. */
  readonly excluded: readonly ExcludedPeer[]
  readonly bytesSent: number
  readonly bytesReceived: number
  /** ms: group formation, then the all-reduce itself. */
  readonly formMs: number
  readonly reduceMs: number
}

export interface RoundResult extends AllReduceResult {
  readonly round: number
  readonly stage: number
  /** What was averaged: parameters, or pseudo-gradients followed by the outer step. */
  readonly mode: AveragingMode
}

// ---- one round's state on this node -----------------------------------------------------------

interface OwnerResult {
  parts: Array<{ codecId: number, bytes: Uint8Array, elements: number }>
  own: Float32Array
  contributors: Array<[number, number, number, number]>
}

function deferred<T> (): { promise: Promise<T>, resolve: (v: T) => void, reject: (e: Error) => void } {
  let resolve!: (v: T) => void
  let reject!: (e: Error) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  promise.catch(() => {})
  return { promise, resolve, reject }
}

class Session {
  /** Discovery: candidates (DHT records, greetings), greetings sent, peers confirmed by a greeting either way. */
  readonly found = new Set<string>()
  readonly greeted = new Set<string>()
  readonly confirmed = new Set<string>()
  discovering = true
  groupName = ''
  joinDeadline = 0
  onFound: () => void = () => {}
  members: string[] = []
  digest = ''
  me = -1
  ranges: Array<[number, number]> = []
  readyAt = 0
  contribDeadline = 0
  resultDeadline = 0
  readonly ready = deferred<void>()
  readonly contributions = new Map<number, { weight: number, data: Float32Array }>()
  /** Stats each member declared to this node directly (its request to our shard). */
  readonly declared = new Map<number, ReadonlyArray<readonly [number, number]>>()
  readonly settled = new Set<number>()
  readonly failures = new Map<number, Error>()
  closed = false
  readonly result = deferred<OwnerResult>()
  readonly abort = new AbortController()
  myStats: ShardStats[] = []
  timer: NodeJS.Timeout | undefined
  bytesReceived = 0
  bytesSent = 0
  /** Inbound exchanges still sending our shard's average: the round waits for them (bounded). */
  readonly serving = new Set<Promise<void>>()

  constructor (readonly stage: number, readonly round: number, readonly role: AveragingRole,
    readonly data: Float32Array, readonly weight: number) {}

  settle (k: number, finalize: () => void, err?: Error): void {
    if (this.settled.has(k)) return
    this.settled.add(k)
    if (err != null) this.failures.set(k, err)
    if (this.settled.size >= this.members.length - 1) finalize()
  }
}

const key = (stage: number, round: number): string => `${stage}/${round}`

type AveragerLibp2p = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'contentRouting' | 'peerId' | 'addEventListener' | 'removeEventListener'>

export class Averager {
  readonly bans: BanList
  readonly mode: AveragingMode
  /** Bytes/s, refined after every round. */
  bandwidth: number
  private readonly log: Logger
  private readonly codecs: ShardCodecs
  private readonly finder: GroupFinder
  private readonly me: string
  private readonly groupSize: number
  private readonly maxGroupSize: number
  private readonly joinMs: number
  private readonly slackMs: number
  private readonly chunkElements: number
  private readonly window: number
  private readonly outer: OuterOptimizer
  private readonly sessions = new Map<string, Session>()
  private readonly done: string[] = []
  private readonly waiters = new Map<string, Array<(s: Session) => void>>()
  private started = false
  private stopped = false
  // a member whose last connection closed will not contribute: stop waiting for it at once
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    for (const session of this.sessions.values()) {
      const k = session.members.indexOf(peer)
      if (k >= 0 && k !== session.me) session.settle(k, () => { this.finalize(session) }, new PeerResetError())
    }
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
    this.bans = new BanList(init.banMs ?? 10 * 60_000)
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.libp2p.addEventListener('peer:disconnect', this.onDisconnect)
    await handleFramed(this.libp2p, AVERAGING_PROTOCOL, async (fs, conn, signal) => {
      await this.serve(fs, conn.remotePeer.toString(), signal)
    }, {
      runId: this.init.runId,
      window: this.window,
      log: this.init.log,
      onError: (err, peer) => { this.penalize(peer, err) },
      streamOptions: { maxInboundStreams: 2 * MAX_GROUP_SIZE }
    })
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    for (const s of this.sessions.values()) s.abort.abort(new AveragerStoppedError())
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
    const r = await this.allReduce({ ...args, role: 'parameter-grad', data: this.outer.pseudoGradient(stage, params) })
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

  /** Butterfly all-reduce (weighted mean) of `data` over this round's group. */
  async allReduce (args: RoundArgs & { role: AveragingRole, data: Float32Array }): Promise<AllReduceResult> {
    const { round, stage, role, data, weight } = args
    if (!this.started || this.stopped) throw new AveragerStoppedError(this.stopped ? undefined : 'call start() first')
    if (!Number.isSafeInteger(round) || round < 0) throw new AveragingConfigError(`round must be a non-negative integer, got ${round}`)
    if (!Number.isSafeInteger(stage) || stage < 0 || stage > 0xffff) throw new AveragingConfigError(`bad stage ${stage}`)
    if (!(Number.isFinite(weight) && weight > 0)) throw new AveragingConfigError(`weight must be > 0, got ${weight}`)
    const k = key(stage, round)
    if (this.sessions.has(k) || this.done.includes(k)) throw new AveragingConfigError(`round ${round} of stage ${stage} already ran here`)
    const t0 = Date.now()
    const session = new Session(stage, round, role, data, weight)
    session.found.add(this.me)
    const onAbort = (): void => { session.abort.abort(args.signal?.reason ?? new AbortError()) }
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
      session.onFound = () => { if (session.confirmed.size + 1 >= expected) complete.abort() }
      session.onFound()
      session.joinDeadline = t0 + this.joinMs
      await this.finder.find({
        name,
        self: this.me,
        deadline: session.joinDeadline,
        found: session.found,
        onFound: peer => { this.greet(session, peer) },
        stop: complete.signal,
        signal: session.abort.signal,
        inGroup: peer => moshpitGroupIndex(peer, round, grid) === groupIndex
      })
      session.discovering = false
      const found = [this.me, ...session.confirmed]
      const members = selectGroup(found, this.maxGroupSize, round)
      const formMs = Date.now() - t0
      if (!members.includes(this.me) || members.length < 2) {
        session.ready.reject(new GroupViewMismatchError('this node averages alone this round'))
        return this.alone(data, members.includes(this.me) ? members : [this.me], groupIndex, formMs)
      }
      session.members = members
      session.digest = groupDigest(members)
      session.me = members.indexOf(this.me)
      session.ranges = shardRanges(data.length, members.length)
      session.myStats = session.ranges.map(([s, e]) => shardStats(data.subarray(s, e)))
      session.readyAt = Date.now()
      const phaseMs = this.init.phaseTimeoutMs ?? Math.ceil(this.slackMs + 3000 * (data.length * 4 * (members.length - 1) / members.length) / this.bandwidth)
      session.contribDeadline = session.readyAt + this.joinMs + phaseMs
      session.resultDeadline = session.readyAt + this.joinMs + 2 * phaseMs
      session.timer = setTimeout(() => { this.finalize(session) }, session.contribDeadline - Date.now())
      for (let i = 0; i < members.length; i++) {
        if (i !== session.me && this.bans.isBanned(members[i])) session.settle(i, () => { this.finalize(session) }, new PeerBannedError(members[i]))
      }
      session.ready.resolve()
      this.log.debug('group formed', { stage, round, groupIndex, members: members.length, me: session.me, formMs })

      // 2. scatter-reduce + all-gather: one exchange per other member, in parallel with our own shard's serving
      const tr = Date.now()
      const outcomes = await Promise.all(members.map(async (_, j) => j === session.me ? null : await this.contribute(session, j).then(v => ({ ok: true as const, ...v }), (err: Error) => ({ ok: false as const, err }))))
      const own = await Promise.race([
        session.result.promise,
        new Promise<never>((_resolve, reject) => {
          const t = setTimeout(() => { reject(new AbortError('own shard not finalized in time')) }, Math.max(0, session.contribDeadline - Date.now()) + 1000)
          session.abort.signal.addEventListener('abort', () => { clearTimeout(t); reject(session.abort.signal.reason) }, { once: true })
          session.result.promise.finally(() => { clearTimeout(t) }).catch(() => {})
        })
      ])

      // our shard's average must reach the others before this round lets go of its session
      await Promise.allSettled([...session.serving])

      // 3. assemble and check: a lost or refused shard keeps this node's values
      const averaged = data.slice()
      averaged.set(own.own, session.ranges[session.me][0])
      const lostShards: LostShard[] = []
      const excluded: ExcludedPeer[] = []
      for (const [k2, err] of session.failures) {
        const peer = members[k2]
        excluded.push({ peer, reason: codeOf(err), banned: this.bans.isBanned(peer) })
      }
      const rel = this.codecs.relError(role)
      outcomes.forEach((o, j) => {
        if (o == null) return
        const [s, e] = session.ranges[j]
        const owner = members[j]
        const lose = (reason: string): void => { lostShards.push({ shard: j, owner, start: s, end: e, reason }) }
        if (!o.ok) {
          if (averagingVerdict(o.err) === 'reject') this.penalize(owner, o.err)
          lose(codeOf(o.err))
          if (averagingVerdict(o.err) === 'reject') excluded.push({ peer: owner, reason: codeOf(o.err), banned: true })
          return
        }
        let conflict = false
        const inputs = o.contributors.map(([idx, , norm, maxAbs]) => {
          const direct = idx === session.me ? session.myStats[j] : toStats(session.declared.get(idx)?.[j])
          if (direct != null && (direct.norm !== norm || direct.maxAbs !== maxAbs)) conflict = true
          return direct ?? { norm, maxAbs }
        })
        if (conflict) {
          // the owner echoes stats a contributor did not declare to us: one of the two lies; we cannot tell which
          lose('ERR_AVG_CONFLICT')
          return
        }
        try {
          checkAverageBounds(o.values, inputs, rel)
        } catch (err) {
          this.penalize(owner, err as Error)
          excluded.push({ peer: owner, reason: codeOf(err), banned: true })
          lose(codeOf(err))
          return
        }
        averaged.set(o.values, s)
      })
      const reduceMs = Date.now() - tr
      const bytes = session.bytesSent
      if (reduceMs > 0 && bytes > 0 && lostShards.length === 0) {
        this.bandwidth = Math.max(1e6, 0.5 * this.bandwidth + 0.5 * bytes / (reduceMs / 1000))
      }
      return {
        averaged,
        group: members,
        groupSize: members.length,
        groupIndex,
        contributors: own.contributors.length,
        lostShards,
        excluded,
        bytesSent: session.bytesSent,
        bytesReceived: session.bytesReceived,
        formMs,
        reduceMs
      }
    } finally {
      args.signal?.removeEventListener('abort', onAbort)
      clearTimeout(session.timer)
      if (!session.closed) this.finalize(session)
      session.abort.abort(new RoundMismatchError(`round ${round} of stage ${stage} is over`))
      this.sessions.delete(k)
      this.done.push(k)
      if (this.done.length > 256) this.done.shift()
    }
  }

  private alone (data: Float32Array, members: string[], groupIndex: number, formMs: number): AllReduceResult {
    return { averaged: data.slice(), group: members, groupSize: 1, groupIndex, contributors: 1, lostShards: [], excluded: [], bytesSent: 0, bytesReceived: 0, formMs, reduceMs: 0 }
  }

  private penalize (peer: string, err: Error): void {
    if (averagingVerdict(err) !== 'reject' || this.bans.isBanned(peer)) return
    this.log.warn('peer banned from averaging', { peer, code: codeOf(err), error: err.message })
    this.bans.ban(peer, `${codeOf(err)}: ${err.message}`)
  }

  /** Closes our shard's average: the contributions in by now, this node's own, in member order. */
  private finalize (session: Session): void {
    if (session.closed) return
    session.closed = true
    clearTimeout(session.timer)
    if (session.me < 0) { session.result.reject(new RoundMismatchError('no group')); return }
    // a member still silent now is left out of this shard: record it, so the round reports it even
    // when no disconnect was seen (it may have died before this node's group formed)
    for (let k = 0; k < session.members.length; k++) {
      if (k !== session.me && !session.settled.has(k)) {
        session.settled.add(k)
        session.failures.set(k, new ContributionLateError('no contribution before the shard closed'))
      }
    }
    try {
      const [s, e] = session.ranges[session.me]
      const inputs: Array<{ idx: number, weight: number, data: Float32Array }> = [{ idx: session.me, weight: session.weight, data: session.data.subarray(s, e) }]
      for (const [idx, c] of session.contributions) inputs.push({ idx, ...c })
      inputs.sort((a, b) => a.idx - b.idx)
      let avg = weightedMean(inputs, e - s)
      if (this.init.faults?.result != null) avg = this.init.faults.result(session.me, avg)
      const parts = encodeParts(this.codecs, session.role, avg, this.chunkElements)
      // keep exactly what the others receive, so every member holds the same bits for this shard
      const own = new Float32Array(e - s)
      let at = 0
      for (const p of parts) {
        const d = this.codecs.decodeBytes(session.role, p.codecId, p.bytes)
        own.set(d, at)
        at += d.length
      }
      const contributors = inputs.map(i => {
        const st = i.idx === session.me ? session.myStats[session.me] : toStats(session.declared.get(i.idx)?.[session.me]) as ShardStats
        return [i.idx, i.weight, st.norm, st.maxAbs] as [number, number, number, number]
      })
      session.result.resolve({ parts, own, contributors })
    } catch (err) {
      session.result.reject(err as Error)
    }
  }

  private async waitSession (stage: number, round: number, signal: AbortSignal): Promise<Session> {
    const k = key(stage, round)
    const s = this.sessions.get(k)
    if (s != null) return s
    if (this.done.includes(k)) throw new RoundMismatchError(`round ${round} of stage ${stage} is over here`)
    if (this.stopped) throw new AveragerStoppedError()
    const list = this.waiters.get(k) ?? []
    if (list.length >= 2 * MAX_GROUP_SIZE) throw new RoundMismatchError(`too many requests wait for round ${round} of stage ${stage}`)
    return await new Promise<Session>((resolve, reject) => {
      const t = setTimeout(() => { done(); reject(new RoundMismatchError(`round ${round} of stage ${stage} did not start here in time`)) }, this.joinMs + this.slackMs)
      const onAbort = (): void => { done(); reject(new AbortError()) }
      const entry = (sess: Session): void => { done(); resolve(sess) }
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
    })
  }

  /** Owner side: one contributor's stream. */
  private async serve (fs: FramedStream, peer: string, handlerSignal: AbortSignal): Promise<void> {
    const first = await withDeadline(this.slackMs + this.joinMs, [handlerSignal], async signal => await fs.expect({ signal }))
    if ((first.header.metadata as { op?: unknown } | undefined)?.op === 'join') {
      await this.serveJoin(fs, first, peer, handlerSignal)
      return
    }
    const req = parseReduceRequest(first)
    const stage = first.header.stage
    if (this.bans.isBanned(peer)) throw new PeerBannedError(peer)
    const session = await this.waitSession(stage, req.round, handlerSignal)
    await withDeadline(undefined, [handlerSignal, session.abort.signal], async signal => {
      await Promise.race([session.ready.promise, new Promise<never>((_resolve, reject) => {
        if (signal.aborted) { reject(signal.reason); return }
        signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
      })])
      const k = this.checkRequest(session, req, peer)
      const served = deferred<void>()
      session.serving.add(served.promise)
      try {
        await this.serveContribution(fs, session, req, k, peer, stage, signal)
      } finally {
        served.resolve()
      }
    })
  }

  private async serveContribution (fs: FramedStream, session: Session, req: ReduceRequest, k: number, peer: string, stage: number, signal: AbortSignal): Promise<void> {
    if (session.settled.has(k)) {
      // settled without data: we gave up on it (deadline, ban); with data: a real duplicate
      if (session.failures.has(k)) throw new ContributionLateError()
      throw new AveragingProtocolError(`a second contribution from ${peer} for round ${req.round}`)
    }
    session.declared.set(k, req.stats)
    const finalize = (): void => { this.finalize(session) }
    try {
      if (session.closed) throw new ContributionLateError()
      const [s, e] = session.ranges[session.me]
      const data = await withDeadline(session.contribDeadline - Date.now(), [signal],
        async contribSignal => await receiveParts(fs, this.codecs, req.role, stage, req.parts, e - s, contribSignal))
      checkDeclaredStats(data, { norm: req.stats[session.me][0], maxAbs: req.stats[session.me][1] }, this.codecs.relError(req.role))
      if (session.closed) throw new ContributionLateError()
      session.contributions.set(k, { weight: req.weight, data })
      session.settle(k, finalize)
    } catch (err) {
      session.settle(k, finalize, err as Error)
      throw err
    } finally {
      session.bytesReceived += fs.stats.bytesReceived
    }
    const res = await session.result.promise
    const before = fs.stats.bytesSent
    await withDeadline(session.resultDeadline - Date.now(), [signal], async sendSignal => {
      await fs.send({ kind: 'response', stage, microbatchId: req.round, metadata: { op: 'result', contributors: res.contributors, parts: res.parts.length } }, undefined, { signal: sendSignal })
      await sendParts(fs, req.role, stage, req.round, res.parts, sendSignal)
    })
    session.bytesSent += fs.stats.bytesSent - before
  }

  /** Tells `peer` we are in the group and learns whom it found; every peer it names is greeted in turn. */
  private greet (session: Session, peer: string): void {
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
    }, undefined, { runId: this.init.runId, timeoutMs, signal: session.abort.signal, log: this.init.log })
      .then(resp => {
        const members = parseMembers(resp, 'members', 4 * this.maxGroupSize)
        this.addFound(session, peer)
        for (const m of members) this.greet(session, m)
      })
      .catch(err => { this.log.debug('greeting failed', { peer, code: codeOf(err), error: (err as Error).message }) })
  }

  private addFound (session: Session, peer: string): void {
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
    const session = await this.waitSession(first.header.stage, m.round as number, handlerSignal)
    if (m.name !== session.groupName && session.groupName !== '') throw new GroupViewMismatchError(`join for ${m.name}, this node is in ${session.groupName}`)
    this.addFound(session, peer)
    const members = session.discovering ? [this.me, ...session.confirmed] : session.members
    await fs.send({ kind: 'response', stage: session.stage, microbatchId: session.round, metadata: { op: 'members', members } }, undefined, { signal: handlerSignal })
  }

  private checkRequest (session: Session, req: ReduceRequest, peer: string): number {
    if (req.group !== session.digest) throw new GroupViewMismatchError(`group digest ${req.group} differs from this node's ${session.digest}`)
    const k = session.members.indexOf(peer)
    if (k < 0 || k === session.me) throw new GroupViewMismatchError(`${peer} is not a member of this node's group`)
    if (req.shard !== session.me) throw new GroupViewMismatchError(`request for shard ${req.shard}; this node owns shard ${session.me}`)
    if (req.n !== session.members.length || req.total !== session.data.length) throw new GroupViewMismatchError(`request for ${req.total} elements over ${req.n} members, this node has ${session.data.length} over ${session.members.length}`)
    if (req.role !== session.role) throw new RoundMismatchError(`request averages ${req.role}, this round averages ${session.role}`)
    return k
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

  /** Contributor side: our values of shard j to its owner, its average back. */
  private async contribute (session: Session, j: number): Promise<{ values: Float32Array, contributors: ReadonlyArray<readonly [number, number, number, number]> }> {
    const owner = session.members[j]
    if (this.bans.isBanned(owner)) throw new PeerBannedError(owner)
    if (this.init.faults?.withhold?.(j) === true) throw new AbortError('contribution withheld (fault injection)')
    const guard = deadline(session.resultDeadline - Date.now(), session.abort.signal)
    const signal = guard.signal
    let fs: FramedStream
    try {
      fs = await this.dial(owner, signal)
    } catch (err) {
      guard.clear()
      throw err
    }
    try {
      const [s, e] = session.ranges[j]
      let mine = session.data.subarray(s, e)
      if (this.init.faults?.contribution != null) mine = this.init.faults.contribution(j, mine.slice())
      const parts = encodeParts(this.codecs, session.role, mine, this.chunkElements)
      const meta: ReduceRequest = {
        op: 'reduce',
        round: session.round,
        group: session.digest,
        shard: j,
        n: session.members.length,
        total: session.data.length,
        role: session.role,
        weight: session.weight,
        stats: session.myStats.map(st => [st.norm, st.maxAbs] as const),
        parts: parts.length
      }
      await fs.send({ kind: 'request', stage: session.stage, microbatchId: session.round, metadata: meta as unknown as Record<string, unknown> }, undefined, { signal })
      await sendParts(fs, session.role, session.stage, session.round, parts, signal)
      const resp = parseReduceResponse(await fs.expect({ signal }), session.members.length)
      const values = await receiveParts(fs, this.codecs, session.role, session.stage, resp.parts, e - s, signal)
      await fs.close({ signal })
      return { values, contributors: resp.contributors }
    } catch (err) {
      if (!(err instanceof RemoteError)) fs.abort(err as Error)
      // an owner that banned us will not contribute to our shard either: stop waiting for it
      if (err instanceof RemoteError && err.remoteCode === 'ERR_AVG_BANNED') session.settle(j, () => { this.finalize(session) }, err)
      throw err
    } finally {
      guard.clear()
      session.bytesSent += fs.stats.bytesSent
      session.bytesReceived += fs.stats.bytesReceived
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

function toStats (s: readonly [number, number] | undefined): ShardStats | undefined {
  return s == null ? undefined : { norm: s[0], maxAbs: s[1] }
}

function codeOf (err: unknown): string {
  const e = err as { code?: unknown, remoteCode?: unknown }
  if (typeof e?.remoteCode === 'string') return e.remoteCode
  return typeof e?.code === 'string' ? e.code : 'ERR_UNKNOWN'
}

