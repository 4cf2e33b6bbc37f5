// One averaging round's butterfly all-reduce on this node, once its group is known (the averaging
// service, averager.ts, finds the group and schedules rounds; butterfly.ts holds the messages and
// the shard arithmetic):
//
//   begin(members)  shard layout, this node's declared stats, deadlines (contributions by
//                   contribDeadline, results by resultDeadline): a phase lasts 3x this node's
//                   transfer at its measured bandwidth plus slack, or longer where a member's link
//                   is slower: slack + srtt + 4 rttvar + shard bytes / throughput of the slowest
//                   member (core/net/peer-timing.ts; that term capped at PEER_PHASE_CEILING_MS).
//                   Every exchange feeds the estimator: the stream's opening as a round trip, each
//                   shard's parts as a transfer
//   run()           contributor side: this node's values of shard j to its owner, the average back,
//                   for every other member in parallel; then waits for our own shard's average and
//                   assembles the vector: a lost or refused shard keeps this node's values
//   serve()         owner side: one contributor's values of our shard; when every member delivered
//                   or the contribution deadline passed, the robust weighted mean (robust-shard.ts)
//                   goes back to each of them
//
// A member that does not deliver in time is left out of that shard's average; one whose contribution
// is an outlier is left out and penalized (ERR_AVG_OUTLIER). Results are checked against the stats
// every member declared to this node directly; a peer whose data or average is refused is penalized
// (the service's judge bans it for later rounds), and its own shard's average is not taken this round.
import { AbortError, verdictOf } from '../errors.ts'
import { deadline, withDeadline } from '../timers.ts'
import type { PeerTiming } from '../net/peer-timing.ts'
import { PeerResetError, RemoteError, type FramedStream } from '../wire/index.ts'
import type { AveragingRole } from '../codecs/tensor-codecs.ts'
import {
  checkAverageStats, checkDeclaredStatsOf, encodePart, parseReduceResponse, partCount, receiveParts, sendParts, shardRanges,
  shardStats, StatsAccumulator, type ReduceRequest, type ShardStats
} from './butterfly.ts'
import { ShardReducer, type ShardAverage } from './shard-reducer.ts'
import {
  ContributionLateError, ContributionOutlierError, GroupViewMismatchError, PeerBannedError, RoundMismatchError,
  AveragingProtocolError
} from './errors.ts'
import type { Contributors, ExcludedPeer, LostShard, OwnShardReport, ReduceOutcome, RoundContext } from './round-types.ts'
export type { FaultInjection, ExcludedPeer, LostShard, OwnShardReport, ReduceOutcome, RoundContext } from './round-types.ts'

/** Longest phase the per-member rule may ask for (ms); the node's own bandwidth rule is not capped. */
export const PEER_PHASE_CEILING_MS = 600_000

interface OwnerResult {
  average: ShardAverage
  contributors: Array<[number, number, number, number]>
  report: OwnShardReport
  outliers: ExcludedPeer[]
}

function deferred<T> (): { promise: Promise<T>, resolve: (v: T) => void, reject: (e: Error) => void } {
  let resolve!: (v: T) => void
  let reject!: (e: Error) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  promise.catch(() => {})
  return { promise, resolve, reject }
}

export class AllReduceRound {
  members: string[] = []
  digest = ''
  /** This node's index in the group (-1 before begin). */
  me = -1
  /** Aborted when the round ends (or the service stops): every exchange of the round with it. */
  readonly abort = new AbortController()
  /** Resolves when the group is formed; inbound requests wait for it. */
  readonly ready = deferred<void>()
  private ranges: Array<[number, number]> = []
  private contribDeadline = 0
  private resultDeadline = 0
  /** Members whose contribution to our shard arrived whole and passed the checks. */
  private readonly contributions = new Set<number>()
  private reducer: ShardReducer | null = null
  /** The round's result, this node's values where nothing arrived: results are received straight into it. */
  private averaged: Float32Array | null = null
  /** Stats each member declared to this node directly (its request to our shard). */
  private readonly declared = new Map<number, ReadonlyArray<readonly [number, number]>>()
  private readonly settled = new Set<number>()
  private readonly failures = new Map<number, Error>()
  private closed = false
  private readonly result = deferred<OwnerResult>()
  private myStats: ShardStats[] = []
  private timer: NodeJS.Timeout | undefined
  private bytesReceived = 0
  private bytesSent = 0
  /** Inbound exchanges still sending our shard's average: the round waits for them (bounded). */
  private readonly serving = new Set<Promise<void>>()

  /**
   * `reference`: the parameters that set the norm scale's floor (robust-shard.ts): `data` itself in
   * role 'parameter', theta_start for pseudo-gradients.
   */
  constructor (private readonly ctx: RoundContext, readonly stage: number, readonly round: number,
    readonly role: AveragingRole, readonly data: Float32Array, readonly weight: number, readonly reference: Float32Array = data) {}

  /** The group is formed (sorted members, this node included): layout, deadlines, banned members left out. */
  begin (members: string[], digest: string): void {
    const { ctx, data } = this
    this.members = members
    this.digest = digest
    this.me = members.indexOf(ctx.self)
    this.ranges = shardRanges(data.length, members.length)
    this.myStats = this.ranges.map(([s, e]) => shardStats(data.subarray(s, e)))
    if (this.me >= 0) {
      const [s, e] = this.ranges[this.me]
      // the reference is the data itself in role 'parameter': its norm is already known
      const refNorm = this.reference === data ? this.myStats[this.me].norm : shardStats(this.reference.subarray(s, e)).norm
      this.reducer = new ShardReducer(ctx.codecs, this.role, members, this.me, data.subarray(s, e), this.weight, ctx.chunkElements, refNorm, ctx.robust)
    }
    const readyAt = Date.now()
    const phaseMs = ctx.phaseTimeoutMs ?? phaseDeadlineMs(ctx, members, this.me, data.length)
    this.contribDeadline = readyAt + ctx.joinMs + phaseMs
    this.resultDeadline = readyAt + ctx.joinMs + 2 * phaseMs
    this.timer = setTimeout(() => { this.finalize() }, this.contribDeadline - Date.now())
    for (let i = 0; i < members.length; i++) {
      if (i !== this.me && ctx.bans.isBanned(members[i])) this.settle(i, new PeerBannedError(members[i]))
    }
    this.ready.resolve()
  }

  /** This node averages alone this round: requests waiting for its group are refused. */
  alone (): void {
    this.ready.reject(new GroupViewMismatchError('this node averages alone this round'))
  }

  /** A member's last connection closed: it will not contribute, stop waiting for it at once. */
  peerGone (peer: string): void {
    const k = this.members.indexOf(peer)
    if (k >= 0 && k !== this.me) this.settle(k, new PeerResetError())
  }

  /** The round is over: our shard closes with what arrived, exchanges still running are aborted. */
  end (reason: Error): void {
    clearTimeout(this.timer)
    if (!this.closed) this.finalize()
    this.abort.abort(reason)
  }

  /** Scatter-reduce + all-gather: one exchange per other member, in parallel with our own shard's serving. */
  async run (): Promise<ReduceOutcome> {
    const { members, ctx } = this
    const tr = Date.now()
    const averaged = this.data.slice()
    this.averaged = averaged
    const outcomes = await Promise.all(members.map(async (_, j) => j === this.me ? null : await this.contribute(j).then(v => ({ ok: true as const, ...v }), (err: Error) => ({ ok: false as const, err }))))
    const own = await Promise.race([
      this.result.promise,
      new Promise<never>((_resolve, reject) => {
        const t = setTimeout(() => { reject(new AbortError('own shard not finalized in time')) }, Math.max(0, this.contribDeadline - Date.now()) + 1000)
        this.abort.signal.addEventListener('abort', () => { clearTimeout(t); reject(this.abort.signal.reason) }, { once: true })
        this.result.promise.finally(() => { clearTimeout(t) }).catch(() => {})
      })
    ])

    // our shard's average must reach the others before this round lets go of its state
    await Promise.allSettled([...this.serving])

    // assemble and check: a lost or refused shard keeps this node's values (results were received in place)
    averaged.set(own.average.complete(), this.ranges[this.me][0])
    const lostShards: LostShard[] = []
    const excluded: ExcludedPeer[] = []
    for (const [k, err] of this.failures) {
      const peer = members[k]
      excluded.push({ peer, reason: codeOf(err), banned: ctx.bans.isBanned(peer) })
    }
    excluded.push(...own.outliers.map(x => ({ ...x, banned: ctx.bans.isBanned(x.peer) })))
    const rel = ctx.codecs.relError(this.role)
    outcomes.forEach((o, j) => {
      if (o == null) return
      const [s, e] = this.ranges[j]
      const owner = members[j]
      const lose = (reason: string): void => {
        averaged.set(this.data.subarray(s, e), s)
        lostShards.push({ shard: j, owner, start: s, end: e, reason })
      }
      if (!o.ok) {
        if (verdictOf(o.err) === 'reject') ctx.penalize(owner, o.err)
        lose(codeOf(o.err))
        if (verdictOf(o.err) === 'reject') excluded.push({ peer: owner, reason: codeOf(o.err), banned: true })
        return
      }
      // an owner this node convicted during this round (bad data, an outlier) is not trusted with an average
      if (ctx.bans.isBanned(owner)) {
        lose('ERR_AVG_BANNED')
        return
      }
      let conflict = false
      const inputs = o.contributors.map(([idx, , norm, maxAbs]) => {
        const direct = idx === this.me ? this.myStats[j] : toStats(this.declared.get(idx)?.[j])
        if (direct != null && (direct.norm !== norm || direct.maxAbs !== maxAbs)) conflict = true
        return direct ?? { norm, maxAbs }
      })
      if (conflict) {
        // the owner echoes stats a contributor did not declare to us: one of the two lies; we cannot tell which
        lose('ERR_AVG_CONFLICT')
        return
      }
      try {
        checkAverageStats(o.stats, e - s, inputs, rel)
      } catch (err) {
        ctx.penalize(owner, err as Error)
        excluded.push({ peer: owner, reason: codeOf(err), banned: true })
        lose(codeOf(err))
        return
      }
    })
    return {
      averaged,
      contributors: own.contributors.length,
      lostShards,
      excluded,
      ownShard: own.report,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      reduceMs: Date.now() - tr
    }
  }

  /** Owner side: one contributor's request for our shard, once the group is formed. */
  async serve (fs: FramedStream, req: ReduceRequest, peer: string, handlerSignal: AbortSignal): Promise<void> {
    await withDeadline(undefined, [handlerSignal, this.abort.signal], async signal => {
      await Promise.race([this.ready.promise, new Promise<never>((_resolve, reject) => {
        if (signal.aborted) { reject(signal.reason); return }
        signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
      })])
      const k = this.checkRequest(req, peer)
      const served = deferred<void>()
      this.serving.add(served.promise)
      try {
        await this.serveContribution(fs, req, k, peer, signal)
      } finally {
        served.resolve()
      }
    })
  }

  private settle (k: number, err?: Error): void {
    if (this.settled.has(k)) return
    this.settled.add(k)
    if (err != null) this.failures.set(k, err)
    if (this.settled.size >= this.members.length - 1) this.finalize()
  }

  /** Closes our shard's average: the contributions in by now, this node's own, in member order. */
  private finalize (): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.timer)
    if (this.me < 0) { this.result.reject(new RoundMismatchError('no group')); return }
    // a member still silent now is left out of this shard: record it, so the round reports it even
    // when no disconnect was seen (it may have died before this node's group formed)
    for (let k = 0; k < this.members.length; k++) {
      if (k !== this.me && !this.settled.has(k)) {
        this.settled.add(k)
        this.failures.set(k, new ContributionLateError('no contribution before the shard closed'))
      }
    }
    try {
      const faults = this.ctx.faults
      const reducer = this.reducer as ShardReducer
      const done = [...this.contributions]
      const transform = faults?.result != null ? (avg: Float32Array) => (faults.result as NonNullable<typeof faults.result>)(this.me, avg) : undefined
      const average = reducer.close(done, transform)
      const r = average.decision
      const [s, e] = this.ranges[this.me]
      const refNorm = this.reference === this.data ? this.myStats[this.me].norm : shardStats(this.reference.subarray(s, e)).norm
      const report: OwnShardReport = {
        robust: r.robust,
        medianNorm: r.medianNorm,
        referenceNorm: refNorm,
        kept: r.kept.map(k => ({ peer: k.id, declaredWeight: k.declaredWeight, weight: k.weight, norm: k.norm, cosine: k.cosine }))
      }
      // every outlier but this node itself is judged: a 'reject' bans it from later rounds
      const outliers: ExcludedPeer[] = []
      for (const x of r.excluded) {
        if (x.id === this.ctx.self) continue
        const detail = `${x.reason}: ${x.detail}`
        this.ctx.penalize(x.id, new ContributionOutlierError(x.reason, x.detail))
        outliers.push({ peer: x.id, reason: 'ERR_AVG_OUTLIER', banned: true, detail })
      }
      // nothing kept (every contribution pointed away from the others' median): the shard keeps our values
      const used = new Map(r.kept.length > 0 ? r.kept.map(k => [k.id, k.weight]) : [[this.ctx.self, this.weight]])
      const inputs = [this.me, ...done].sort((a, b) => a - b)
      // the kept contributions, with the weights the mean used: receivers check the result against their declared stats
      const contributors = inputs.filter(i => used.has(this.members[i])).map(i => {
        const st = i === this.me ? this.myStats[this.me] : toStats(this.declared.get(i)?.[this.me]) as ShardStats
        return [i, used.get(this.members[i]) as number, st.norm, st.maxAbs] as [number, number, number, number]
      })
      this.result.resolve({ average, contributors, report, outliers })
    } catch (err) {
      this.result.reject(err as Error)
    }
  }

  private checkRequest (req: ReduceRequest, peer: string): number {
    if (req.group !== this.digest) throw new GroupViewMismatchError(`group digest ${req.group} differs from this node's ${this.digest}`)
    const k = this.members.indexOf(peer)
    if (k < 0 || k === this.me) throw new GroupViewMismatchError(`${peer} is not a member of this node's group`)
    if (req.shard !== this.me) throw new GroupViewMismatchError(`request for shard ${req.shard}; this node owns shard ${this.me}`)
    if (req.n !== this.members.length || req.total !== this.data.length) throw new GroupViewMismatchError(`request for ${req.total} elements over ${req.n} members, this node has ${this.data.length} over ${this.members.length}`)
    if (req.role !== this.role) throw new RoundMismatchError(`request averages ${req.role}, this round averages ${this.role}`)
    return k
  }

  private async serveContribution (fs: FramedStream, req: ReduceRequest, k: number, peer: string, signal: AbortSignal): Promise<void> {
    const { codecs } = this.ctx
    if (this.settled.has(k)) {
      // settled without data: we gave up on it (deadline, ban); with data: a real duplicate
      if (this.failures.has(k)) throw new ContributionLateError()
      throw new AveragingProtocolError(`a second contribution from ${peer} for round ${req.round}`)
    }
    this.declared.set(k, req.stats)
    try {
      if (this.closed) throw new ContributionLateError()
      const [s, e] = this.ranges[this.me]
      const reducer = this.reducer as ShardReducer
      // each part is written into the reducer's buffer as it arrives; its stats and the robust
      // mean's first pass keep up with what every member has sent
      const stats = new StatsAccumulator()
      const sink = { out: reducer.open(k, req.weight), onPart: (d: Float32Array, at: number) => { stats.add(d); reducer.progress(k, at + d.length) } }
      await withDeadline(this.contribDeadline - Date.now(), [signal],
        async contribSignal => await timedReceive(this.ctx.timing, peer, fs, async () => await receiveParts(fs, codecs, req.role, this.stage, req.parts, e - s, contribSignal, sink)))
      checkDeclaredStatsOf(stats.stats, e - s, { norm: req.stats[this.me][0], maxAbs: req.stats[this.me][1] }, codecs.relError(req.role))
      if (this.closed) throw new ContributionLateError()
      this.contributions.add(k)
      this.settle(k)
    } catch (err) {
      this.reducer?.drop(k)
      this.settle(k, err as Error)
      throw err
    } finally {
      this.bytesReceived += fs.stats.bytesReceived
    }
    const res = await this.result.promise
    const before = fs.stats.bytesSent
    await withDeadline(this.resultDeadline - Date.now(), [signal], async sendSignal => {
      const avg = res.average
      await fs.send({ kind: 'response', stage: this.stage, microbatchId: req.round, metadata: { op: 'result', contributors: res.contributors, parts: avg.partCount } }, undefined, { signal: sendSignal })
      await sendParts(fs, req.role, this.stage, req.round, avg.partCount, avg.part, sendSignal)
    })
    this.bytesSent += fs.stats.bytesSent - before
  }

  /** Contributor side: our values of shard j to its owner, its average back. */
  private async contribute (j: number): Promise<{ stats: ShardStats, contributors: Contributors }> {
    const { ctx } = this
    const owner = this.members[j]
    if (ctx.bans.isBanned(owner)) throw new PeerBannedError(owner)
    if (ctx.faults?.withhold?.(j) === true) throw new AbortError('contribution withheld (fault injection)')
    const guard = deadline(this.resultDeadline - Date.now(), this.abort.signal)
    const signal = guard.signal
    let fs: FramedStream
    try {
      const t0 = performance.now()
      fs = await ctx.dial(owner, signal)
      // opening a stream on the open connection negotiates its protocol: about one round trip
      ctx.timing?.observeRtt(owner, performance.now() - t0)
    } catch (err) {
      guard.clear()
      throw err
    }
    try {
      const [s, e] = this.ranges[j]
      let mine = this.data.subarray(s, e)
      const fault = ctx.faults?.contribution
      if (fault != null) mine = fault(j, mine.slice())
      // the round checked its own vector before it began (allReduce); injected faults go out unchecked, as a broken peer's would
      const count = partCount(mine.length, ctx.chunkElements)
      const meta: ReduceRequest = {
        op: 'reduce',
        round: this.round,
        group: this.digest,
        shard: j,
        n: this.members.length,
        total: this.data.length,
        role: this.role,
        weight: this.weight,
        stats: this.myStats.map(st => [st.norm, st.maxAbs] as const),
        parts: count
      }
      await fs.send({ kind: 'request', stage: this.stage, microbatchId: this.round, metadata: meta as unknown as Record<string, unknown> }, undefined, { signal })
      await sendParts(fs, this.role, this.stage, this.round, count, p => encodePart(ctx.codecs, this.role, mine, ctx.chunkElements, p, false), signal)
      const resp = parseReduceResponse(await fs.expect({ signal }), this.members.length)
      // the average goes straight into the round's result; run() puts our values back if it is refused
      const stats = new StatsAccumulator()
      const sink = { out: (this.averaged as Float32Array).subarray(s, e), onPart: (d: Float32Array) => { stats.add(d) } }
      await timedReceive(ctx.timing, owner, fs, async () => await receiveParts(fs, ctx.codecs, this.role, this.stage, resp.parts, e - s, signal, sink))
      await fs.close({ signal })
      return { stats: stats.stats, contributors: resp.contributors }
    } catch (err) {
      if (!(err instanceof RemoteError)) fs.abort(err as Error)
      // an owner that banned us will not contribute to our shard either: stop waiting for it
      if (err instanceof RemoteError && err.remoteCode === 'ERR_AVG_BANNED') this.settle(j, err)
      throw err
    } finally {
      guard.clear()
      this.bytesSent += fs.stats.bytesSent
      this.bytesReceived += fs.stats.bytesReceived
    }
  }
}

/** A phase's length: this node's bandwidth rule, or the slowest other member's link (peer-timing.ts) when longer. */
export function phaseDeadlineMs (ctx: Pick<RoundContext, 'slackMs' | 'bandwidth' | 'timing'>, members: readonly string[], me: number, elements: number): number {
  const n = members.length
  const own = ctx.slackMs + 3000 * (elements * 4 * (n - 1) / n) / ctx.bandwidth
  const timing = ctx.timing
  if (timing == null || n < 2) return Math.ceil(own)
  const shardBytes = 4 * Math.ceil(elements / n)
  const slowest = Math.max(...members.filter((_, i) => i !== me).map(p => timing.networkMs(p, shardBytes)))
  return Math.ceil(Math.max(own, Math.min(PEER_PHASE_CEILING_MS, ctx.slackMs + slowest)))
}

/** Times one exchange's received bytes into `timing` (a transfer of at least 1 KiB). */
async function timedReceive<T> (timing: PeerTiming | undefined, peer: string, fs: FramedStream, fn: () => Promise<T>): Promise<T> {
  const b0 = fs.stats.bytesReceived
  const t0 = performance.now()
  const out = await fn()
  const bytes = fs.stats.bytesReceived - b0
  if (bytes >= 1024) timing?.observeTransfer(peer, bytes, performance.now() - t0)
  return out
}

function toStats (s: readonly [number, number] | undefined): ShardStats | undefined {
  return s == null ? undefined : { norm: s[0], maxAbs: s[1] }
}

/** The code an averaging report gives an error: the remote's code for an error frame. */
export function codeOf (err: unknown): string {
  const e = err as { code?: unknown, remoteCode?: unknown }
  if (typeof e?.remoteCode === 'string') return e.remoteCode
  return typeof e?.code === 'string' ? e.code : 'ERR_UNKNOWN'
}
