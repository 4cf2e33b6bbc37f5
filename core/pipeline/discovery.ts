// Stage directory: which peers serve which stage of a run, from gossiped heartbeats on
// `/layerswarm/<runId>/stages/1.0.0`. Each node publishes {peerId, stage, state, step, throughput,
// queue} every interval; an entry expires after `ttl` without a heartbeat, or at once when the
// peer's last connection closes (a killed node drops out of routing in milliseconds, not seconds).
// Validation (Lodestar style): malformed JSON or a peerId that is not the signed sender: REJECT
// (gossipsub scores the forwarder down); another run's or a stale heartbeat: IGNORE.
// The router only sees the PeerSource interface.
import type { GossipSub } from '@libp2p/gossipsub'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Message } from '@libp2p/gossipsub'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import type { PeerSource } from './router.ts'
import { stagesTopic } from './protocol.ts'

export type TrainingState = 'starting' | 'waiting-peers' | 'training' | 'done' | 'failed'
const STATES: ReadonlySet<string> = new Set(['starting', 'waiting-peers', 'training', 'done', 'failed'])

export interface StageHeartbeat {
  readonly v: 1
  readonly peerId: string
  readonly stage: number
  readonly stages: number
  readonly state: TrainingState
  /** Optimizer steps this node applied. */
  readonly step: number
  /** Microbatches per second (EWMA). */
  readonly throughput: number
  /** Microbatches waiting or running on this node. */
  readonly queue: number
  /** Unix ms. */
  readonly time: number
}

export interface DirectoryEntry extends StageHeartbeat {
  /** Local receive time (ms). */
  readonly seen: number
}

export interface StageDirectoryInit {
  readonly runId: string
  readonly stages: number
  /** Heartbeat period (ms). Default 1000. */
  readonly intervalMs?: number
  /** Forget a peer after this long without a heartbeat (ms). Default 3 x interval + 1000. */
  readonly ttlMs?: number
  /** This node's current heartbeat content. */
  readonly self: () => Omit<StageHeartbeat, 'v' | 'peerId' | 'time' | 'stages'>
  /** Called with every heartbeat accepted from another peer (e.g. the swarm's step, for averaging). */
  readonly onHeartbeat?: (entry: DirectoryEntry) => void
  readonly log?: Logger
}

type PubsubLibp2p = Pick<Libp2p<{ pubsub: GossipSub }>, 'services' | 'peerId' | 'addEventListener' | 'removeEventListener' | 'getConnections'>

export class StageDirectory implements PeerSource {
  readonly topic: string
  private readonly entries = new Map<string, DirectoryEntry>()
  private readonly intervalMs: number
  private readonly ttlMs: number
  private readonly log: Logger
  private timer: NodeJS.Timeout | undefined
  private readonly me: string
  private readonly onMessage = (evt: CustomEvent<Message>): void => { this.receive(evt.detail) }
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    if (this.entries.delete(peer)) this.log.debug('stage peer disconnected', { peer })
  }

  constructor (private readonly libp2p: PubsubLibp2p, private readonly init: StageDirectoryInit) {
    this.topic = stagesTopic(init.runId)
    this.intervalMs = init.intervalMs ?? 1000
    this.ttlMs = init.ttlMs ?? 3 * this.intervalMs + 1000
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:pipeline:directory')
    this.me = libp2p.peerId.toString()
  }

  start (): void {
    const pubsub = this.libp2p.services.pubsub
    pubsub.topicValidators.set(this.topic, (_peer, msg) => this.validate(msg))
    pubsub.addEventListener('message', this.onMessage)
    this.libp2p.addEventListener('peer:disconnect', this.onDisconnect)
    pubsub.subscribe(this.topic)
    this.publish()
    this.timer = setInterval(() => { this.publish() }, this.intervalMs)
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
    const pubsub = this.libp2p.services.pubsub
    pubsub.removeEventListener('message', this.onMessage)
    this.libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    try {
      pubsub.unsubscribe(this.topic)
    } catch {}
    pubsub.topicValidators.delete(this.topic)
  }

  /** Publishes this node's heartbeat now (also on every interval). */
  publish (): void {
    const hb: StageHeartbeat = { v: 1, peerId: this.me, stages: this.init.stages, time: Date.now(), ...this.init.self() }
    this.libp2p.services.pubsub.publish(this.topic, new TextEncoder().encode(JSON.stringify(hb)))
      .catch(err => { this.log.debug('heartbeat not published', { error: (err as Error).message }) })
  }

  peersForStage (stage: number): string[] {
    return this.live().filter(e => e.stage === stage && e.state !== 'failed').map(e => e.peerId)
  }

  throughputOf (peer: string): number | undefined {
    return this.entries.get(peer)?.throughput
  }

  /** Live entries (other peers only). */
  live (): DirectoryEntry[] {
    const t = Date.now()
    for (const [k, e] of this.entries) if (t - e.seen > this.ttlMs) this.entries.delete(k)
    return [...this.entries.values()]
  }

  /** Peers per stage, this node included. */
  peersPerStage (myStage: number): Record<string, number> {
    const out: Record<string, number> = {}
    for (let s = 0; s < this.init.stages; s++) out[String(s)] = 0
    out[String(myStage)] = (out[String(myStage)] ?? 0) + 1
    for (const e of this.live()) if (e.state !== 'failed') out[String(e.stage)] = (out[String(e.stage)] ?? 0) + 1
    return out
  }

  private validate (msg: Message): TopicValidatorResult {
    const hb = parseHeartbeat(msg.data)
    if (hb == null) return TopicValidatorResult.Reject
    if (msg.type === 'signed' && msg.from.toString() !== hb.peerId) return TopicValidatorResult.Reject
    if (hb.stages !== this.init.stages || hb.stage >= this.init.stages) return TopicValidatorResult.Reject
    if (Math.abs(Date.now() - hb.time) > 60_000) return TopicValidatorResult.Ignore
    return TopicValidatorResult.Accept
  }

  private receive (msg: Message): void {
    if (msg.topic !== this.topic) return
    const hb = parseHeartbeat(msg.data)
    if (hb == null || hb.peerId === this.me) return
    if (msg.type === 'signed' && msg.from.toString() !== hb.peerId) return
    const prev = this.entries.get(hb.peerId)
    if (prev != null && prev.time > hb.time) return // out of order
    const entry = { ...hb, seen: Date.now() }
    this.entries.set(hb.peerId, entry)
    try {
      this.init.onHeartbeat?.(entry)
    } catch (err) {
      this.log.error('heartbeat listener failed', { error: (err as Error).message })
    }
  }
}

const PEER_ID_RE = /^[A-Za-z0-9]{1,128}$/

/** A heartbeat from bytes, or null when anything about it is off. */
export function parseHeartbeat (data: Uint8Array): StageHeartbeat | null {
  if (data.byteLength > 2048) return null
  let o: unknown
  try {
    o = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data))
  } catch {
    return null
  }
  if (o == null || typeof o !== 'object' || Array.isArray(o)) return null
  const h = o as Record<string, unknown>
  const int = (v: unknown, lo: number, hi: number): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= lo && v <= hi
  if (h.v !== 1) return null
  if (typeof h.peerId !== 'string' || !PEER_ID_RE.test(h.peerId)) return null
  if (!int(h.stages, 1, 1024) || !int(h.stage, 0, (h.stages as number) - 1)) return null
  if (typeof h.state !== 'string' || !STATES.has(h.state)) return null
  if (!int(h.step, 0, 2 ** 40) || !int(h.queue, 0, 2 ** 20) || !int(h.time, 0, 2 ** 53)) return null
  if (typeof h.throughput !== 'number' || !Number.isFinite(h.throughput) || h.throughput < 0) return null
  const keys = ['v', 'peerId', 'stage', 'stages', 'state', 'step', 'throughput', 'queue', 'time']
  if (Object.keys(h).some(k => !keys.includes(k))) return null
  return h as unknown as StageHeartbeat
}
