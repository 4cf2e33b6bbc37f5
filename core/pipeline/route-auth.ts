// Who may hand this stage a microbatch, and whose microbatch it is (stage-server.ts asks before it
// decodes anything).
//
//   upstream   a stage-s node takes activations only from a peer its view (the PeerSource the router
//              reads) lists as serving stage s-1, or listed so within the last `graceMs` (a peer that
//              just moved on, or whose heartbeat lapsed mid-run). A sender not listed is waited for
//              a little (`waitMs`: its first heartbeat may trail its first microbatch), then refused
//              with UpstreamNotServingError ('reject'); a peer refused in the last `graceMs` is
//              refused at once, so a feeder cannot hold one stream per try for the whole wait.
//   origin     the data node signs (run, origin, microbatch id, step, mode, micro) with its libp2p
//              key once per microbatch (OriginSigner, stage 0); the base64 signature travels in the
//              activation metadata (`auth`) along the whole route, and every stage verifies it under
//              the public key embedded in the origin's peer id (kept per origin): OriginAuthError
//              ('reject', on the sender that forwarded it) when it is missing or wrong. Cost: one
//              Ed25519 signature per microbatch at stage 0, one verification per hop.
//
// Origin signatures go with the node's key (PipelineNodeInit.privateKey, as hop commitments do): a
// node built without one neither signs nor asks for signatures (bare pipeline tests).
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { base64 } from 'multiformats/bases/base64'
import { pause } from '../timers.ts'
import { OriginAuthError, UpstreamNotServingError } from './errors.ts'
import type { MicrobatchMeta } from './protocol.ts'
import type { PeerSource } from './router.ts'

const DOMAIN = 'layerswarm/origin/v1'
const encoder = new TextEncoder()

/** The bytes an origin signs: domain, run, origin, id, step, mode, micro (and the eval index). */
export function originBytes (runId: string, meta: MicrobatchMeta, id: bigint): Uint8Array {
  return encoder.encode(`${DOMAIN}\0${runId}|${meta.origin}|${id}|${meta.step}|${meta.mode}|${meta.micro}|${meta.evalIndex ?? ''}`)
}

/** Stage 0: signs each microbatch it starts. */
export class OriginSigner {
  constructor (private readonly runId: string, private readonly key: PrivateKey) {}

  /** `meta` with its origin signature (`auth`). */
  async sign (meta: MicrobatchMeta, id: bigint): Promise<MicrobatchMeta> {
    const sig = await this.key.sign(originBytes(this.runId, meta, id))
    return { ...meta, auth: base64.baseEncode(sig) }
  }
}

export interface RouteAuthInit {
  readonly runId: string
  /** This node's stage (>= 1): senders must serve stage - 1. */
  readonly stage: number
  readonly source: PeerSource
  /** Whether origin signatures are required (the node has a key). */
  readonly verifyOrigin: boolean
  /** A sender listed at stage - 1 this recently still counts (ms). Default 30000. */
  readonly graceMs?: number
  /** How long an unlisted sender is waited for (ms). Default 3000. */
  readonly waitMs?: number
  /** Clock (ms). Default Date.now. */
  readonly now?: () => number
}

/** Entries each table keeps (peer ids, keys): bounded whatever a flood of fresh identities sends. */
const KEPT = 4096

export class RouteAuth {
  /** Peer -> when the view last listed it at stage - 1. */
  private readonly listedAt = new Map<string, number>()
  /** Peer -> when it was last refused as not upstream. */
  private readonly refusedAt = new Map<string, number>()
  private readonly keys = new Map<string, PublicKey | undefined>()
  private readonly graceMs: number
  private readonly waitMs: number
  private readonly now: () => number

  constructor (private readonly init: RouteAuthInit) {
    this.graceMs = init.graceMs ?? 30_000
    this.waitMs = init.waitMs ?? 3000
    this.now = init.now ?? Date.now
  }

  /** Throws UpstreamNotServingError or OriginAuthError unless `from` may send this microbatch. */
  async check (from: string, id: bigint, meta: MicrobatchMeta, signal: AbortSignal): Promise<void> {
    await this.checkUpstream(from, signal)
    if (this.init.verifyOrigin) await this.checkOrigin(id, meta)
  }

  /** Whether `from` serves the previous stage (or did within the grace); waits briefly for an unlisted one. */
  async checkUpstream (from: string, signal: AbortSignal): Promise<void> {
    if (this.listed(from)) return
    const refused = this.refusedAt.get(from)
    if (refused == null || this.now() - refused > this.graceMs) {
      const until = this.now() + this.waitMs
      while (this.now() < until && !signal.aborted) {
        await pause(Math.min(100, Math.max(1, until - this.now())), signal)
        if (this.listed(from)) return
      }
    }
    remember(this.refusedAt, from, this.now())
    throw new UpstreamNotServingError(from, this.init.stage - 1)
  }

  /** Verifies the origin's signature over the microbatch's tuple. */
  async checkOrigin (id: bigint, meta: MicrobatchMeta): Promise<void> {
    if (typeof meta.auth !== 'string') throw new OriginAuthError(`microbatch ${id} of ${meta.origin} carries no origin signature`)
    const key = this.keyOf(meta.origin)
    if (key == null) throw new OriginAuthError(`origin ${meta.origin} does not embed its public key`)
    let ok = false
    try {
      ok = await key.verify(originBytes(this.init.runId, meta, id), base64.baseDecode(meta.auth))
    } catch {
      ok = false // undecodable base64 or a signature the key type cannot parse: as bad as a wrong one
    }
    if (!ok) throw new OriginAuthError(`microbatch ${id}: the origin signature does not verify under ${meta.origin}'s key`)
  }

  private listed (from: string): boolean {
    const t = this.now()
    const peers = this.init.source.peersForStage(this.init.stage - 1)
    for (const p of peers) remember(this.listedAt, p, t)
    if (peers.includes(from)) {
      this.refusedAt.delete(from)
      return true
    }
    const at = this.listedAt.get(from)
    return at != null && t - at <= this.graceMs
  }

  private keyOf (origin: string): PublicKey | undefined {
    if (this.keys.has(origin)) return this.keys.get(origin)
    let key: PublicKey | undefined
    try {
      key = peerIdFromString(origin).publicKey
    } catch {
      key = undefined
    }
    remember(this.keys, origin, key)
    return key
  }
}

/** Sets `k` (moved to the newest position), evicting the oldest entry beyond a bound. */
function remember<V> (map: Map<string, V>, k: string, v: V): void {
  map.delete(k)
  map.set(k, v)
  if (map.size > KEPT) map.delete(map.keys().next().value as string)
}
