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
//              microbatch is re-routed. Not hedged: a second copy would be trained on twice.
//   failure    a remote drop (the stages behind the peer failed) is final: MicrobatchDroppedError
//              at once; any other failure is judged (PeerJudge: verdict on the peer, router ban)
//              and the next attempt goes to another peer; after maxAttempts: dropped
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
    const exclude = new Set<string>()
    for (let attempt = 0; attempt < retry.maxAttempts; attempt++) {
      const peer = router.choose(mb.stage, exclude) ?? await this.waitForPeer(mb.stage, exclude, signal)
      if (peer == null) break
      if (attempt > 0) metrics.count('microbatchesRetried')
      const t0 = performance.now()
      this.probe.maybeProbe(peer)
      const hopMs = router.timeoutMs(peer, mb.stage, this.timing.networkMs(peer, act.bytes.byteLength + tgt.byteLength))
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
        router.succeeded(peer, mb.stage, performance.now() - t0)
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
        exclude.add(peer)
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

  /** Ends a phase begun at `t0` into `cat`; returns the start of the next one. */
  private lap (cat: ProfileCategory, t0: number): number {
    const now = performance.now()
    this.init.metrics.profile.add(cat, now - t0)
    return now
  }

  /** Waits (bounded) for a usable peer of `stage` to appear. */
  private async waitForPeer (stage: number, exclude: ReadonlySet<string>, signal: AbortSignal): Promise<string | undefined> {
    const until = Date.now() + this.init.retry.peerWaitMs
    while (Date.now() < until && !signal.aborted) {
      await pause(this.init.retry.pollMs, signal)
      const peer = this.init.router.choose(stage, exclude)
      if (peer != null) return peer
    }
    return undefined
  }
}
