// Where a microbatch leaves this node for the next stage: route (router.ts), send the activation
// and the targets, await the reply (the gradient of the activation, or the held-out loss), and on
// failure judge the peer, ban it from routing for a while and try another, as the RetryPolicy says.
//
//   attempt    router.choose(stage) (or wait, bounded, for a peer to appear) -> open a framed
//              stream -> activation frame + targets frame -> the reply frame, validated and decoded
//   deadline   each attempt has the router's timeout for the peer (its service time, or its stage's
//              when it was never measured) plus the network's share for the bytes sent
//              (core/net/peer-timing.ts: srtt + 4 rttvar + bytes / throughput); a peer that misses
//              it (a silent one: accepts the stream, never answers) gets PeerDeadlineError ('ignore':
//              the router bans it with a backoff that doubles while it keeps failing) and the
//              microbatch is re-routed. Not hedged: a second copy would be trained on twice. A peer
//              whose replies report their compute time (core/net/hop-timing.ts) is timed by that
//              service time plus the network's share both ways, counted once.
//   failure    a remote drop (the stages behind the peer failed) is final: MicrobatchDroppedError
//              at once; any other failure is judged (PeerJudge: verdict on the peer, router ban)
//              and the next attempt goes to another peer; after maxAttempts: dropped
//   readmit    a failed peer is excluded for the rest of the microbatch's attempts, except once: when
//              it is the only candidate its stage has left, its ban (if any) is over, RETRY_AFTER_MS
//              have passed and it is connected again, the microbatch tries it one more time (a
//              stream reset while connections settle must not cost a one-peer stage its peer wait
//              and a drop); a second failure excludes it for good, and the router's bans still grow
//   holds      a stage averages every `period` steps, and its nodes serve no microbatch during the
//              round (the worker is held: stage-averaging.ts); microbatches of a step that starts a
//              period are given AVERAGING_HOLD_MS more, so that the hold is not taken for a silent
//              peer (the last stage's 2 s deadline floor was shorter than a round across 400 ms round
//              trips). Only a peer that has answered before gets it: a silent one never has, and
//              keeps its stage's normal time. A peer that dies during such a step is caught that much later.
//   commitment a training hop carries the producer's signed commitment to the activation it sends
//              (hop-commits.ts); the gradient that comes back must carry the next stage's, which is
//              checked like any other part of the reply
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { AbortError, ConfigError, type LayerswarmError } from '../errors.ts'
import type { PeerJudge } from '../peer-judge.ts'
import { deadline, pause } from '../timers.ts'
import { PeerDeadlineError } from '../net/errors.ts'
import { timingFor, type PeerTiming } from '../net/peer-timing.ts'
import { pingerOf, RttProbe } from '../net/rtt-probe.ts'
import { COMPUTE_MS_FIELD, hopRttSample, splitHop } from '../net/hop-timing.ts'
import { openFramed, RemoteError, type FramedStream } from '../wire/index.ts'
import type { BoundaryCodecs } from '../codecs/tensor-codecs.ts'
import { isRemoteDrop, MicrobatchDroppedError, StageNotServedError } from './errors.ts'
import type { PipelineMetrics } from './pipeline-metrics.ts'
import type { ProfileCategory } from './pipeline-profile.ts'
import { int32Bytes, PIPELINE_FORWARD_PROTOCOL, validateEvalReply, validateGradReply, type MicrobatchMeta, type ReplyMeta } from './protocol.ts'
import type { Router } from './router.ts'
import type { HopCommitter } from './hop-commits.ts'
import type { HopTensor } from '../verify/hop-records.ts'

/** How hard a microbatch is pushed before it is dropped (carried by the run options). */
export interface RetryPolicy {
  /** Attempts per microbatch and hop, each on another peer. Default 3. */
  readonly maxAttempts: number
  /** How long a microbatch waits for a peer of the next stage to appear (ms). Default 30000. */
  readonly peerWaitMs: number
  /** How often a waiting microbatch looks for a peer again (ms). Default 100. */
  readonly pollMs: number
}

/** How long a microbatch waits before it tries a failed peer again (when that peer is all its stage has left). */
export const RETRY_AFTER_MS = 1000

/**
 * Extra time for a hop of a microbatch whose step starts an averaging period (see "holds" above):
 * over twice the longest hold measured across 400 ms round trips (a round of the micro model, 1.3-2.2 s).
 */
export const AVERAGING_HOLD_MS = 5000

/** The extra time a hop of a microbatch of `step` gets, for a run that averages every `period` steps (0: never). */
export function averagingHoldMs (period: number, step: number): number {
  return period > 0 && step > 0 && step % period === 0 ? AVERAGING_HOLD_MS : 0
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 3, peerWaitMs: 30_000, pollMs: 100 }

/** The policy with `over` applied, each value checked. */
export function retryPolicy (over: Partial<RetryPolicy> = {}): RetryPolicy {
  const p = { ...DEFAULT_RETRY_POLICY, ...over }
  if (!Number.isSafeInteger(p.maxAttempts) || p.maxAttempts < 1) throw new ConfigError(`maxAttempts must be a positive integer, got ${p.maxAttempts}`)
  for (const k of ['peerWaitMs', 'pollMs'] as const) {
    if (!(Number.isFinite(p[k]) && p[k] >= 0)) throw new ConfigError(`${k} must be a non-negative number of ms, got ${p[k]}`)
  }
  return p
}

/** A microbatch to send: the boundary tensor, its targets and what the receiver needs to know. */
export interface Outbound {
  readonly stage: number
  readonly id: bigint
  readonly route: readonly string[]
  readonly hidden: Float32Array
  /** [B, T, width] */
  readonly shape: readonly number[]
  readonly targets: Int32Array
  readonly meta: MicrobatchMeta
  /** Training hops of a committing node: what produced `hidden` (its inputs and weights). */
  readonly work?: { readonly inputs: readonly HopTensor[], readonly paramsDigest: string, readonly step: number }
}

export interface Reply {
  /** The gradient of `hidden` (train only). */
  readonly dout?: Float32Array
  /** That gradient as it crossed the wire (train only): an input of this node's backward hop. */
  readonly doutTensor?: HopTensor
  readonly meta: ReplyMeta
}

export interface DispatcherInit {
  readonly libp2p: Libp2p
  readonly runId: string
  readonly router: Router
  readonly codecs: BoundaryCodecs
  readonly metrics: PipelineMetrics
  readonly judge: PeerJudge
  readonly retry: RetryPolicy
  /** Per-peer round-trip and throughput estimates; default: the libp2p node's (timingFor, Tokens.PeerTiming). */
  readonly timing?: PeerTiming
  /** Signs this node's hops and checks the next stage's; absent: no commitments (verification off). */
  readonly committer?: HopCommitter
  readonly log: Logger
  /** The node's logger for the framed streams (wire-level logs). */
  readonly wireLog?: Logger
  /** The run's averaging period in steps (0 or absent: no averaging, no holds). */
  readonly averagingPeriod?: number
}

export class Dispatcher {
  private outstanding = 0
  readonly timing: PeerTiming
  private readonly probe: RttProbe

  constructor (private readonly init: DispatcherInit) {
    this.timing = init.timing ?? timingFor(init.libp2p)
    this.probe = new RttProbe(this.timing, pingerOf(init.libp2p))
  }

  /** Whether this node signs its training hops (then senders pass what produced them as `work`). */
  get commits (): boolean {
    return this.init.committer != null
  }

  /** Microbatches waiting for a reply from the next stage. */
  get inFlight (): number {
    return this.outstanding
  }

  /**
   * Sends `mb` to a peer of `mb.stage` and waits for its reply. Failing peers are judged and the
   * microbatch goes to another, up to the policy's attempts; then MicrobatchDroppedError.
   */
  async send (mb: Outbound, signal: AbortSignal): Promise<Reply> {
    const { router, codecs, metrics, retry } = this.init
    const prof = metrics.profile
    // the codecs time themselves (encode, finiteScan, decode: profiledCodecs in pipeline-profile.ts)
    const act = codecs.encode('activation', mb.hidden, mb.shape)
    let t = prof.start()
    const tgt = int32Bytes(mb.targets)
    t = this.lap('copy', t)
    const train = mb.meta.mode === 'train'
    const committer = train ? this.init.committer : undefined
    const commitment = committer != null && mb.work != null
      ? await committer.commit({ kind: 'forward', microbatchId: mb.id, ...mb.work }, { bytes: act.bytes, codecId: act.codecId, dtype: 'f32', shape: [...mb.shape] })
      : undefined
    this.lap('verification', t)
    const exclude = new Map<string, number>()
    const readmitted = new Set<string>()
    for (let attempt = 0; attempt < retry.maxAttempts; attempt++) {
      const peer = router.choose(mb.stage, new Set(exclude.keys())) ?? await this.waitForPeer(mb.stage, exclude, readmitted, signal)
      if (peer == null) break
      if (attempt > 0) metrics.count('microbatchesRetried')
      const t0 = performance.now()
      this.probe.maybeProbe(peer)
      const sent = act.bytes.byteLength + tgt.byteLength
      // a peer timed by its reported service time also needs the reply's bytes in the network's share
      const both = sent + (train ? act.bytes.byteLength : 0)
      const hopMs = router.timeoutMs(peer, mb.stage, this.timing.networkMs(peer, sent), this.timing.networkMs(peer, both)) +
        (train && router.measured(peer) ? averagingHoldMs(this.init.averagingPeriod ?? 0, mb.meta.step) : 0)
      const attemptDeadline = deadline(hopMs, signal)
      const sig = attemptDeadline.signal
      let fs: FramedStream | undefined
      this.outstanding++
      try {
        t = prof.start()
        fs = await openFramed(this.init.libp2p, peerIdFromString(peer), PIPELINE_FORWARD_PROTOCOL, { runId: this.init.runId, signal: sig, log: this.init.wireLog })
        t = this.lap('open', t)
        const route = [...mb.route]
        const shape = [...mb.shape]
        await fs.send({ kind: 'activation', microbatchId: mb.id, stage: mb.stage, codecId: act.codecId, dtype: 'f32', shape, route, metadata: { ...mb.meta, ...(commitment != null ? { commitment } : {}) } }, act.bytes, { signal: sig })
        await fs.send({ kind: 'request', microbatchId: mb.id, stage: mb.stage, dtype: 'i32', shape: [shape[0], shape[1]], route, metadata: { op: 'targets' } }, tgt, { signal: sig })
        t = this.lap('send', t)
        metrics.count('bytesForward', act.bytes.byteLength + tgt.byteLength)
        metrics.boundarySent('forward', act.bytes.byteLength, shape[0] * shape[1])
        const resp = await fs.expect({ signal: sig })
        t = this.lap('replyWait', t)
        let out: Reply
        if (train) {
          const meta = validateGradReply(resp, mb.id, mb.stage, shape)
          t = this.lap('framing', t)
          const dout = codecs.decode('activation-grad', resp)
          t = performance.now()
          await committer?.accept(peer, { kind: 'backward', stage: mb.stage, microbatchId: mb.id, codecId: resp.header.codecId, tokens: shape[0] * shape[1] }, resp.header.metadata?.commitment, resp.payload)
          t = this.lap('verification', t)
          out = { meta, dout, doutTensor: { bytes: resp.payload, codecId: resp.header.codecId, dtype: 'f32', shape } }
        } else {
          out = { meta: validateEvalReply(resp, mb.id) }
        }
        await fs.close({ signal: sig }).catch(() => {})
        this.sampled(peer, mb.stage, performance.now() - t0, resp.header.metadata?.[COMPUTE_MS_FIELD], both)
        return out
      } catch (caught) {
        // our own deadline for this peer fired (not the caller's abort): the peer's fault, mildly
        const err = sig.aborted && !signal.aborted
          ? new PeerDeadlineError(peer, hopMs, `stage-${mb.stage} hop`)
          : (caught as Error)?.name === 'UnsupportedProtocolError' ? new StageNotServedError(peer, mb.stage, caught) : caught
        if (fs != null && !(err instanceof RemoteError)) fs.abort(err as Error)
        if (signal.aborted) throw new AbortError('the microbatch was abandoned')
        // a drop is final unless this peer drops far more than its stage's others (router.ts): then it is judged and the next peer tried
        const dropper = isRemoteDrop(err) ? router.remoteDropped(peer, mb.stage) : undefined
        if (isRemoteDrop(err) && dropper == null) throw new MicrobatchDroppedError(mb.stage, `stage ${mb.stage} peer ${peer} dropped the microbatch: ${(err as Error).message}`)
        const verdict = this.init.judge.judge(peer, dropper ?? err, 'pipeline', mb.stage)
        exclude.set(peer, Date.now())
        this.init.log.warn('microbatch failed at a peer; retrying elsewhere', {
          peer, stage: mb.stage, attempt: attempt + 1, of: retry.maxAttempts, verdict, code: (dropper ?? err as LayerswarmError).code, error: (err as Error).message
        })
      } finally {
        attemptDeadline.clear()
        this.outstanding--
      }
    }
    throw new MicrobatchDroppedError(mb.stage)
  }

  /** A hop through `peer` took `totalMs`: the router's sample, and a round-trip sample net of the peer's reported compute. */
  private sampled (peer: string, stage: number, totalMs: number, reported: unknown, bytes: number): void {
    const split = splitHop(totalMs, reported)
    this.init.router.succeeded(peer, stage, totalMs, split?.serviceMs)
    const rtt = split != null ? hopRttSample(split, bytes, this.timing.throughputOf(peer)) : undefined
    if (rtt != null) this.timing.observeRtt(peer, rtt)
  }

  /** Ends a phase begun at `t0` into `cat`; returns the start of the next one. */
  private lap (cat: ProfileCategory, t0: number): number {
    const now = performance.now()
    this.init.metrics.profile.add(cat, now - t0)
    return now
  }

  /**
   * Waits (bounded) for a usable peer of `stage` to appear: one not excluded (failed at `exclude`'s
   * time for this microbatch), or an excluded one readmitted (see the top of this file).
   */
  private async waitForPeer (stage: number, exclude: Map<string, number>, readmitted: Set<string>, signal: AbortSignal): Promise<string | undefined> {
    const until = Date.now() + this.init.retry.peerWaitMs
    while (Date.now() < until && !signal.aborted) {
      await pause(this.init.retry.pollMs, signal)
      const peer = this.init.router.choose(stage, new Set(exclude.keys()))
      if (peer != null) return peer
      const again = this.readmittable(stage, exclude, readmitted)
      if (again == null) continue
      readmitted.add(again)
      exclude.delete(again)
      this.init.log.info('retrying a failed peer: it is all its stage has left', { peer: again, stage })
      const retried = this.init.router.choose(stage, new Set(exclude.keys()))
      if (retried != null) return retried
    }
    return undefined
  }

  /** An excluded peer that is the only candidate of `stage`, not banned, failed RETRY_AFTER_MS ago, connected, not readmitted yet. */
  private readmittable (stage: number, exclude: ReadonlyMap<string, number>, readmitted: ReadonlySet<string>): string | undefined {
    const candidates = this.init.router.available(stage)
    if (candidates.length === 0 || candidates.some(p => !exclude.has(p))) return undefined
    const now = Date.now()
    return candidates.find(p => !readmitted.has(p) && now - (exclude.get(p) ?? now) >= RETRY_AFTER_MS && this.connected(p))
  }

  private connected (peer: string): boolean {
    try {
      return this.init.libp2p.getConnections(peerIdFromString(peer)).some(c => c.status === 'open')
    } catch {
      return false
    }
  }
}
